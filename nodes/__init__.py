"""IASA ComfyUI nodes: thin adapters over `iasa_core`, one module per stage.

Import this package only relatively (`from .nodes import ...`): ComfyUI has a top-level
module named `nodes` of its own.
"""

NODE_CLASS_MAPPINGS: dict[str, type] = {}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}
