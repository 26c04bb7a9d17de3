"""IASA ComfyUI nodes: thin adapters over `iasa_core`, one module per stage.

Import this package only relatively (`from .nodes import ...`): ComfyUI has a top-level
module named `nodes` of its own. Importing it registers the pack's model folders with ComfyUI
(models/iasa, models/emage, models/dwpose, models/smplx); nothing is downloaded.
"""

from . import (
    comfy_bridge,
    nodes_audio,
    nodes_model,
    nodes_motion,
    nodes_patch,
    nodes_pose,
    nodes_sampler,
    nodes_sparse,
    nodes_video,
)

comfy_bridge.register_model_folders()

_MODULES = (nodes_audio, nodes_motion, nodes_pose, nodes_sparse, nodes_patch, nodes_model, nodes_sampler, nodes_video)

NODE_CLASS_MAPPINGS: dict[str, type] = {}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}
for _module in _MODULES:
    NODE_CLASS_MAPPINGS.update(_module.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(_module.NODE_DISPLAY_NAME_MAPPINGS)

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "comfy_bridge"]
