"""Test-only ComfyUI node: a random text CONDITIONING, so a tiny Wan can be sampled without a text encoder.

Loaded by tests/test_comfyui_integration.py through an extra custom_nodes path; never part of the pack.
"""

import torch


class TestRandomConditioning:
    """CONDITIONING [[(1, tokens, width) normal noise, {}]], seeded."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "tokens": ("INT", {"default": 8, "min": 1, "max": 512, "tooltip": "Text tokens."}),
            "width": ("INT", {"default": 4096, "min": 1, "max": 8192, "tooltip": "Embedding width (Wan: 4096)."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 2**31, "tooltip": "Noise seed."}),
        }}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "make"
    CATEGORY = "testing"

    def make(self, tokens, width, seed):
        g = torch.Generator().manual_seed(int(seed))
        return ([[torch.randn(1, int(tokens), int(width), generator=g), {}]],)


NODE_CLASS_MAPPINGS = {"TestRandomConditioning": TestRandomConditioning}
