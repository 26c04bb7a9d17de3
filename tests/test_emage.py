"""EMAGE (audio -> SMPL-X motion): loading, windowing, shapes, and a golden reference output.

The golden fixture in tests/data/emage_tiny was produced by scripts/compare_emage_reference.py
--config small --seconds 2.5 --write-fixture: random weights (float16-rounded, ours to ship),
the audio, and the outputs of the reference implementation (PantoMatrix commit c7356f3).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from iasa_core.motion import rotation
from iasa_core.motion.emage import (
    EmageAudioModel,
    EmageCheckpointError,
    EmageConfig,
    EmageMotion,
    Window,
    plan_windows,
    run_windows,
)

FIXTURE = Path(__file__).parent / "data" / "emage_tiny"
SR = 16000


def tiny_config() -> EmageConfig:
    return EmageConfig(motion_f=16, audio_f=16, hidden_size=16, speaker_f=16, vae_codebook_size=8)


def speech(seconds: float | None = None, samples: int | None = None) -> np.ndarray:
    n = samples if samples is not None else int(seconds * SR)
    t = np.arange(n) / SR
    voiced = np.sin(2 * np.pi * 140 * t) + 0.5 * np.sin(2 * np.pi * 280 * t)
    noise = np.random.default_rng(1).standard_normal(n)
    return (0.2 * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) * voiced + 0.01 * noise).astype(np.float32)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny models gain nothing from threads, and on a busy 2-core machine OpenMP barriers
    # made each op ~100x slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_model() -> EmageAudioModel:
    torch.manual_seed(0)
    return EmageAudioModel(tiny_config())


# --------------------------------------------------------------------------- reference agreement


def test_golden_reference_output_is_reproduced():
    golden = np.load(FIXTURE / "golden.npz")
    model = EmageAudioModel.from_pretrained(FIXTURE)
    audio = golden["audio"].astype(np.float32)

    out = model.infer(audio)
    assert out.num_frames == len(audio) * 30 // SR == golden["no_seed_poses"].shape[0]
    for key, mine in (("poses", out.poses), ("expression", out.expression), ("trans", out.trans)):
        np.testing.assert_allclose(mine, golden[f"no_seed_{key}"], rtol=0, atol=1e-4, err_msg=key)

    seed = EmageMotion(
        poses=golden["seed_input_poses"],
        expression=np.zeros((len(golden["seed_input_poses"]), 100), np.float32),
        trans=golden["seed_input_trans"],
    )
    out = model.infer(audio, seed_motion=seed)
    for key, mine in (("poses", out.poses), ("expression", out.expression), ("trans", out.trans)):
        np.testing.assert_allclose(mine, golden[f"seed_{key}"], rtol=0, atol=1e-4, err_msg=key)
    # The seed must have changed something, or this second check would prove nothing.
    assert np.abs(golden["seed_input_trans"][0]).max() > 0
    assert np.abs(out.trans - golden["no_seed_trans"]).max() > 1e-3


def test_fixture_stays_small():
    total = sum(p.stat().st_size for p in FIXTURE.rglob("*") if p.is_file())
    assert total < 1_000_000


# --------------------------------------------------------------------------- files


def test_safetensors_round_trip(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").is_file()
    for part in ("face", "upper", "lower", "hands", "global"):
        assert (tmp_path / "m" / "emage_vq" / part / "model.safetensors").is_file()
    loaded = EmageAudioModel.from_pretrained(tmp_path / "m")
    a, b = tiny_model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    audio = speech(1.0)
    np.testing.assert_array_equal(tiny_model.infer(audio).poses, loaded.infer(audio).poses)


def test_bin_round_trip_loads_with_weights_only(tmp_path, tiny_model, monkeypatch):
    tiny_model.save_pretrained(tmp_path / "m")  # then overwritten in the other format
    tiny_model.save_pretrained(tmp_path / "m", safe_serialization=False)
    assert (tmp_path / "m" / "pytorch_model.bin").is_file()
    assert not (tmp_path / "m" / "model.safetensors").exists()
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    loaded = EmageAudioModel.from_pretrained(tmp_path / "m")
    assert calls == [True] * 6  # generator + five sub-models
    a, b = tiny_model.state_dict(), loaded.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def _edit_weights(path: Path, fn) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(path))
    fn(state)
    save_file(state, str(path))


def test_strict_loading_names_missing_and_unexpected_keys(tmp_path, tiny_model):
    folder = tmp_path / "m"
    tiny_model.save_pretrained(folder)

    def edit(state):
        state["bogus_head.weight"] = torch.zeros(2)
        del state["face_cls.fc1.weight"]

    _edit_weights(folder / "model.safetensors", edit)
    with pytest.raises(EmageCheckpointError) as err:
        EmageAudioModel.from_pretrained(folder)
    msg = str(err.value)
    assert "missing keys (1): face_cls.fc1.weight" in msg
    assert "unexpected keys (1): bogus_head.weight" in msg
    assert str(folder / "model.safetensors") in msg


def test_strict_loading_names_shape_mismatch_in_sub_model(tmp_path, tiny_model):
    folder = tmp_path / "m"
    tiny_model.save_pretrained(folder)
    hands = folder / "emage_vq" / "hands" / "model.safetensors"
    _edit_weights(hands, lambda s: s.__setitem__("quantizer.embedding.weight", torch.zeros(8, 9)))
    with pytest.raises(
        EmageCheckpointError, match=r"quantizer\.embedding\.weight: checkpoint \(8, 9\)"
    ) as err:
        EmageAudioModel.from_pretrained(folder)
    assert str(hands) in str(err.value)


def test_position_code_may_be_absent_from_checkpoint(tmp_path, tiny_model):
    folder = tmp_path / "m"
    tiny_model.save_pretrained(folder)
    _edit_weights(folder / "model.safetensors", lambda s: s.pop("position_embeddings.pe"))
    loaded = EmageAudioModel.from_pretrained(folder)
    assert torch.equal(loaded.generator.position_embeddings.pe, tiny_model.generator.position_embeddings.pe)


def test_missing_folder_and_repo_id_without_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="allow_download=True") as err:
        EmageAudioModel.from_pretrained(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value)
    assert "H-Liu1997/emage_audio" in str(err.value)
    with pytest.raises(FileNotFoundError, match="allow_download=True"):
        EmageAudioModel.from_pretrained("H-Liu1997/emage_audio")  # not a folder: no network without consent


def test_missing_files_are_named(tmp_path, tiny_model):
    folder = tmp_path / "m"
    tiny_model.save_pretrained(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError) as err:
        EmageAudioModel.from_pretrained(folder)
    assert "model.safetensors or pytorch_model.bin" in str(err.value) and str(folder) in str(err.value)

    tiny_model.save_pretrained(folder)
    (folder / "emage_vq" / "face" / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json") as err:
        EmageAudioModel.from_pretrained(folder)
    assert str(folder / "emage_vq" / "face" / "config.json") in str(err.value)

    import shutil

    shutil.rmtree(folder / "emage_vq" / "global")
    with pytest.raises(FileNotFoundError) as err:
        EmageAudioModel.from_pretrained(folder)
    assert str(folder / "emage_vq") in str(err.value)

    (folder / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config file") as err:
        EmageAudioModel.from_pretrained(folder)
    assert str(folder / "config.json") in str(err.value)


def test_config_round_trip_keeps_unknown_keys():
    data = tiny_config().to_dict()
    data.update({"transformers_version": "4.30.2", "name_pyfile": "x"})
    cfg = EmageConfig.from_dict(json.loads(json.dumps(data)))
    assert cfg.hidden_size == 16 and cfg.extra["name_pyfile"] == "x"
    assert cfg.to_dict() == data
    assert cfg.part_source("face") == "latent" and cfg.part_source("upper") == "index"
    with pytest.raises(ValueError, match="divisible"):
        EmageConfig.from_dict({**data, "hidden_size": 18})


# --------------------------------------------------------------------------- windowing


def test_plan_windows_examples():
    assert plan_windows(75) == [Window(0, 64, 60), Window(60, 75, 15)]
    assert plan_windows(120) == [Window(0, 64, 60), Window(60, 120, 60)]
    # (124 - 4) % 60 == 0: the released code stops after two full windows (120 frames).
    assert plan_windows(124, reference_tail=True) == [Window(0, 64, 60), Window(60, 124, 60)]
    assert plan_windows(124) == [Window(0, 64, 60), Window(60, 124, 64)]  # last window keeps all
    assert plan_windows(66, reference_tail=True) == [Window(0, 64, 60)]
    assert plan_windows(66) == [Window(0, 64, 60), Window(60, 66, 6)]
    assert plan_windows(3) == [Window(0, 3, 3)]
    with pytest.raises(ValueError):
        plan_windows(0)


@pytest.mark.parametrize("total", list(range(1, 260)))
def test_plan_windows_cover_every_frame(total):
    plan = plan_windows(total)
    assert sum(w.keep for w in plan) == total
    assert all(0 < w.end - w.start <= 64 for w in plan)
    for prev, nxt in zip(plan[:-1], plan[1:], strict=True):
        assert nxt.start == prev.start + prev.keep == prev.end - 4  # 4 seed frames shared
    assert plan[-1].start + plan[-1].keep == plan[-1].end == total
    kept_ref = sum(w.keep for w in plan_windows(total, reference_tail=True))
    assert total - 8 <= kept_ref <= total


def test_run_windows_stitches_and_seeds_from_previous_window():
    total, c = 130, 5
    first_seed = torch.full((4, c), -1.0)
    seen = []

    def fake_step(win, seed_rows):
        index = len(seen)
        seen.append((win, seed_rows.clone()))
        n = win.end - win.start
        frames = torch.arange(win.start, win.end)
        decoded = (index * 1000 + frames).float()[:, None].repeat(1, c)
        return {"frame": frames, "window": torch.full((n,), index)}, decoded

    out = run_windows(total, first_seed, fake_step)
    assert torch.equal(out["frame"], torch.arange(total))
    assert [w for w, _ in seen] == plan_windows(total)
    assert torch.equal(seen[0][1], first_seed)
    for i in range(1, len(seen)):
        win, seed_rows = seen[i]
        expected = ((i - 1) * 1000 + torch.arange(win.start, win.start + 4)).float()[:, None].repeat(1, c)
        assert torch.equal(seed_rows, expected)  # previous window's decoded motion for these 4 frames
    # Frames come from the window that generated them first (all but the last 4 of each window).
    assert out["window"][59] == 0 and out["window"][60] == 1 and out["window"][-1] == len(seen) - 1


# --------------------------------------------------------------------------- inference


def test_infer_shapes_and_determinism(tiny_model):
    audio = speech(2.5)
    a = tiny_model.infer(audio)
    assert a.poses.shape == (75, 165) and a.expression.shape == (75, 100) and a.trans.shape == (75, 3)
    assert a.fps == 30 and a.poses.dtype == np.float32
    assert np.isfinite(a.poses).all() and np.isfinite(a.expression).all() and np.isfinite(a.trans).all()
    assert np.all(a.poses[:, 23 * 3 : 25 * 3] == 0)  # eyes: no codec drives them
    assert np.all(a.trans[0, [0, 2]] == 0)  # x, z integrate velocity from the origin; y is predicted
    b = tiny_model.infer(audio)
    np.testing.assert_array_equal(a.poses, b.poses)
    np.testing.assert_array_equal(a.trans, b.trans)


def test_infer_long_audio_covers_every_frame(tiny_model):
    samples = 66134  # 124 frames at 30 fps: (124 - 4) % 60 == 0, where the released code stops at 120
    out = tiny_model.infer(speech(samples=samples))
    assert out.num_frames == samples * 30 // SR == 124
    assert tiny_model.infer(speech(samples=samples), reference_tail=True).num_frames == 120
    assert tiny_model.infer(speech(4.3)).num_frames == 129


def test_seed_motion_forms(tiny_model):
    audio = speech(1.0)
    poses = np.zeros((6, 165), np.float32)
    trans = np.tile(np.array([[0.5, 0.1, -0.2]], np.float32), (6, 1))
    out = tiny_model.infer(audio, seed_motion=EmageMotion(poses, np.zeros((6, 100), np.float32), trans))
    np.testing.assert_allclose(out.trans[0, [0, 2]], [0.5, -0.2], atol=1e-6)
    identity = tiny_model.infer(audio, seed_motion=poses)  # axis-angle array: same as no seed here
    np.testing.assert_array_equal(identity.poses, tiny_model.infer(audio).poses)
    with pytest.raises(ValueError, match="seed_motion"):
        tiny_model.infer(audio, seed_motion=np.zeros((4, 10), np.float32))
    with pytest.raises(ValueError, match="speaker_id"):
        tiny_model.infer(audio, speaker_id=3)
    with pytest.raises(ValueError, match="too short"):
        tiny_model.infer(np.zeros(100, np.float32))


def test_rotation_round_trip():
    g = torch.Generator().manual_seed(0)
    axis = torch.nn.functional.normalize(torch.randn(500, 3, generator=g), dim=-1)
    angle = torch.rand(500, 1, generator=g) * 3.0
    aa = axis * angle
    r6 = rotation.axis_angle_to_rot6d(aa)
    # The matrix -> quaternion route EMAGE uses takes each component from sqrt(1 +- diagonal
    # terms), which cancels in float32: about 4e-4 rad of error. Kept for agreement with it.
    torch.testing.assert_close(rotation.rot6d_to_axis_angle(r6), aa, atol=1e-3, rtol=0)
    torch.testing.assert_close(rotation.rot6d_to_axis_angle(r6.double()), aa.double(), atol=1e-6, rtol=0)
    m = rotation.rot6d_to_matrix(r6 * 2.5)  # the 6-D form need not be normalised
    torch.testing.assert_close(m @ m.transpose(-1, -2), torch.eye(3).expand(500, 3, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(m, rotation.axis_angle_to_matrix(aa), atol=1e-5, rtol=0)
    assert torch.equal(
        rotation.axis_angle_to_rot6d(torch.zeros(2, 3)), torch.tensor([[1.0, 0, 0, 0, 1, 0]] * 2)
    )
