"""ComfyUI entry point of the IASA node pack (classic V1 node API)."""

import os
import sys

# Nodes import the library as `iasa_core`; ComfyUI loads this folder as a package without
# installing it, so make the library importable from here. Appended, not prepended, so that our
# top-level folders (nodes/, tests/, ...) can never shadow ComfyUI's own modules of the same name.
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.append(_HERE)

if __package__:
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402
else:
    # Imported as a plain module, without a parent package: pytest does this to the root __init__.py
    # when the folder's name is no Python identifier (custom_nodes/comfyui-iasa), and a relative import
    # then fails at collection. Load nodes/ by its path under a private name: a bare `import nodes` could
    # find ComfyUI's own nodes.py first.
    import importlib.util

    _spec = importlib.util.spec_from_file_location(
        "_iasa_pack_nodes", os.path.join(_HERE, "nodes", "__init__.py"),
        submodule_search_locations=[os.path.join(_HERE, "nodes")])
    _nodes = sys.modules.get(_spec.name)
    if _nodes is None:
        _nodes = importlib.util.module_from_spec(_spec)
        sys.modules[_spec.name] = _nodes  # before running it: its relative imports resolve through sys.modules
        _spec.loader.exec_module(_nodes)
    NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = _nodes.NODE_CLASS_MAPPINGS, _nodes.NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
