"""End-to-end check in a REAL ComfyUI: the pack loads, its nodes are served, and the default
talking-video workflow runs over HTTP and saves a video with frames and sound.

Skipped unless COMFYUI_PATH names a ComfyUI checkout. COMFYUI_PYTHON names the interpreter that
has ComfyUI's requirements and this pack's dependencies (default: the one running pytest).

    COMFYUI_PATH=/path/to/ComfyUI COMFYUI_PYTHON=/path/to/venv/bin/python \
        python -m pytest -q tests/test_comfyui_integration.py

Optional: IASA_WORKFLOW (an *_api.json to run instead of the default one),
IASA_COMFY_TIMEOUT (seconds for the run, default 1200).
The server runs on a free port of 127.0.0.1 with temporary input/output folders and is always
stopped at the end; if the pack was not in custom_nodes, a link is made and removed again.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
from pathlib import Path

import pytest
from comfyui_server import REPO_ROOT, ComfyServer, http_json, make_client, saved_files, wait_for_history

COMFYUI_PATH = os.environ.get("COMFYUI_PATH")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not COMFYUI_PATH, reason="set COMFYUI_PATH to a ComfyUI checkout to run this test"),
]

WORKFLOWS = REPO_ROOT / "workflows"
VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv")
# Name fragments that mark the default talking-video workflow, best first.
DEFAULT_WORKFLOW_HINTS = ("default", "talking", "basic", "simple")


def pack_node_names() -> set[str]:
    """Keys of every `NODE_CLASS_MAPPINGS = {...}` literal in nodes/*.py (no import needed)."""
    names: set[str] = set()
    for path in sorted((REPO_ROOT / "nodes").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict)
                    and any(isinstance(t, ast.Name) and t.id == "NODE_CLASS_MAPPINGS" for t in node.targets)):
                names |= {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
    return names


def default_workflow() -> Path:
    chosen = os.environ.get("IASA_WORKFLOW")
    if chosen:
        return Path(chosen)
    candidates = sorted((WORKFLOWS / "api").glob("*_api.json"))
    if not candidates:
        pytest.skip(f"no API-format workflow (*_api.json) in {WORKFLOWS} yet")
    for hint in DEFAULT_WORKFLOW_HINTS:
        for path in candidates:
            if hint in path.name.lower():
                return path
    return candidates[0]


def load_prompt(path: Path) -> dict:
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict) and isinstance(data.get("prompt"), dict):
        data = data["prompt"]  # a saved /prompt body
    assert isinstance(data, dict) and all("class_type" in v for v in data.values()), \
        f"{path} is not an API-format workflow"
    return data


def copy_workflow_inputs(dest: Path) -> list[str]:
    """Copy the files the workflows load (workflows/inputs/*, scripts excluded) into ComfyUI's input."""
    copied = []
    src = WORKFLOWS / "inputs"
    for path in sorted(src.iterdir()) if src.is_dir() else []:
        if path.is_file() and path.suffix not in (".py", ".md", ".txt"):
            shutil.copy2(path, dest / path.name)
            copied.append(path.name)
    return copied


MODEL_FOLDERS = ("diffusion_models", "loras", "vae")  # where the tests put tiny stand-in model files


def extra_paths_config(workdir: Path) -> Path:
    """An extra_model_paths.yaml: model folders in `workdir` and the test-only custom nodes."""
    lines = [f"iasa_tests:\n    base_path: {workdir}\n"]
    for folder in MODEL_FOLDERS:
        (workdir / "models" / folder).mkdir(parents=True, exist_ok=True)
        lines.append(f"    {folder}: models/{folder}\n")
    lines.append(f"    custom_nodes: {REPO_ROOT / 'tests' / 'comfy_custom_nodes'}\n")
    config = workdir / "extra_model_paths.yaml"
    config.write_text("".join(lines), encoding="utf-8")
    return config


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("comfyui")
    server = ComfyServer(COMFYUI_PATH, python=os.environ.get("COMFYUI_PYTHON") or None, workdir=workdir,
                         extra_args=("--extra-model-paths-config", str(extra_paths_config(workdir))))
    try:
        server.start(timeout=float(os.environ.get("IASA_COMFY_START_TIMEOUT", "300")))
        yield server
    finally:
        server.stop()


def test_pack_imports_and_nodes_are_served(comfy):
    assert not comfy.pack_import_failed(), f"ComfyUI could not import the pack:\n{comfy.log_tail()}"
    info = http_json(comfy.url + "/object_info", timeout=120)
    served = {name for name in info if name.startswith("IASA")}
    expected = {name for name in pack_node_names() if name.startswith("IASA")}
    assert expected, "nodes/*.py define no IASA* node"
    missing = sorted(expected - served)
    assert not missing, f"nodes not served by /object_info: {missing}\n{comfy.log_tail()}"
    for name in served:
        assert info[name]["python_module"].startswith("custom_nodes."), info[name]["python_module"]


def test_default_workflow_saves_video_with_audio(comfy):
    from iasa_core.media import read_video, read_video_audio

    workflow = default_workflow()
    prompt = load_prompt(workflow)
    copy_workflow_inputs(comfy.input_dir)
    unknown = sorted({n["class_type"] for n in prompt.values()}
                     - set(http_json(comfy.url + "/object_info", timeout=120)))
    assert not unknown, f"{workflow.name} uses node types this ComfyUI does not have: {unknown}"

    client = make_client(comfy.address)
    prompt_id = client.queue(prompt)
    entry = wait_for_history(client, prompt_id, float(os.environ.get("IASA_COMFY_TIMEOUT", "1200")), comfy)
    status = entry.get("status") or {}
    assert status.get("status_str", "success") == "success", \
        f"{workflow.name} failed: {json.dumps(status.get('messages'))[:4000]}\n{comfy.log_tail()}"

    videos = saved_files(entry.get("outputs"), comfy.output_dir, VIDEO_SUFFIXES)
    assert videos, f"{workflow.name} saved no video; outputs: {json.dumps(entry.get('outputs'))[:2000]}"
    video = videos[0]
    assert video.is_file() and video.stat().st_size > 0, f"{video} missing or empty"
    frames, fps = read_video(video)
    assert frames.ndim == 4 and frames.shape[0] > 0 and frames.shape[-1] == 3, frames.shape
    assert fps > 0
    audio = read_video_audio(video)
    assert audio is not None, f"{video.name} has no audio stream"
    assert audio.num_samples > 0 and audio.duration > 0


def _chromium() -> str | None:
    return os.environ.get("IASA_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def test_ui_workflows_convert_to_our_api_json_in_the_real_frontend(comfy):
    """Load every UI workflow in ComfyUI's own frontend: its graphToPrompt must give our *_api.json exactly."""
    playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright to run this check")
    browser_path = _chromium()
    if not browser_path:
        pytest.skip("no Chromium found (apt install chromium, or set IASA_CHROMIUM)")
    names = sorted(p.name[: -len("_api.json")] for p in (WORKFLOWS / "api").glob("*_api.json"))
    assert names
    flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run"]
    strip = lambda d: {k: {"inputs": v["inputs"], "class_type": v["class_type"]} for k, v in d.items()}  # noqa: E731
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=flags)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(comfy.url, wait_until="load", timeout=180_000)
            page.wait_for_function("window.app && window.app.graph", timeout=180_000)
            for name in names:
                ui = json.loads((WORKFLOWS / f"{name}.json").read_text())
                api = json.loads((WORKFLOWS / "api" / f"{name}_api.json").read_text())
                errors.clear()
                page.evaluate("async (g) => { await window.app.loadGraphData(g); }", ui)
                prompt = page.evaluate("async () => (await window.app.graphToPrompt()).output")
                assert strip(prompt) == strip(api), f"{name}: the frontend makes another prompt; errors: {errors}"
        finally:
            browser.close()


# ---------------------------------------------------------------------- IASA Patch Model on native Wan


def _native_wan_prompt(prefix: str, patch: dict | None) -> dict:
    """UNETLoader (tiny Wan) [-> IASA Patch Model] -> KSampler (cond + uncond) -> SaveLatent."""
    prompt = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "iasa_tiny_wan.safetensors",
                                                      "weight_dtype": "default"}},
        "2": {"class_type": "IASALoadPoses", "inputs": {"pose_file": "iasa_tiny_wan_poses.json", "fps": 25.0}},
        "4": {"class_type": "TestRandomConditioning", "inputs": {"tokens": 8, "width": 4096, "seed": 1}},
        "5": {"class_type": "TestRandomConditioning", "inputs": {"tokens": 8, "width": 4096, "seed": 2}},
        "6": {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": 96, "height": 64, "length": 9,
                                                                   "batch_size": 1}},
        "7": {"class_type": "KSampler", "inputs": {
            "model": ["3", 0] if patch is not None else ["1", 0], "seed": 0, "steps": 2, "cfg": 3.0,
            "sampler_name": "euler", "scheduler": "simple", "positive": ["4", 0], "negative": ["5", 0],
            "latent_image": ["6", 0], "denoise": 1.0}},
        "8": {"class_type": "SaveLatent", "inputs": {"samples": ["7", 0], "filename_prefix": f"latents/{prefix}"}},
    }
    if patch is not None:
        inputs = {"model": ["1", 0], "poses": ["2", 0], "top_k": 1, "regions": "face,hands,arms,body",
                  "sink_first": False, "mode": "exact", "block_size": 16, "backend": "auto", "dense_steps": 0,
                  "dense_first_blocks": 0, "dense_last_blocks": 0}
        prompt["3"] = {"class_type": "IASAPatchModel", "inputs": {**inputs, **patch}}
    return prompt


def _run_latent(comfy, prompt: dict, prefix: str):
    from safetensors.torch import load_file

    client = make_client(comfy.address)
    entry = wait_for_history(client, client.queue(prompt), float(os.environ.get("IASA_COMFY_TIMEOUT", "600")), comfy)
    status = entry.get("status") or {}
    assert status.get("status_str", "success") == "success", \
        f"{prefix} failed: {json.dumps(status.get('messages'))[:4000]}\n{comfy.log_tail()}"
    files = sorted((comfy.output_dir / "latents").glob(f"{prefix}_*.latent"))
    assert files, f"{prefix}: no latent saved\n{comfy.log_tail()}"
    return load_file(str(files[-1]))["latent_tensor"]


def test_patch_model_runs_on_a_native_wan_in_comfyui(comfy):
    """A tiny Wan in Wan-native keys through UNETLoader: IASA changes the result, all-dense steps leave it exact."""
    import subprocess
    import sys

    from iasa_core.pose.sequence import PoseSequence
    from iasa_core.pose.synthetic import synthetic_keypoints

    target = comfy.workdir / "models" / "diffusion_models" / "iasa_tiny_wan.safetensors"
    subprocess.run([os.environ.get("COMFYUI_PYTHON") or sys.executable, str(REPO_ROOT / "tests" / "tiny_wan.py"),
                    str(target)], check=True, env=dict(os.environ, COMFYUI_PATH=str(comfy.comfyui_path)),
                   timeout=300)
    seq = PoseSequence(synthetic_keypoints(9, 64, 96, seed=3), 64, 96, fps=25.0)
    (comfy.input_dir / "iasa_tiny_wan_poses.json").write_text(json.dumps(seq.to_pose_keypoint()))

    dense = _run_latent(comfy, _native_wan_prompt("wan_unpatched", None), "wan_unpatched")
    sparse = _run_latent(comfy, _native_wan_prompt("wan_iasa", {}), "wan_iasa")
    steps_dense = _run_latent(comfy, _native_wan_prompt("wan_dense_steps", {"dense_steps": 2}), "wan_dense_steps")
    assert dense.shape == sparse.shape == (1, 16, 3, 8, 12)
    assert bool(sparse.isfinite().all())
    assert (sparse - dense).abs().max().item() > 1e-4, "IASA Patch Model changed nothing"
    assert (steps_dense - dense).abs().max().item() <= 1e-6, "dense steps must be ComfyUI's own attention"
    log = comfy.log_text()
    assert "IASA plan for latent frames 0..2 at 4x6 patches" in log, comfy.log_tail()
    assert "IASA sparse attention:" not in log, comfy.log_tail()  # no dense fallback warning


# ---------------------------------------------------------------------- audio-driven workflows on native Wan


def _tiny_native_wan_prompt(prompt: dict, max_frames: int, size: int) -> dict:
    """The shipped API workflow with CPU-sized settings and no text encoder / CLIP vision model.

    ComfyUI builds umt5-xxl and CLIP-ViT-H at fixed sizes whatever the file holds, so Load CLIP + CLIP Text
    Encode become a random text conditioning and the optional CLIP vision input is left out; every other node,
    link and file name is the shipped one."""
    prompt = json.loads(json.dumps(prompt))
    for node_id, node in list(prompt.items()):
        kind, inputs = node["class_type"], node["inputs"]
        if kind in ("CLIPLoader", "CLIPVisionLoader", "CLIPVisionEncode"):
            del prompt[node_id]
        elif kind == "CLIPTextEncode":
            prompt[node_id] = {"class_type": "TestRandomConditioning",
                               "inputs": {"tokens": 8, "width": 4096, "seed": int(node_id)}}
        elif kind in ("WanAnimateToVideo", "WanFunControlToVideo"):
            inputs.pop("clip_vision_output")
            inputs.update(width=size, height=size)
        elif kind == "IASARenderPoses":
            inputs["width"] = size
        elif kind == "IASAVideoLength":
            inputs["max_frames"] = max_frames
        elif kind == "IASAPatchModel":
            inputs["block_size"] = 16  # 4x4 tokens a latent frame: 128-token blocks would hold whole frames
    return prompt


@pytest.mark.parametrize("name", ["iasa_wan_animate_audio", "iasa_wan_fun_control_audio"])
def test_native_wan_audio_workflow_runs_end_to_end(comfy, name):
    """Speech -> IASA Motion -> pose video -> native Wan node, sampled by UNETLoader + LoRA + IASA Patch Model,
    -> mp4 with the speech, in a real ComfyUI with tiny stand-ins under the workflow's own file names."""
    import subprocess
    import sys

    from iasa_core.media import read_video, read_video_audio

    prompt = load_prompt(WORKFLOWS / "api" / f"{name}_api.json")
    files = {n["class_type"]: n["inputs"] for n in prompt.values()}
    models = comfy.workdir / "models"
    kind = "animate" if "animate" in name else "fun_control"
    subprocess.run([os.environ.get("COMFYUI_PYTHON") or sys.executable, str(REPO_ROOT / "tests" / "tiny_wan.py"),
                    str(models / "diffusion_models" / files["UNETLoader"]["unet_name"]), "--kind", kind,
                    "--lora", str(models / "loras" / files["LoraLoaderModelOnly"]["lora_name"]),
                    "--vae", str(models / "vae" / files["VAELoader"]["vae_name"])],
                   check=True, env=dict(os.environ, COMFYUI_PATH=str(comfy.comfyui_path)), timeout=300)
    copy_workflow_inputs(comfy.input_dir)
    max_frames = 17  # 1.06 s of the 3-s speech at 16 fps: also checks that the audio is cut with the video
    log_start = len(comfy.log_text())

    client = make_client(comfy.address)
    entry = wait_for_history(client, client.queue(_tiny_native_wan_prompt(prompt, max_frames, 64)),
                             float(os.environ.get("IASA_COMFY_TIMEOUT", "1200")), comfy)
    status = entry.get("status") or {}
    assert status.get("status_str", "success") == "success", \
        f"{name} failed: {json.dumps(status.get('messages'))[:4000]}\n{comfy.log_tail()}"
    videos = saved_files(entry.get("outputs"), comfy.output_dir, VIDEO_SUFFIXES)
    assert videos, f"{name} saved no video; outputs: {json.dumps(entry.get('outputs'))[:2000]}"
    frames, fps = read_video(videos[0])
    assert frames.shape == (max_frames, 64, 64, 3) and fps == 16.0
    audio = read_video_audio(videos[0])
    assert audio is not None and abs(audio.duration - max_frames / 16.0) < 0.05, audio and audio.duration
    log = comfy.log_text()[log_start:]
    assert "IASA plan for latent frames 0..4 at 4x4 patches" in log, log[-4000:]  # the 5 video latents
    assert "IASA sparse attention:" not in log, log[-4000:]  # no dense fallback
    assert "lora key not loaded" not in log, log[-4000:]  # the LoRA's keys all landed on the model
    # (over the whole log: a second workflow reuses ComfyUI's cached outputs of the same IASA nodes)
    assert "IASA Video Length: the poses last 3.00 s (48 frames at 16 fps)" in comfy.log_text(), log[-4000:]
