"""Bad inputs (issue 15, part A): each is refused before any work with exit status 2 and one `error:` line that
names the input, and leaves no output or temporary file behind. Ctrl-C exits 130 with one line.

Inputs come as a careful user or an adversary would give them: missing, empty, corrupt, wrong type, wrong size,
NaN/inf, huge, a directory, interrupted; through the CLI, the library and the ComfyUI nodes (a NaN reaches a node
through an API prompt: JSON's NaN passes the widgets' min/max checks).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import wave

import numpy as np
import pytest
import torch
from PIL import Image

from iasa_core.__main__ import main
from iasa_core.pose.sequence import PoseSequence
from iasa_core.pose.synthetic import synthetic_keypoints
from tests.test_nodes import _import_pack

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
H, W = 64, 48  # poses canvas and reference image (height x width)
NAN = json.loads('{"v": NaN}')["v"]  # the value an API prompt delivers


# ---------------------------------------------------------------------- helpers


def _files(folder) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs}


def refused(args: list[str], folder, capsys, *names: str, code: int = 2) -> str:
    """Run the CLI; assert the exit status, one `error:` line naming ``names``, and no new file in ``folder``."""
    before = _files(folder)
    try:
        rc = main([str(a) for a in args])
    except SystemExit as exc:  # argparse's own refusals (a bad number, a missing flag)
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == code, err
    assert "Traceback" not in err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    assert [line for line in lines if "error" in line] == lines[-1:], err  # one error line, the last
    err = lines[-1]
    assert err.startswith("error:"), err
    for name in names:
        assert name in err, (name, err)
    assert _files(folder) == before, _files(folder) - before
    return err


def _speech(seconds: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (0.55 + 0.45 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)


def write_wav(path, samples: np.ndarray, rate: int = 16000) -> str:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return str(path)


@pytest.fixture
def inputs(tmp_path):
    """A tiny valid set: 5 poses on a 64x48 canvas, a 64x48 reference image, 1 s of speech."""
    seq = PoseSequence(synthetic_keypoints(5, H, W, seed=1), H, W, fps=25.0)
    seq.save_json(tmp_path / "poses.json")
    Image.fromarray(np.full((H, W, 3), 150, np.uint8)).save(tmp_path / "ref.png")
    write_wav(tmp_path / "speech.wav", _speech(1.0))
    return {"poses": tmp_path / "poses.json", "image": tmp_path / "ref.png", "audio": tmp_path / "speech.wav",
            "seq": seq}


def gen(inputs, tmp_path, *extra, out="out.mp4") -> list:
    return ["generate", "--poses", inputs["poses"], "--image", inputs["image"], "--model", "tiny",
            "--out", tmp_path / out, *extra]


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if a model starts loading: the checks must come first."""
    import iasa_core.model.loading as loading

    def boom(*a, **k):
        raise AssertionError("a model was loaded before the inputs were checked")

    monkeypatch.setattr(loading, "load_model", boom)


# ---------------------------------------------------------------------- 1: output size


def test_size_above_the_pixel_budget_is_refused_before_loading(inputs, tmp_path, capsys, no_model_load):
    t = time.perf_counter()
    refused(gen(inputs, tmp_path, "--size", "4096x4096"), tmp_path, capsys, "--size", "--allow-large-size",
            "4096x4096")
    assert time.perf_counter() - t < 5


def test_huge_reference_image_gives_a_video_at_the_models_size(tmp_path, capsys):
    """Done-when: an 8000x8000 reference gives a video at the model's size in seconds (it took 19 GB before)."""
    from iasa_core.media import read_video

    Image.new("RGB", (8000, 8000), (200, 180, 160)).save(tmp_path / "big.png")
    PoseSequence(synthetic_keypoints(5, 8000, 8000, seed=1), 8000, 8000, 25.0).save_json(tmp_path / "big.json")
    t = time.perf_counter()
    assert main(["generate", "--poses", str(tmp_path / "big.json"), "--image", str(tmp_path / "big.png"),
                 "--model", "tiny", "--out", str(tmp_path / "big.mp4")]) == 0
    seconds = time.perf_counter() - t
    frames, _ = read_video(tmp_path / "big.mp4")
    assert frames.shape == (5, 64, 64, 3)  # tiny's own size, 64 on the short side
    assert seconds < 30, seconds
    print(f"8000x8000 reference -> {frames.shape[2]}x{frames.shape[1]} video in {seconds:.1f} s")


def test_library_and_node_refuse_an_image_sized_video_above_the_budget(tiny, node_classes):
    from iasa_core.pipeline import GenerateOptions, generate_video

    big = np.full((1024, 1024, 3), 100, np.uint8)
    poses = PoseSequence(synthetic_keypoints(5, 1024, 1024, seed=1), 1024, 1024)
    with pytest.raises(ValueError, match=r"reference image's size 1024x1024.*allow_large_size=True"):
        generate_video(tiny, big, poses)
    with pytest.raises(ValueError, match=r"size 2048x2048 .*megapixels"):
        generate_video(tiny, big, poses, GenerateOptions(size=(2048, 2048)))
    with pytest.raises(ValueError, match=r"reference_image 1024x1024 .*scale reference_image down"):
        _run(node_classes["IASASampler"], model={"system": tiny}, reference_image=torch.from_numpy(big)[None] / 255,
             poses=poses.to_pose_keypoint(), sampler="auto", steps=4, seed=0, backend="auto", sparse=True)


# ---------------------------------------------------------------------- 2: NaN and inf


@pytest.mark.parametrize("flag,value", [("--shift", "nan"), ("--shift", "inf"), ("--guidance", "nan"),
                                        ("--guidance", "-inf"), ("--shift", "0"), ("--guidance", "lots")])
def test_non_finite_float_options_are_refused(inputs, tmp_path, capsys, no_model_load, flag, value):
    refused(gen(inputs, tmp_path, f"{flag}={value}"), tmp_path, capsys, flag)


def test_nan_lora_strength_is_refused_naming_the_flag(inputs, tmp_path, capsys, no_model_load):
    refused(gen(inputs, tmp_path, "--lora", "x.safetensors:nan"), tmp_path, capsys, "--lora", "nan", "finite")


def _tiny_lora(path, bad: bool) -> str:
    from safetensors.torch import save_file

    down = torch.zeros(2, 24)
    up = torch.zeros(24, 2)
    if bad:
        up[3, 1] = float("nan")
    save_file({"diffusion_model.blocks.0.self_attn.q.lora_down.weight": down,
               "diffusion_model.blocks.0.self_attn.q.lora_up.weight": up}, str(path))
    return str(path)


def test_weights_with_nan_are_refused_naming_file_and_tensor(inputs, tmp_path, capsys):
    lora = _tiny_lora(tmp_path / "bad_lora.safetensors", bad=True)
    refused(gen(inputs, tmp_path, "--lora", f"{lora}:0.5"), tmp_path, capsys, "bad_lora.safetensors",
            "lora_up.weight", "NaN")


def test_student_checkpoint_with_inf_is_refused(inputs, tmp_path, capsys):
    from iasa_core.model.checkpoint import save_student
    from iasa_core.model.loading import load_model

    system = load_model("tiny")
    with torch.no_grad():
        next(system.denoiser.parameters()).view(-1)[0] = float("inf")
    save_student(system, tmp_path / "diverged.safetensors")
    refused(["generate", "--poses", inputs["poses"], "--image", inputs["image"], "--model",
             tmp_path / "diverged.safetensors", "--out", tmp_path / "o.mp4"], tmp_path, capsys,
            "diverged.safetensors", "denoiser.", "infinite")


def test_library_refuses_a_nan_lora_strength_before_loading(tmp_path):
    from iasa_core.model.loading import load_model

    with pytest.raises(ValueError, match=r"strength of LoRA .*missing\.safetensors must be a finite number"):
        load_model("tiny", loras=[(tmp_path / "missing.safetensors", float("nan"))])


def test_nan_latents_are_not_decoded(tiny, inputs):
    import copy

    from iasa_core.pipeline import generate_video

    broken = copy.deepcopy(tiny)
    with torch.no_grad():
        broken.denoiser.transformer.proj_out.bias.fill_(float("nan"))
    decoded = []
    broken.decode = lambda x: decoded.append(x)  # must never be reached
    with pytest.raises(ValueError, match="NaN or infinite latents"):
        generate_video(broken, np.full((H, W, 3), 150, np.uint8), inputs["seq"])
    assert decoded == []


@pytest.mark.parametrize("field,value,name", [("guidance", NAN, "guidance"), ("shift", float("inf"), "shift"),
                                              ("timesteps", [1000, NAN], "timesteps"), ("seed", 2**64, "seed")])
def test_library_options_are_checked(tiny, inputs, field, value, name):
    from iasa_core.pipeline import GenerateOptions, generate_video

    with pytest.raises(ValueError, match=name):
        generate_video(tiny, np.full((H, W, 3), 150, np.uint8), inputs["seq"], GenerateOptions(**{field: value}))


# ---------------------------------------------------------------------- 2, 9, 11, 12: node inputs


@pytest.fixture(scope="module")
def node_classes():
    return _import_pack().NODE_CLASS_MAPPINGS


@pytest.fixture(scope="module")
def tiny():
    from iasa_core.model.loading import load_model

    return load_model("tiny").to("cpu", torch.float32)


@pytest.fixture
def input_dir(tmp_path):
    bridge = _import_pack().nodes.comfy_bridge
    bridge.set_input_directory(tmp_path)
    yield tmp_path
    bridge.set_input_directory(None)


def _run(cls, **kwargs):
    return getattr(cls(), cls.FUNCTION)(**kwargs)


def _pose_keypoint(frames=5):
    return PoseSequence(synthetic_keypoints(frames, H, W, seed=1), H, W, 25.0).to_pose_keypoint()


def _comfy_image(h=H, w=W):
    return torch.full((1, h, w, 3), 0.6)


def _sampler(tiny, **over):
    kw = dict(model={"system": tiny}, reference_image=_comfy_image(), poses=_pose_keypoint(), sampler="auto",
              steps=4, seed=0, backend="auto", sparse=True)
    kw.update(over)
    return kw


@pytest.mark.parametrize("over,name", [
    ({"guidance": NAN}, "guidance"), ({"guidance": float("inf")}, "guidance"), ({"seed": 2**64}, "seed"),
    ({"overlap": 99}, "overlap"), ({"backend": "flashinfer"}, "flashinfer"),
    ({"reference_image": _comfy_image(1, 1)}, "reference_image"),
    ({"poses": PoseSequence(np.zeros((5, 133, 3), np.float32), H, W).to_pose_keypoint()}, "no frame holds a person"),
])
def test_sampler_node_refuses_bad_inputs(node_classes, tiny, over, name):
    if over.get("backend") == "flashinfer" and torch.cuda.is_available():
        pytest.skip("FlashInfer may run here")
    with pytest.raises(ValueError, match=name):
        _run(node_classes["IASASampler"], **_sampler(tiny, **over))


@pytest.mark.parametrize("node,kwargs,name", [
    ("IASAModelLoader", {"model": "tiny", "dtype": "auto", "device": "cpu", "lora_1": "x.safetensors",
                         "lora_1_strength": NAN}, "lora_1_strength"),
    ("IASAMotion", {"fps": NAN}, "fps"),
    ("IASAMotion", {"fps": 1e9}, "fps"),
    ("IASAMotion", {"seconds": NAN}, "seconds"),
    ("IASAMotion", {"seconds": 0.001}, "ms long"),
    ("IASAVideo", {"images": torch.zeros(5, H, W, 3), "fps": NAN}, "fps"),
    ("IASADWPose", {"image": torch.zeros(1, H, W, 3), "fps": float("inf")}, "fps"),
    ("IASARenderPoses", {"poses": _pose_keypoint(), "min_score": NAN}, "min_score"),
    ("IASALoadAudio", {"audio_file": "speech.wav", "max_seconds": NAN}, "max_seconds"),
    ("IASALoadPoses", {"pose_file": "poses.json", "fps": NAN}, "fps"),
])
def test_node_float_inputs_must_be_finite(node_classes, input_dir, node, kwargs, name):
    write_wav(input_dir / "speech.wav", _speech(1.0))
    PoseSequence(synthetic_keypoints(5, H, W, seed=1), H, W, 25.0).save_json(input_dir / "poses.json")
    if node == "IASAMotion":
        kwargs = {"audio": {"waveform": torch.from_numpy(_speech(1.0)).view(1, 1, -1), "sample_rate": 16000},
                  "method": "procedural", "fps": 25.0, "seed": 0, "seconds": 0.0,
                  "reference_pose": _pose_keypoint(1), **kwargs}
    with pytest.raises(ValueError, match=name):
        _run(node_classes[node], **kwargs)


# ---------------------------------------------------------------------- 4: pose --image


@pytest.mark.parametrize("kind", ["truncated", "not an image", "empty"])
def test_pose_image_bad_files_are_clear_errors(tmp_path, capsys, kind):
    path = tmp_path / "photo.png"
    if kind == "truncated":
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
        path.write_bytes(path.read_bytes()[:300])
    elif kind == "not an image":
        path.write_text("hello, I am text")
    else:
        path.write_bytes(b"")
    refused(["pose", "--image", path, "--out", tmp_path / "p.json", "--models", tmp_path], tmp_path, capsys,
            "--image", "photo.png")


def test_pose_image_transparency_becomes_white_as_in_generate(tmp_path):
    from iasa_core.detect.cli import _read_image
    from iasa_core.media import load_image

    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[:4, :, :] = (10, 200, 30, 255)  # top half opaque green, bottom half fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "cut_out.png")
    got = _read_image(str(tmp_path / "cut_out.png"))
    assert np.array_equal(got, load_image(tmp_path / "cut_out.png"))
    assert (got[6, 3] == 255).all() and tuple(got[1, 1]) == (10, 200, 30)


# ---------------------------------------------------------------------- 5: output paths


def _command(cmd: str, inputs, out) -> list:
    """A command line of ``cmd`` writing to ``out``, otherwise valid."""
    return {
        "generate": ["generate", "--poses", inputs["poses"], "--image", inputs["image"], "--model", "tiny",
                     "--out", out],
        "demo": ["demo", "--out", out],
        "motion": ["motion", "--audio", inputs["audio"], "--ref-poses", inputs["poses"], "--out", out],
        "pose": ["pose", "--image", inputs["image"], "--out", out],
        "mask": ["mask", "--synthetic", "--size", "64x64", "--frames", "5", "--preview", out],
        "mask-json": ["mask", "--synthetic", "--size", "64x64", "--frames", "5", "--json", out],
        "render-poses": ["render-poses", inputs["poses"], "--out", out],
        "bench": ["bench", "attention", "--json", out],
    }[cmd]


COMMANDS = ["generate", "demo", "motion", "pose", "mask", "mask-json", "render-poses", "bench"]


@pytest.mark.parametrize("cmd", COMMANDS)
def test_output_that_is_an_existing_folder_is_refused_first(inputs, tmp_path, capsys, cmd, no_model_load):
    folder = tmp_path / ("video.mp4" if cmd in ("generate", "demo", "render-poses") else "taken")
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    t = time.perf_counter()
    refused(_command(cmd, inputs, folder), tmp_path, capsys, str(folder))
    assert time.perf_counter() - t < 5 and (folder / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("cmd", COMMANDS)
def test_output_under_a_file_is_refused_first(inputs, tmp_path, capsys, cmd, no_model_load):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    name = "out.mp4" if cmd in ("generate", "demo", "render-poses") else ("p.png" if cmd == "mask" else "o.json")
    refused(_command(cmd, inputs, blocker / "sub" / name), tmp_path, capsys, "notes.txt", "not a folder")


def test_output_in_a_missing_folder_is_made_only_when_written(inputs, tmp_path, capsys):
    out = tmp_path / "new" / "deeper" / "poses.json"
    assert main(["motion", "--audio", str(inputs["audio"]), "--ref-poses", str(inputs["poses"]), "--out",
                 str(out), "--fps", "NaN"]) == 2  # refused: no folder made
    assert not (tmp_path / "new").exists()
    assert main(["motion", "--audio", str(inputs["audio"]), "--ref-poses", str(inputs["poses"]), "--out",
                 str(out)]) == 0
    assert len(PoseSequence.load_json(out)) == 25
    capsys.readouterr()


def test_output_overwriting_an_input_is_refused(inputs, tmp_path, capsys):
    refused(["motion", "--audio", inputs["audio"], "--ref-poses", inputs["poses"], "--out", inputs["poses"]],
            tmp_path, capsys, "--out", "input")


# ---------------------------------------------------------------------- 6: audio with NaN samples


def test_audio_file_with_nan_samples_says_nan_not_silent(inputs, tmp_path, capsys):
    from scipy.io import wavfile

    samples = _speech(1.0)
    samples[100:200] = np.nan
    wavfile.write(tmp_path / "nan.wav", 16000, samples)  # IEEE-float wav: it can hold NaN
    err = refused(["motion", "--audio", tmp_path / "nan.wav", "--ref-poses", inputs["poses"], "--out",
                   tmp_path / "o.json"], tmp_path, capsys, "--audio", "nan.wav", "NaN")
    assert "silent" not in err


# ---------------------------------------------------------------------- 8: Ctrl-C


def test_ctrl_c_while_writing_the_video_exits_130_and_keeps_the_old_output(inputs, tmp_path, capsys, monkeypatch):
    import iasa_core.media as media

    (tmp_path / "out.mp4").write_bytes(b"the previous video")
    real = media._encode_all

    def interrupted(container, frames, *a, **k):
        real(container, iter([next(frames)]), *a, **k)  # some bytes reach the temporary file first
        raise KeyboardInterrupt

    monkeypatch.setattr(media, "_encode_all", interrupted)
    refused(gen(inputs, tmp_path), tmp_path, capsys, "interrupted", "generate", code=130)
    assert (tmp_path / "out.mp4").read_bytes() == b"the previous video"


@pytest.mark.parametrize("cmd", ["demo", "motion"])
def test_ctrl_c_in_demo_and_motion_exits_130_with_one_line(inputs, tmp_path, capsys, monkeypatch, cmd):
    import iasa_core.motion.from_audio as from_audio

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(from_audio, "poses_from_audio", interrupted)
    out = tmp_path / ("demo.mp4" if cmd == "demo" else "motion.json")
    refused(_command(cmd, inputs, out), tmp_path, capsys, "interrupted", cmd, code=130)


# ---------------------------------------------------------------------- 9: messages that name the flag


def test_huge_seed_names_the_flag(inputs, tmp_path, capsys, no_model_load):
    refused(gen(inputs, tmp_path, "--seed", str(2**64)), tmp_path, capsys, "--seed", str(2**64))
    refused(_command("motion", inputs, tmp_path / "o.json") + ["--seed", "-1"], tmp_path, capsys, "--seed")
    refused(_command("demo", inputs, tmp_path / "d.mp4") + ["--seed", str(2**70)], tmp_path, capsys, "--seed")


@pytest.mark.parametrize("value,why", [("a,b", "'a'"), ("1000,nan", "finite"), ("500,750", "decrease"),
                                       ("2000", "at most 1000")])
def test_timesteps_name_the_flag(inputs, tmp_path, capsys, no_model_load, value, why):
    refused(gen(inputs, tmp_path, "--timesteps", value), tmp_path, capsys, "--timesteps", why)


def test_audio_length_limit_names_max_seconds_flag(inputs, tmp_path, capsys):
    refused(_command("motion", inputs, tmp_path / "o.json") + ["--max-seconds", "0.5"], tmp_path, capsys,
            "--max-seconds", "speech.wav")
    refused(_command("motion", inputs, tmp_path / "o.json") + ["--max-seconds", "nan"], tmp_path, capsys,
            "--max-seconds")


def test_poses_file_without_canvas_names_the_flag(inputs, tmp_path, capsys, no_model_load):
    frames = json.loads(inputs["poses"].read_text())
    for f in frames:
        del f["canvas_width"], f["canvas_height"]
    (tmp_path / "nocanvas.json").write_text(json.dumps(frames))
    err = refused(["generate", "--poses", tmp_path / "nocanvas.json", "--image", inputs["image"], "--out",
                   tmp_path / "o.mp4"], tmp_path, capsys, "--poses", "nocanvas.json", "canvas_width")
    assert "height=" not in err
    refused(["mask", "--poses", tmp_path / "nocanvas.json"], tmp_path, capsys, "--poses", "canvas_width")
    refused(["render-poses", tmp_path / "nocanvas.json", "--out", tmp_path / "r.mp4"], tmp_path, capsys,
            "nocanvas.json", "canvas_width")


def test_poses_fps_of_a_billion_is_refused_before_generation(inputs, tmp_path, capsys, no_model_load):
    PoseSequence(inputs["seq"].keypoints, H, W, fps=1e9).save_json(tmp_path / "fast.json")
    refused(["generate", "--poses", tmp_path / "fast.json", "--image", inputs["image"], "--out",
             tmp_path / "o.mp4"], tmp_path, capsys, "fast.json", "fps")
    refused(_command("motion", inputs, tmp_path / "o.json") + ["--fps", "1e9"], tmp_path, capsys, "--fps")


def test_bad_command_lines_are_one_line_too(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["generate", "--poses", "p.json"])  # --image and --out missing
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and "--image" in err


# ---------------------------------------------------------------------- 11: too small, empty, misnamed


def test_one_millisecond_of_audio_is_refused(inputs, tmp_path, capsys):
    write_wav(tmp_path / "blip.wav", _speech(0.001))
    refused(["motion", "--audio", tmp_path / "blip.wav", "--ref-poses", inputs["poses"], "--out",
             tmp_path / "o.json"], tmp_path, capsys, "--audio", "blip.wav", "ms long")


def test_one_pixel_image_is_refused(inputs, tmp_path, capsys, no_model_load):
    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")
    refused(["generate", "--poses", inputs["poses"], "--image", tmp_path / "dot.png", "--out", tmp_path / "o.mp4"],
            tmp_path, capsys, "--image", "dot.png", "1x1")


def test_poses_with_nobody_are_refused(inputs, tmp_path, capsys, no_model_load):
    PoseSequence(np.zeros((5, 133, 3), np.float32), H, W, 25.0).save_json(tmp_path / "nobody.json")
    refused(["generate", "--poses", tmp_path / "nobody.json", "--image", inputs["image"], "--out",
             tmp_path / "o.mp4"], tmp_path, capsys, "--poses", "nobody.json", "no frame holds a person")


@pytest.mark.parametrize("name", ["out.avi", "out.mkv", "out"])
def test_video_names_that_do_not_say_mp4_are_refused(inputs, tmp_path, capsys, no_model_load, name):
    refused(gen(inputs, tmp_path, out=name), tmp_path, capsys, "--out", ".mp4")


# ---------------------------------------------------------------------- 12: backend, device, dtype


def test_flashinfer_on_cpu_is_refused_at_once(inputs, tmp_path, capsys, no_model_load):
    t = time.perf_counter()
    refused(gen(inputs, tmp_path, "--backend", "flashinfer", "--device", "cpu"), tmp_path, capsys,
            "--backend", "flashinfer", "cpu")
    assert time.perf_counter() - t < 5


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_refused_at_once(inputs, tmp_path, capsys, no_model_load):
    refused(gen(inputs, tmp_path, "--device", "cuda"), tmp_path, capsys, "cuda")


# ---------------------------------------------------------------------- concurrent runs


@pytest.mark.slow  # three interpreter starts (about 4 s each on two cores)
def test_three_concurrent_generate_runs_match_a_sequential_one(inputs, tmp_path, capsys):
    """Done-when: concurrent runs writing different outputs all succeed, byte-identical to a sequential run."""
    args = ["generate", "--poses", str(inputs["poses"]), "--image", str(inputs["image"]), "--model", "tiny",
            "--seed", "7", "--out"]
    assert main(args + [str(tmp_path / "sequential.mp4")]) == 0
    capsys.readouterr()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-m", "iasa_core", *args, str(tmp_path / f"c{i}.mp4")], cwd=ROOT,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(3)]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err.decode()[-2000:]
    want = (tmp_path / "sequential.mp4").read_bytes()
    assert len(want) > 0 and all((tmp_path / f"c{i}.mp4").read_bytes() == want for i in range(3))
    assert not [f for f in _files(tmp_path) if "part" in f]
