"""The repository's promises: importable entry point, no torch pin, README commands, CI script."""

import importlib.util
import os
import re
import sys

import pytest

from conftest import ROOT


def test_root_init_imports_without_comfyui():
    spec = importlib.util.spec_from_file_location(
        "iasa_pack", os.path.join(ROOT, "__init__.py"), submodule_search_locations=[ROOT])
    mod = importlib.util.module_from_spec(spec)
    sys.modules["iasa_pack"] = mod  # relative imports of the pack resolve through sys.modules
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.modules.pop("iasa_pack", None)
    assert isinstance(mod.NODE_CLASS_MAPPINGS, dict)
    assert isinstance(mod.NODE_DISPLAY_NAME_MAPPINGS, dict)
    assert set(mod.NODE_DISPLAY_NAME_MAPPINGS) <= set(mod.NODE_CLASS_MAPPINGS)


def test_root_init_imports_as_a_plain_module():
    """pytest imports the root __init__.py with no parent package when the folder's name is no identifier
    (custom_nodes/comfyui-iasa, as the README says); a relative import there failed the whole collection."""
    spec = importlib.util.spec_from_file_location("__init__", os.path.join(ROOT, "__init__.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert not mod.__package__ and "IASASampler" in mod.NODE_CLASS_MAPPINGS


def test_library_never_imports_comfyui():
    pattern = re.compile(r"^\s*(import|from)\s+(comfy|folder_paths|server)\b", re.M)
    for dirpath, _, files in os.walk(os.path.join(ROOT, "iasa_core")):
        for f in files:
            if f.endswith(".py"):
                text = open(os.path.join(dirpath, f)).read()
                assert not pattern.search(text), f"{f} imports ComfyUI"


def test_onnxruntime_is_not_forced_next_to_onnxruntime_gpu(monkeypatch):
    """pip would install the CPU onnxruntime beside an installed onnxruntime-gpu (they clash): it is an extra."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    reqs = [ln.split("#")[0].strip() for ln in open(os.path.join(ROOT, "requirements.txt"))]
    assert not [ln for ln in reqs if re.match(r"^onnxruntime\b", ln)]
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        project = tomllib.load(fh)["project"]
    assert not [d for d in project["dependencies"] if d.startswith("onnxruntime")]
    extras = project["optional-dependencies"]
    assert extras["dwpose"] == ["onnxruntime>=1.17"] and extras["dwpose-gpu"] == ["onnxruntime-gpu>=1.17"]
    from iasa_core.detect import dwpose

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # neither build installed: TorchScript weights
    assert dwpose._default_prefer("cpu") == "torchscript"


def test_registry_icon_is_this_repositorys_small_square_png():
    from PIL import Image

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        data = tomllib.load(fh)
    icon = data["tool"]["comfy"]["Icon"]
    repo = data["project"]["urls"]["Repository"].removeprefix("https://github.com/")
    prefix = f"https://raw.githubusercontent.com/{repo}/main/"
    assert icon.startswith(prefix)
    path = os.path.join(ROOT, icon.removeprefix(prefix))
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width == image.height <= 400
    assert os.path.getsize(path) < 20_000


def test_requirements_do_not_pin_torch():
    lines = [ln.strip() for ln in open(os.path.join(ROOT, "requirements.txt")) if ln.strip()]
    assert not [ln for ln in lines if re.match(r"^torch([=<>~ ]|$)", ln)]


def test_readme_opens_with_the_two_commands_and_ci_runs_the_second():
    readme = open(os.path.join(ROOT, "README.md")).read()
    block = readme.split("```bash", 1)[1].split("```", 1)[0].strip().splitlines()
    assert len(block) == 2
    assert "python -m iasa_core demo" in block[0]
    test_cmd = block[1].split("#")[0].strip()
    assert "pytest" in test_cmd
    assert test_cmd in open(os.path.join(ROOT, ".ci", "run")).read()
