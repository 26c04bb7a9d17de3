"""ComfyUI entry point of the IASA node pack (classic V1 node API)."""

import os
import sys

# Nodes import the library as `iasa_core`; ComfyUI loads this folder as a package without
# installing it, so make the library importable from here. Appended, not prepended, so that our
# top-level folders (nodes/, tests/, ...) can never shadow ComfyUI's own modules of the same name.
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.append(_HERE)

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
