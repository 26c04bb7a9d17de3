"""iasa_core: audio + one photo -> co-speech video with Input-Aware Sparse Attention.

The library never imports ComfyUI; the node pack adapts ComfyUI types to these calls.
"""

__version__ = "0.1.0"
