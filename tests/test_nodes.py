"""The ComfyUI node layer, run on CPU with ComfyUI's real data layouts (ComfyUI itself is absent).

IMAGE is a float tensor [B, H, W, C] in 0..1, AUDIO a {"waveform": [B, C, T], "sample_rate"} dict,
POSE_KEYPOINT a list of per-frame dicts. The pack is imported the way ComfyUI imports a custom node
folder: as a package (here under a made-up name) from the repository root.
"""

import importlib.util
import json
import math
import os
import sys
import wave

import numpy as np
import pytest
import torch

from iasa_core import node_support
from iasa_core.pose.sequence import PoseSequence
from iasa_core.pose.synthetic import synthetic_keypoints

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACK_NAME = "iasa_pack_under_test"

# The contract (/tmp/iasa_spec/node_spec.md): inputs in order, then outputs. Never reorder, only append.
CONTRACT = {
    "IASALoadAudio": (["audio_file", "max_seconds"], ["audio"], ("AUDIO",), ("audio",)),
    "IASALoadPoses": (["pose_file", "fps"], [], ("POSE_KEYPOINT",), ("poses",)),
    "IASAMotion": (["audio", "method", "fps", "seed", "seconds"],
                   ["reference_image", "reference_pose", "emage_model", "smplx_model"], ("POSE_KEYPOINT",), ("poses",)),
    "IASADWPose": (["image", "choose", "device", "fps"], [], ("POSE_KEYPOINT",), ("poses",)),
    "IASARenderPoses": (["poses", "width", "height", "hands", "face", "bgr", "min_score"], ["mouth"], ("IMAGE",),
                        ("images",)),
    "IASASparsePlan": (["poses", "width", "height", "frames", "top_k", "block_size", "mode"], [],
                       ("IASA_PLAN", "IMAGE", "FLOAT"), ("plan", "preview", "density")),
    "IASAPatchModel": (["model", "poses", "top_k", "regions", "sink_first", "mode", "block_size", "backend",
                        "dense_steps", "dense_first_blocks", "dense_last_blocks"], [], ("MODEL",), ("model",)),
    "IASAModelLoader": (["model", "dtype", "device"],
                        ["lora_1", "lora_1_strength", "lora_2", "lora_2_strength", "pose_weights", "vae", "seed"],
                        ("IASA_MODEL",), ("model",)),
    "IASASampler": (["model", "reference_image", "poses", "sampler", "steps", "seed", "backend", "sparse"],
                    ["plan", "guidance", "window_frames", "overlap", "start_from_image", "face_restore",
                     "background_restore", "body_restore"], ("IMAGE", "FLOAT"), ("images", "fps")),
    "IASAVideo": (["images", "fps"], ["audio"], ("VIDEO",), ("video",)),
    "IASAVideoLength": (["poses", "max_frames"], ["audio"], ("INT", "FLOAT", "AUDIO"), ("length", "fps", "audio")),
}
KNOWN_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "IMAGE", "MASK", "AUDIO", "VIDEO", "POSE_KEYPOINT",
               "IASA_MODEL", "IASA_PLAN", "MODEL"}
H, W = 64, 48  # the sampler's test size (multiples of 16)


# ---------------------------------------------------------------------- fixtures


def _import_pack(name=PACK_NAME):
    """Import the repository root as a package named ``name``, as ComfyUI imports custom_nodes/<pack>."""
    if name in sys.modules:
        return sys.modules[name]
    # As ComfyUI's load_custom_node does: a spec for the folder's __init__.py (a package, so `.nodes` resolves).
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "__init__.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


@pytest.fixture(scope="module")
def pack():
    return _import_pack()


@pytest.fixture(scope="module")
def nodes(pack):
    return pack.NODE_CLASS_MAPPINGS


@pytest.fixture
def bridge(pack):
    return pack.nodes.comfy_bridge


@pytest.fixture
def folders(tmp_path, bridge):
    """A fresh input folder and models root, used by the bridge instead of ComfyUI's."""
    inp, models = tmp_path / "input", tmp_path / "models"
    inp.mkdir()
    for sub in ("iasa", "dwpose", "emage", "smplx", "loras", "vae", "diffusion_models"):
        (models / sub).mkdir(parents=True)
    bridge.set_input_directory(inp)
    bridge.set_models_dir(models)
    node_support.clear_detector_cache()
    yield inp, models
    bridge.set_input_directory(None)
    bridge.set_models_dir(None)
    node_support.clear_detector_cache()


class Recorder:
    """Stands in for comfy.utils.ProgressBar and remembers every update."""

    bars: list = []

    def __init__(self, total):
        self.total, self.updates = total, []
        Recorder.bars.append(self)

    def update_absolute(self, value, total=None, preview=None):
        self.updates.append((value, total))


@pytest.fixture
def progress(bridge, monkeypatch):
    Recorder.bars = []
    monkeypatch.setattr(bridge, "progress_bar", Recorder)
    return Recorder


def write_wav(path, seconds=1.0, rate=16000, channels=1, amplitude=0.3):
    """A speech-like tone (220 Hz, loudness pulsing at 4 Hz) as 16-bit PCM."""
    t = np.arange(int(seconds * rate)) / rate
    x = amplitude * np.sin(2 * np.pi * 220 * t) * (0.55 + 0.45 * np.sin(2 * np.pi * 4 * t))
    pcm = (np.repeat(x[:, None], channels, axis=1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


def synthetic_pose_keypoint(frames, h=H, w=W, fps=25.0, normalized=False, seed=1):
    seq = PoseSequence(synthetic_keypoints(frames, h, w, seed=seed), h, w, fps=fps)
    out = seq.to_pose_keypoint(normalized=normalized)
    for f in out:
        f["fps"] = fps
    return out


def comfy_image(h=H, w=W, batch=1, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).random((batch, h, w, 3), dtype=np.float32))


def run(node_cls, **kwargs):
    """Call a node the way ComfyUI does: a fresh instance, FUNCTION by name, keyword inputs."""
    return getattr(node_cls(), node_cls.FUNCTION)(**kwargs)


def _dwpose_test_helpers():
    """tests/test_dwpose.py: its tiny ONNX stand-ins of the DWPose networks and the keypoints they give."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    if "test_dwpose" in sys.modules:
        return sys.modules["test_dwpose"]
    spec = importlib.util.spec_from_file_location("test_dwpose", os.path.join(ROOT, "tests", "test_dwpose.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules["test_dwpose"] = module
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------- the pack and its definitions


def test_pack_imports_as_a_package_and_exposes_every_node(pack):
    assert set(pack.NODE_CLASS_MAPPINGS) == set(CONTRACT)
    assert set(pack.NODE_DISPLAY_NAME_MAPPINGS) == set(CONTRACT)
    for name, cls in pack.NODE_CLASS_MAPPINGS.items():
        assert cls.__name__ == name
    assert pack.nodes.comfy_bridge.HAVE_COMFY is False  # (iasa_core's own no-ComfyUI rule: test_foundation)
    # A second import under another name (as a reload would) works too.
    other = _import_pack("iasa_pack_second_import")
    assert set(other.NODE_CLASS_MAPPINGS) == set(CONTRACT)


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_node_definitions_follow_the_contract(nodes, name, folders):
    cls = nodes[name]
    spec = cls.INPUT_TYPES()
    required, optional, returns, names = CONTRACT[name]
    assert list(spec["required"]) == required
    assert list(spec.get("optional", {})) == optional
    for section in ("required", "optional"):
        for inp, entry in spec.get(section, {}).items():
            assert isinstance(entry, tuple) and len(entry) == 2, (name, inp)
            kind, opts = entry
            assert isinstance(opts.get("tooltip"), str) and len(opts["tooltip"]) > 10, (name, inp)
            if isinstance(kind, list):
                assert all(isinstance(v, str) for v in kind)
                if "default" in opts:
                    assert opts["default"] in kind, (name, inp)
            else:
                assert kind in KNOWN_TYPES, (name, inp, kind)
                if kind in ("INT", "FLOAT"):
                    assert opts.get("min", -math.inf) <= opts["default"] <= opts.get("max", math.inf), (name, inp)
                if kind == "BOOLEAN":
                    assert isinstance(opts["default"], bool)
            if inp == "seed" and name in ("IASAMotion", "IASASampler"):
                assert opts.get("control_after_generate") is True
    assert cls.RETURN_TYPES == returns and cls.RETURN_NAMES == names
    assert len(cls.OUTPUT_TOOLTIPS) == len(cls.RETURN_TYPES)
    assert callable(getattr(cls, cls.FUNCTION))
    assert cls.CATEGORY.startswith("IASA/") and len(cls.DESCRIPTION) > 40


def test_bridge_without_comfyui_uses_plain_folders(bridge, tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    (a / "iasa" / "sub").mkdir(parents=True)
    (b / "iasa").mkdir(parents=True)
    (b / "emage" / "emage_audio").mkdir(parents=True)
    (a / "iasa" / "sub" / "student.safetensors").write_bytes(b"x")
    (b / "iasa" / "other.pt").write_bytes(b"x")
    (b / "iasa" / "readme.txt").write_text("not a model")
    (b / "emage" / "emage_audio" / "config.json").write_text("{}")
    bridge.set_models_dir(None)
    monkeypatch.setenv(bridge.ENV_MODELS, os.pathsep.join([str(a), str(b)]))
    assert bridge.list_models("iasa") == ["other.pt", "sub/student.safetensors"]
    assert bridge.full_model_path(("iasa",), "sub/student.safetensors") == str(a / "iasa" / "sub" / "student.safetensors")
    assert bridge.list_model_subdirs("emage") == ["emage_audio"]
    assert bridge.full_model_dir("emage", "emage_audio") == str(b / "emage" / "emage_audio")
    with pytest.raises(FileNotFoundError, match=r"'gone.pt'.*ComfyUI/models/vae"):
        bridge.full_model_path("vae", "gone.pt", "VAE file")
    monkeypatch.delenv(bridge.ENV_MODELS)
    assert bridge.model_dirs("iasa") == [] and bridge.list_models("iasa") == []

    bridge.set_input_directory(tmp_path)
    try:
        (tmp_path / "x.wav").write_bytes(b"x")
        assert bridge.annotated_filepath("x.wav [input]") == str(tmp_path / "x.wav")
        assert bridge.exists_annotated_filepath("x.wav") and not bridge.exists_annotated_filepath("y.wav")
    finally:
        bridge.set_input_directory(None)
    bar = bridge.progress_bar(3)
    bar.update_absolute(2, 3)
    assert bar.current == 2 and bridge.cancel_check() is False and bridge.torch_device().type in ("cpu", "cuda")


# ---------------------------------------------------------------------- audio


def test_validation_errors_are_listed_once(nodes):
    """ComfyUI's validate_inputs appends a failure once per VALIDATE_INPUTS argument it fills (each input
    the node declares, plus input_types): one such argument, or the same message is shown twice."""
    import inspect

    for name, cls in nodes.items():
        if not hasattr(cls, "VALIDATE_INPUTS"):
            continue
        declared = {k for section in cls.INPUT_TYPES().values() for k in section}
        spec = inspect.getfullargspec(cls.VALIDATE_INPUTS)
        filled = [a for a in spec.args if a in declared or a == "input_types"]
        assert len(filled) == 1 and spec.varkw is None, (name, filled)


def test_dwpose_weights_kept_by_controlnet_aux_are_found(tmp_path, bridge, folders, monkeypatch):
    from iasa_core.detect import dwpose as D

    custom_nodes = tmp_path / "custom_nodes"
    kept = custom_nodes / "comfyui_controlnet_aux" / "ckpts" / "yzd-v" / "DWPose"
    kept.mkdir(parents=True)
    for name in (D.DET_ONNX, D.POSE_ONNX):
        (kept / name).write_bytes(b"onnx")
    monkeypatch.setattr(bridge, "_custom_nodes_dirs", lambda: [str(custom_nodes)])
    monkeypatch.delenv("AUX_ANNOTATOR_CKPTS_PATH", raising=False)
    monkeypatch.setattr(D, "_from_hf_cache", lambda repo, name: None)
    dirs = bridge.dwpose_dirs()
    assert dirs[0] == str(folders[1] / "dwpose")  # models/dwpose is searched first
    assert dirs[1:] == [str(custom_nodes / "comfyui_controlnet_aux" / "ckpts")]
    assert D.find_dwpose_files(dirs) == (str(kept / D.DET_ONNX), str(kept / D.POSE_ONNX))
    # A registry install's hyphenated folder, and a ckpts folder moved with controlnet_aux's variable.
    (custom_nodes / "comfyui_controlnet_aux").rename(custom_nodes / "comfyui-controlnet-aux")
    assert bridge.controlnet_aux_ckpts() == [str(custom_nodes / "comfyui-controlnet-aux" / "ckpts")]
    monkeypatch.setenv("AUX_ANNOTATOR_CKPTS_PATH", str(tmp_path))
    assert bridge.controlnet_aux_ckpts()[0] == str(tmp_path)


def test_load_audio_from_the_input_folder_and_from_audio(nodes, folders):
    inp, _ = folders
    write_wav(inp / "speech.wav", seconds=1.0, rate=16000)
    (inp / "notes.txt").write_text("not audio")
    cls = nodes["IASALoadAudio"]
    combo, opts = cls.INPUT_TYPES()["required"]["audio_file"]
    assert combo == ["speech.wav"] and "audio_upload" not in opts  # the frontend's upload widget breaks custom nodes

    (audio,) = run(cls, audio_file="speech.wav", max_seconds=600.0)
    assert audio["sample_rate"] == 16000 and audio["waveform"].shape == (1, 1, 16000)
    assert audio["waveform"].dtype == torch.float32 and audio["waveform"].abs().max() <= 1.0

    h1 = cls.IS_CHANGED(audio_file="speech.wav", max_seconds=600.0)
    write_wav(inp / "speech.wav", seconds=0.9)
    assert h1 and cls.IS_CHANGED(audio_file="speech.wav", max_seconds=600.0) != h1
    assert cls.VALIDATE_INPUTS(audio_file="speech.wav") is True
    assert "missing.wav" in cls.VALIDATE_INPUTS(audio_file="missing.wav")
    assert cls.VALIDATE_INPUTS(audio_file="") is True  # nothing chosen: load() names what is missing
    message = cls.VALIDATE_INPUTS(audio_file="missing.wav")
    assert message.startswith("audio_file 'missing.wav'") and "--" not in message

    stereo = {"waveform": torch.rand(1, 2, 8000) * 0.5 - 0.25, "sample_rate": 8000}
    (out,) = run(cls, audio_file="missing.wav", max_seconds=600.0, audio=stereo)
    assert out["waveform"].shape == (1, 2, 8000) and out["sample_rate"] == 8000
    assert torch.allclose(out["waveform"], stereo["waveform"])


def test_load_audio_errors_surface_as_they_are(nodes, folders):
    from iasa_core.audio import AudioError

    inp, _ = folders
    cls = nodes["IASALoadAudio"]
    write_wav(inp / "quiet.wav", amplitude=0.0)
    write_wav(inp / "long.wav", seconds=2.0)
    (inp / "empty.wav").write_bytes(b"")
    (inp / "broken.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    with pytest.raises(AudioError, match="silent"):
        run(cls, audio_file="quiet.wav", max_seconds=600.0)
    with pytest.raises(AudioError, match="limit is 1 s"):
        run(cls, audio_file="long.wav", max_seconds=1.0)
    with pytest.raises(AudioError, match="empty"):
        run(cls, audio_file="empty.wav", max_seconds=600.0)
    with pytest.raises(AudioError, match="could not be read"):
        run(cls, audio_file="broken.wav", max_seconds=600.0)
    with pytest.raises(FileNotFoundError, match="gone.wav"):
        run(cls, audio_file="gone.wav", max_seconds=600.0)


# ---------------------------------------------------------------------- poses


def test_load_poses_fps_from_the_file_or_the_input(nodes, folders):
    inp, _ = folders
    cls = nodes["IASALoadPoses"]
    frames = synthetic_pose_keypoint(5, normalized=True)
    for f in frames:
        del f["fps"]
    (inp / "plain.json").write_text(json.dumps(frames))
    PoseSequence(synthetic_keypoints(5, H, W, seed=1), H, W, fps=12.0).save_json(inp / "timed.json")
    assert cls.INPUT_TYPES()["required"]["pose_file"][0] == ["plain.json", "timed.json"]

    (plain,) = run(cls, pose_file="plain.json", fps=30.0)
    (timed,) = run(cls, pose_file="timed.json", fps=30.0)
    assert len(plain) == 5 and all(f["fps"] == 30.0 for f in plain)
    assert all(f["fps"] == 12.0 for f in timed)
    # Normalised coordinates in the file come back in pixels of the canvas.
    a = PoseSequence.from_pose_keypoint(plain).keypoints
    b = PoseSequence.from_pose_keypoint(timed).keypoints
    assert plain[0]["canvas_width"] == W and np.allclose(a, b, atol=1e-3)
    assert cls.VALIDATE_INPUTS(pose_file="nope.json") != True  # noqa: E712
    assert cls.IS_CHANGED(pose_file="plain.json")


def test_render_poses_equals_the_library(nodes):
    from iasa_core.pose.render import RenderStyle, render_poses

    cls = nodes["IASARenderPoses"]
    poses = synthetic_pose_keypoint(5)
    (img,) = run(cls, poses=poses, width=0, height=0, hands=True, face=True, bgr=True, min_score=0.3)
    seq = PoseSequence.from_pose_keypoint(poses)
    want = render_poses(seq, style=RenderStyle(hands=True, face=True, bgr=True, min_score=0.3))
    assert img.shape == (5, H, W, 3) and img.dtype == torch.float32
    assert torch.equal(img, torch.from_numpy(want).float() / 255.0)
    (mouth,) = run(cls, poses=poses, width=0, height=0, hands=True, face=True, bgr=True, min_score=0.3, mouth=True)
    want = render_poses(seq, style=RenderStyle(hands=True, face=True, mouth=True, bgr=True, min_score=0.3))
    assert torch.equal(mouth, torch.from_numpy(want).float() / 255.0) and not torch.equal(mouth, img)
    (big,) = run(cls, poses=poses, width=96, height=0, hands=False, face=False, bgr=False, min_score=0.3)
    assert big.shape == (5, 128, 96, 3) and 0.0 <= float(big.min()) and float(big.max()) <= 1.0


def _shown(kp, min_score=0.3):
    """Keypoints as POSE_KEYPOINT carries them: confidence 1.0 where drawn (score >= min_score), else all 0."""
    kp = np.array(kp, dtype=np.float64, copy=True)
    shown = kp[..., 2] >= min_score
    kp[..., 2] = shown
    kp[~shown] = 0.0
    return kp


def _controlnet_aux_points(frame):
    """The body/hand/face points comfyui_controlnet_aux draws from one POSE_KEYPOINT frame, as its
    decode_json_as_poses reads them: a point is kept only when its confidence is at least 1.0."""
    out = {}
    for key in ("pose_keypoints_2d", "hand_left_keypoints_2d", "hand_right_keypoints_2d", "face_keypoints_2d"):
        values = np.asarray(frame["people"][0].get(key) or [], dtype=np.float64).reshape(-1, 3)
        out[key] = {i for i, (_x, _y, c) in enumerate(values) if c >= 1.0}
    return out


def test_pose_keypoint_scores_follow_the_convention_controlnet_aux_draws(nodes, folders):
    from iasa_core.pose.render import openpose18

    inp, _ = folders
    seq = PoseSequence(synthetic_keypoints(3, H, W, seed=2), H, W, fps=25.0)
    rng = np.random.default_rng(0)
    seq.keypoints[..., 2] = rng.uniform(0.0, 0.99, seq.keypoints.shape[:2])  # detector-like scores, all < 1
    seq.save_json(inp / "scored.json")
    (poses,) = run(nodes["IASALoadPoses"], pose_file="scored.json", fps=25.0)
    for t, frame in enumerate(poses):
        body, body_ok = openpose18(seq.keypoints[t], 0.3)  # what IASA Render Poses draws at its default
        drawn = _controlnet_aux_points(frame)
        assert drawn["pose_keypoints_2d"] == set(np.flatnonzero(body_ok))
        values = np.asarray(frame["people"][0]["pose_keypoints_2d"]).reshape(-1, 3)
        assert set(np.unique(values[:, 2])) <= {0.0, 1.0}
        assert not values[values[:, 2] == 0].any()  # a missing point is (0, 0, 0)
        np.testing.assert_allclose(values[body_ok, :2], body[body_ok, :2], atol=1e-4)
        face = seq.keypoints[t][23:91]
        assert drawn["face_keypoints_2d"] == set(np.flatnonzero(face[:, 2] >= 0.3))
    # Read back by our own nodes, the same points are present (any confidence above 0 counts).
    back = PoseSequence.from_pose_keypoint(poses)
    assert np.array_equal(back.keypoints[..., 2] > 0, seq.keypoints[..., 2] >= 0.3)


def test_dwpose_node_image_video_cache_and_motion_from_image(nodes, folders, progress):
    T = _dwpose_test_helpers()

    _, models = folders
    T.make_onnx_models(models / "dwpose")
    photo = torch.from_numpy(T.photo().astype(np.float32) / 255.0)[None]  # IMAGE [1, 720, 1280, 3]
    cls = nodes["IASADWPose"]

    (poses,) = run(cls, image=photo, choose="largest", device="auto", fps=25.0)
    assert len(poses) == 1 and (poses[0]["canvas_width"], poses[0]["canvas_height"]) == (T.IMG_W, T.IMG_H)
    want = _shown(T.expected_keypoints("A"))  # POSE_KEYPOINT's convention: 1.0 for each point drawn
    ok = want[:, 2] > 0
    got = PoseSequence.from_pose_keypoint(poses).keypoints[0]
    np.testing.assert_allclose(got[ok], want[ok], atol=2e-3)
    assert not got[~ok].any()

    video = torch.cat([photo, photo, photo])
    (tracked,) = run(cls, image=video, choose="central", device="cpu", fps=12.0)
    seq = PoseSequence.from_pose_keypoint(tracked)
    assert len(seq) == 3 and all(f["fps"] == 12.0 for f in tracked)
    want_b = _shown(T.expected_keypoints("B"))
    np.testing.assert_allclose(seq.keypoints[2][want_b[:, 2] > 0], want_b[want_b[:, 2] > 0], atol=2e-3)
    assert [u for u, _ in progress.bars[-1].updates] == [1, 2, 3]  # a progress step per frame
    assert len(node_support._DETECTORS) == 1  # the detector is loaded once and reused

    # IASAMotion finds the reference pose on the photo with the same detector; the canvas is the photo's.
    audio = {"waveform": torch.from_numpy(_tone(0.4)).view(1, 1, -1), "sample_rate": 16000}
    (motion,) = run(nodes["IASAMotion"], audio=audio, method="procedural", fps=25.0, seed=0, seconds=0.0,
                    reference_image=photo)
    assert len(motion) == 10 and (motion[0]["canvas_width"], motion[0]["canvas_height"]) == (T.IMG_W, T.IMG_H)
    assert len(node_support._DETECTORS) == 1
    node_support.clear_detector_cache()
    assert not node_support._DETECTORS


def test_missing_dwpose_weights_name_the_files_and_the_folder(nodes, folders, monkeypatch):
    from iasa_core.detect import dwpose as D

    _, models = folders
    monkeypatch.setattr(D, "_from_hf_cache", lambda repo, name: None)
    with pytest.raises(FileNotFoundError) as err:
        run(nodes["IASADWPose"], image=comfy_image(), choose="largest", device="cpu", fps=25.0)
    msg = str(err.value)
    for needle in ("yolox_l.onnx", "dw-ll_ucoco_384.onnx", str(models / "dwpose")):
        assert needle in msg
    audio = {"waveform": torch.from_numpy(_tone(0.4)).view(1, 1, -1), "sample_rate": 16000}
    with pytest.raises(FileNotFoundError, match="yolox_l.onnx"):
        run(nodes["IASAMotion"], audio=audio, method="procedural", fps=25.0, seed=0, seconds=0.0,
            reference_image=comfy_image())


# ---------------------------------------------------------------------- motion


def _tone(seconds, rate=16000):
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (0.55 + 0.45 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)


def test_motion_from_a_reference_pose_matches_the_library(nodes, folders):
    from iasa_core.audio import load_audio
    from iasa_core.motion.from_audio import poses_from_audio

    inp, _ = folders
    write_wav(inp / "speech.wav", seconds=1.0)
    (audio,) = run(nodes["IASALoadAudio"], audio_file="speech.wav", max_seconds=600.0)
    # A comfyui_controlnet_aux-style reference: normalised coordinates, several frames (the first is used).
    ref = synthetic_pose_keypoint(3, h=96, w=80, normalized=True)
    cls = nodes["IASAMotion"]
    (poses,) = run(cls, audio=audio, method="procedural", fps=25.0, seed=3, seconds=0.0, reference_pose=ref)
    assert len(poses) == 25 and (poses[0]["canvas_width"], poses[0]["canvas_height"]) == (80, 96)
    assert poses[0]["fps"] == 25.0
    ref_px = PoseSequence.from_pose_keypoint(ref)
    want = poses_from_audio(load_audio(str(inp / "speech.wav")), ref_px.keypoints[0], 96, 80, fps=25.0, seed=3)
    np.testing.assert_allclose(PoseSequence.from_pose_keypoint(poses).keypoints, _shown(want.keypoints), atol=1e-3)

    (short,) = run(cls, audio=audio, method="procedural", fps=25.0, seed=3, seconds=0.4, reference_pose=ref)
    assert len(short) == 10


def test_motion_errors_are_clear(nodes, folders):
    audio = {"waveform": torch.from_numpy(_tone(0.4)).view(1, 1, -1), "sample_rate": 16000}
    cls = nodes["IASAMotion"]
    kw = dict(audio=audio, fps=25.0, seed=0, seconds=0.0)
    with pytest.raises(ValueError, match="reference_pose .*reference_image"):
        run(cls, method="procedural", **kw)
    ref = synthetic_pose_keypoint(1)
    with pytest.raises(ValueError, match="H-Liu1997/emage_audio.*models/emage"):
        run(cls, method="emage", reference_pose=ref, **kw)
    _, models = folders
    (models / "emage" / "emage_audio").mkdir()
    (models / "emage" / "emage_audio" / "config.json").write_text("{}")
    assert "emage_audio" in cls.INPUT_TYPES()["optional"]["emage_model"][0]
    with pytest.raises(ValueError, match="SMPLX_NEUTRAL_2020.npz.*models/smplx"):
        run(cls, method="emage", reference_pose=ref, emage_model="emage_audio", **kw)
    empty = [{"people": [], "canvas_width": W, "canvas_height": H}]
    with pytest.raises(ValueError, match="no person"):
        run(cls, method="procedural", reference_pose=empty, **kw)


# ---------------------------------------------------------------------- sparse plan


def test_sparse_plan_node_matches_build_plan(nodes):
    from iasa_core.sparse.plan import build_plan

    cls = nodes["IASASparsePlan"]
    # Poses on a canvas twice the video size: keypoints are rescaled to the video.
    poses = synthetic_pose_keypoint(11, h=2 * H, w=2 * W)
    plan, preview, density = run(cls, poses=poses, width=W, height=H, frames=0, top_k=1, block_size=16,
                                 mode="exact")
    kp = synthetic_keypoints(11, 2 * H, 2 * W, seed=1)
    kp = np.concatenate([kp, kp[-1:], kp[-1:]])  # padded to 13 = 4n+1, as the pipeline pads
    kp[..., :2] /= 2
    want = build_plan(PoseSequence(kp, H, W), (H, W), top_k=1, block_size=16)
    assert plan["plan"].grid.num_frames == 13 and density == pytest.approx(want.density)
    assert plan["settings"] == {"top_k": 1, "block_size": 16, "mode": "exact"} and plan["size"] == (H, W)
    assert isinstance(density, float) and 0 < density <= 1
    assert preview.ndim == 4 and preview.shape[0] == 1 and preview.shape[-1] == 3
    assert 0.0 <= float(preview.min()) and float(preview.max()) <= 1.0

    first, _, _ = run(cls, poses=poses, width=W, height=H, frames=5, top_k=1, block_size=16, mode="pooled")
    assert first["plan"].grid.num_frames == 5 and first["plan"].mode == "pooled"
    with pytest.raises(ValueError, match="4n\\+1"):
        run(cls, poses=poses, width=W, height=H, frames=6, top_k=1, block_size=16, mode="exact")
    with pytest.raises(ValueError, match="aspect"):
        run(cls, poses=poses, width=64, height=64, frames=0, top_k=1, block_size=16, mode="exact")


# ---------------------------------------------------------------------- model, sampler, video


@pytest.fixture(scope="module")
def tiny_model(nodes):
    (model,) = run(nodes["IASAModelLoader"], model="tiny", dtype="auto", device="cpu")
    return model


def test_model_loader_tiny_preset(tiny_model):
    system = tiny_model["system"]
    from iasa_core.node_support import pick_dtype

    expected = pick_dtype("auto", "cpu")  # bfloat16 on CPUs with native bf16, else float32
    assert tiny_model["device"] == "cpu" and tiny_model["dtype"] == str(expected).replace("torch.", "")
    assert system.device.type == "cpu" and system.dtype == expected and "random" in system.source


def test_model_loader_missing_files_name_the_file_and_the_folder(nodes, folders):
    _, models = folders
    cls = nodes["IASAModelLoader"]
    (models / "iasa" / "student.safetensors").write_bytes(b"")
    assert "student.safetensors" in cls.INPUT_TYPES()["required"]["model"][0]
    with pytest.raises(FileNotFoundError) as err:
        run(cls, model="missing.safetensors", dtype="auto", device="cpu")
    msg = str(err.value)
    assert "missing.safetensors" in msg and "models/iasa" in msg and str(models / "iasa") in msg
    with pytest.raises(FileNotFoundError, match=r"gone_lora.safetensors.*models/loras"):
        run(cls, model="tiny", dtype="auto", device="cpu", lora_1="gone_lora.safetensors", lora_1_strength=1.0)


def test_sampler_runs_the_pipeline_with_progress(nodes, tiny_model, progress):
    from iasa_core.media import load_image
    from iasa_core.pipeline import GenerateOptions, generate_video

    cls = nodes["IASASampler"]
    ref = comfy_image(batch=2)  # a batch: the first image is the reference
    poses = synthetic_pose_keypoint(9)
    images, fps = run(cls, model=tiny_model, reference_image=ref, poses=poses, sampler="auto", steps=0, seed=7,
                      backend="auto", sparse=True)
    assert images.shape == (9, H, W, 3) and images.dtype == torch.float32 and fps == 25.0
    assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    assert [u for u, _ in progress.bars[-1].updates] == [1, 2, 3, 4]  # one update per student step
    # Before the steps, the conditioning has its own bar: reference image, reference pose, first window.
    assert len(progress.bars) == 2 and progress.bars[0].updates == [(0, 3), (1, 3), (2, 3), (3, 3)]

    want = generate_video(tiny_model["system"], load_image(ref), PoseSequence.from_pose_keypoint(poses),
                          GenerateOptions(seed=7))
    assert torch.equal((images * 255).round().to(torch.uint8), torch.from_numpy(want.frames))
    # start_from_image off: the library's anchor_first=False, a different first frame
    free, _ = run(cls, model=tiny_model, reference_image=ref, poses=poses, sampler="auto", steps=0, seed=7,
                  backend="auto", sparse=True, start_from_image=False)
    want_free = generate_video(tiny_model["system"], load_image(ref), PoseSequence.from_pose_keypoint(poses),
                               GenerateOptions(seed=7, anchor_first=False))
    assert torch.equal((free * 255).round().to(torch.uint8), torch.from_numpy(want_free.frames))
    assert not torch.equal(free[0], images[0])


def test_messages_shown_in_comfyui_name_inputs_not_cli_flags(nodes, folders, tiny_model):
    inp, _ = folders
    (inp / "empty.wav").write_bytes(b"")
    with pytest.raises(Exception) as err:
        run(nodes["IASALoadAudio"], audio_file="empty.wav", max_seconds=600.0)
    assert str(err.value).startswith("audio_file ") and "file file" not in str(err.value).lower()
    # Poses on a square canvas for a 48x64 (width x height) image: refused with the node inputs to fix it.
    with pytest.raises(ValueError) as err:
        run(nodes["IASASampler"], model=tiny_model, reference_image=comfy_image(), poses=synthetic_pose_keypoint(5, 64, 64),
            sampler="auto", steps=0, seed=0, backend="auto", sparse=True)
    msg = str(err.value)
    assert "64x64 canvas" in msg and "48x64 (width x height)" in msg and "reference_image" in msg
    assert "--" not in msg


def test_sampler_refuses_a_backend_this_device_cannot_run_before_the_prompt_runs(nodes, monkeypatch):
    import iasa_core.sparse.attention as attention

    cls = nodes["IASASampler"]
    assert cls.VALIDATE_INPUTS(backend="gather") is True and cls.VALIDATE_INPUTS(backend="auto") is True
    assert "not one of" in cls.VALIDATE_INPUTS(backend="cudnn")
    monkeypatch.setattr(attention, "flashinfer_available", lambda device: (False, "FlashInfer needs CUDA"))
    message = cls.VALIDATE_INPUTS(backend="flashinfer")
    assert message.startswith("backend flashinfer cannot run on") and "FlashInfer needs CUDA" in message


def test_sampler_steps_and_guidance_default_to_the_models_own(nodes, tiny_model, monkeypatch):
    import iasa_core.pipeline as pipeline

    cls = nodes["IASASampler"]
    types = cls.INPUT_TYPES()
    steps, guidance = types["required"]["steps"][1], types["optional"]["guidance"][1]
    assert steps["default"] == 0 and guidance["default"] == 0.0
    for opts in (steps, guidance):
        assert "0 = the model's own" in opts["tooltip"] and "ignores it" in opts["tooltip"]
    seen = []

    def fake_generate(system, image, seq, options, **kwargs):
        seen.append((options.steps, options.guidance))
        raise KeyboardInterrupt  # stop before any sampling: only the options matter here

    monkeypatch.setattr(pipeline, "generate_video", fake_generate)
    args = dict(model=tiny_model, reference_image=comfy_image(), poses=synthetic_pose_keypoint(5), sampler="teacher",
                seed=0, backend="auto", sparse=True)
    for given, want in (({}, (None, None)), ({"steps": 12, "guidance": 3.5}, (12, 3.5))):
        with pytest.raises(KeyboardInterrupt):
            run(cls, **args, **given)
        assert seen[-1] == want


def test_embedded_model_is_the_default_and_animates_the_bundled_character(nodes, progress):
    from iasa_core.demo import DEMO_IMAGE, DEMO_POSE
    from iasa_core.media import image_to_comfy, load_image
    from iasa_core.pipeline import resize_image

    cls = nodes["IASAModelLoader"]
    assert cls.INPUT_TYPES()["required"]["model"][1]["default"] == "embedded"
    (model,) = run(cls, model="embedded", dtype="auto", device="cpu")
    assert model["system"].config.name == "cpu-small" and model["system"].schedule["kind"] == "student"
    ref = PoseSequence.load_json(DEMO_POSE)
    kp = np.repeat(ref.keypoints, 5, axis=0).astype(np.float32)
    kp[..., :2] *= 128 / ref.width  # the bundled pose is on the 256x256 image
    poses = PoseSequence(kp, 128, 128, 25.0).to_pose_keypoint()
    image = image_to_comfy(resize_image(load_image(DEMO_IMAGE), (128, 128)))
    images, fps = run(nodes["IASASampler"], model=model, reference_image=image, poses=poses, sampler="auto",
                      steps=30, seed=0, backend="auto", sparse=True)
    assert images.shape == (5, 128, 128, 3) and fps == 25.0
    assert float(images.std()) > 0.05  # a picture, not a flat frame


def test_sampler_plan_settings_and_cancel(nodes, tiny_model, bridge, monkeypatch):
    from iasa_core.pipeline import GenerateOptions

    poses = synthetic_pose_keypoint(9)
    plan, _, _ = run(nodes["IASASparsePlan"], poses=poses, width=W, height=H, frames=0, top_k=1, block_size=16,
                     mode="pooled")
    settings = dict(plan["settings"], sink_first=True)
    system, opt = node_support.apply_plan_settings(tiny_model["system"], GenerateOptions(), settings)
    assert (opt.top_k, opt.block_size, opt.mode) == (1, 16, "pooled") and system.sparse["sink_first"] is True
    assert tiny_model["system"].sparse["sink_first"] is False  # the loaded model is left as it was

    class Interrupted(Exception):
        pass

    calls = []

    def interrupt():
        calls.append(1)
        if len(calls) == 2:  # after the first sampling step
            raise Interrupted("cancelled")

    monkeypatch.setattr(bridge, "throw_if_interrupted", interrupt)
    with pytest.raises(Interrupted):
        run(nodes["IASASampler"], model=tiny_model, reference_image=comfy_image(), poses=poses, sampler="student",
            steps=30, seed=0, backend="gather", sparse=True, plan=plan)


def _encode_like_core_video(path, waveform, rate):
    """Write AUDIO the way ComfyUI 0.3.64's VideoFromComponents does: a stereo AAC stream fed interleaved
    frames laid out by the channel count (written here from reading it, to measure its level)."""
    import av

    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("aac", rate=rate)
        frame = av.AudioFrame.from_ndarray(waveform.movedim(2, 1).reshape(1, -1).float().numpy(), format="flt",
                                           layout="mono" if waveform.shape[1] == 1 else "stereo")
        frame.sample_rate = rate
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def _decoded_rms_db(path):
    import av

    with av.open(str(path)) as c:
        data = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
    return 20 * np.log10(np.sqrt(np.mean(data.astype(np.float64) ** 2)))


def test_video_keeps_a_mono_speech_level_through_the_stereo_upmix(nodes, tmp_path):
    pytest.importorskip("av")
    mono = {"waveform": torch.from_numpy(_tone(1.0)).view(1, 1, -1), "sample_rate": 16000}
    level = 20 * np.log10(float(mono["waveform"].pow(2).mean().sqrt()))
    _encode_like_core_video(tmp_path / "plain.mp4", mono["waveform"], 16000)
    assert _decoded_rms_db(tmp_path / "plain.mp4") < level - 2.0  # the core writer alone: ~3 dB lost
    (video,) = run(nodes["IASAVideo"], images=comfy_image(batch=25), fps=25.0, audio=mono)
    audio = video.get_components().audio
    assert audio["waveform"].shape[1] == 2 and torch.equal(audio["waveform"][:, 0], audio["waveform"][:, 1])
    _encode_like_core_video(tmp_path / "ours.mp4", audio["waveform"], audio["sample_rate"])
    assert abs(_decoded_rms_db(tmp_path / "ours.mp4") - level) < 0.5


def test_video_node_saves_an_mp4_with_audio(nodes, tmp_path):
    av = pytest.importorskip("av")
    frames = comfy_image(batch=9)
    audio = {"waveform": torch.from_numpy(_tone(0.36)).view(1, 1, -1), "sample_rate": 16000}
    (video,) = run(nodes["IASAVideo"], images=frames, fps=25.0, audio=audio)
    assert video.get_dimensions() == (W, H)
    parts = video.get_components()
    assert parts.images.shape == (9, H, W, 3) and float(parts.frame_rate) == 25.0
    assert parts.audio["waveform"].shape == (1, 2, 5760)  # mono copied to both channels (unity gain)
    out = tmp_path / "out.mp4"
    video.save_to(str(out), format="auto", codec="auto", metadata={"prompt": {"1": {}}})  # as SaveVideo calls it
    with av.open(str(out)) as c:
        assert len(c.streams.video) == 1 and len(c.streams.audio) == 1
        assert sum(1 for _ in c.decode(video=0)) == 9
    with pytest.raises(ValueError, match="mp4"):
        video.save_to(str(tmp_path / "x.webm"), format="webm", codec="auto")
    with pytest.raises(ValueError, match="IMAGE"):
        run(nodes["IASAVideo"], images=torch.zeros(9, H, W), fps=25.0)


@pytest.mark.parametrize("poses, max_frames, length, capped", [
    (1, 81, 1, False), (2, 81, 5, False), (5, 81, 5, False), (48, 81, 49, False), (49, 81, 49, False),
    (81, 81, 81, False), (82, 81, 81, True), (160, 81, 81, True), (160, 80, 77, True), (160, 1, 1, True),
    (160, 200, 161, False)])
def test_wan_video_length_is_4k_plus_1_covering_the_poses(poses, max_frames, length, capped):
    from iasa_core.video_length import wan_video_length

    size = wan_video_length(poses, 16.0, max_frames)
    assert (size.length, size.capped) == (length, capped)
    assert (size.length - 1) % 4 == 0 and size.seconds == length / 16.0


def test_wan_video_length_rejects_nonsense():
    from iasa_core.video_length import wan_video_length

    with pytest.raises(ValueError, match="poses must hold at least one frame"):
        wan_video_length(0, 16.0)
    with pytest.raises(ValueError, match="max_frames"):
        wan_video_length(5, 16.0, 0)
    with pytest.raises(ValueError, match="fps"):
        wan_video_length(5, float("nan"))


def test_video_length_node_sizes_the_video_and_cuts_the_audio_with_it(nodes, caplog):
    poses = synthetic_pose_keypoint(48, fps=16.0)  # 3 s at Wan's 16 fps
    mono = {"waveform": torch.from_numpy(_tone(3.0)).view(1, 1, -1), "sample_rate": 16000}
    length, fps, audio = run(nodes["IASAVideoLength"], poses=poses, max_frames=81, audio=mono)
    assert (length, fps) == (49, 16.0)
    assert audio["waveform"].shape == (1, 2, 48000)  # all of it, mono copied to both channels at unity gain
    assert torch.equal(audio["waveform"][:, 0], mono["waveform"][:, 0])
    assert torch.equal(audio["waveform"][:, 1], mono["waveform"][:, 0])
    assert not [r for r in caplog.records if "IASA Video Length" in r.getMessage()]

    with caplog.at_level("WARNING"):
        length, fps, audio = run(nodes["IASAVideoLength"], poses=poses, max_frames=33, audio=mono)
    assert (length, fps) == (33, 16.0)
    assert audio["waveform"].shape == (1, 2, 33000)  # cut to the video: 33 frames / 16 fps
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "poses last 3.00 s (48 frames at 16 fps) but max_frames is 33" in warning

    length, fps, audio = run(nodes["IASAVideoLength"], poses=poses, max_frames=81)
    assert (length, fps, audio) == (49, 16.0, None)
    with pytest.raises(ValueError, match="poses"):
        run(nodes["IASAVideoLength"], poses=None, max_frames=81)
