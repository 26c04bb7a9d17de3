"""`motion` from the CLI on a fresh machine: procedural motion end to end, and clear errors for bad input."""

from __future__ import annotations

import wave

import numpy as np
import pytest

from iasa_core.__main__ import main
from iasa_core.pose.sequence import PoseSequence
from iasa_core.pose.synthetic import synthetic_keypoints

SR = 16000


def _wav(path, samples: np.ndarray, sr: int = SR) -> str:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype(np.int16).tobytes())
    return str(path)


@pytest.fixture
def ref_json(tmp_path) -> str:
    path = tmp_path / "ref.json"
    PoseSequence(synthetic_keypoints(1, 256, 192), 256, 192, 25.0).save_json(path)
    return str(path)


def _speech(seconds: float) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return 0.3 * np.sin(2 * np.pi * 160 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))


def test_motion_procedural_end_to_end(tmp_path, ref_json, capsys):
    audio = _wav(tmp_path / "speech.wav", _speech(2.0))
    out = tmp_path / "poses.json"
    assert main(["motion", "--audio", audio, "--ref-poses", ref_json, "--fps", "25", "--out", str(out)]) == 0
    seq = PoseSequence.load_json(out)
    assert len(seq) == 50 and (seq.height, seq.width) == (256, 192) and seq.fps == 25.0
    lips = seq.keypoints[:, 71:91, 1]
    assert np.ptp(lips, axis=0).max() > 0.5  # the mouth moves
    assert "50 frames at 25 fps" in capsys.readouterr().out
    # deterministic per seed
    out2 = tmp_path / "poses2.json"
    assert main(["motion", "--audio", audio, "--ref-poses", ref_json, "--out", str(out2)]) == 0
    assert np.array_equal(PoseSequence.load_json(out2).keypoints, seq.keypoints)


@pytest.mark.parametrize("case, expected", [
    ("missing", "does not exist"),
    ("empty", "empty"),
    ("corrupt", "wav, mp3, flac, ogg, m4a"),
    ("silent", "silent"),
    ("long", "limit is 1 s"),
])
def test_motion_bad_audio(tmp_path, ref_json, capsys, case, expected):
    path = tmp_path / f"{case}.wav"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "corrupt":
        path.write_bytes(b"RIFF" + bytes(range(200)))
    elif case == "silent":
        _wav(path, np.zeros(SR))
    elif case == "long":
        _wav(path, _speech(2.0))
    args = ["motion", "--audio", str(path), "--ref-poses", ref_json, "--out", str(tmp_path / "o.json")]
    if case == "long":
        args += ["--max-seconds", "1"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and expected in err
    assert not (tmp_path / "o.json").exists()


def test_motion_reference_without_person(tmp_path, capsys):
    audio = _wav(tmp_path / "speech.wav", _speech(1.0))
    PoseSequence(np.zeros((1, 133, 3), np.float32), 64, 64, 25.0).save_json(tmp_path / "empty.json")
    assert main(["motion", "--audio", audio, "--ref-poses", str(tmp_path / "empty.json"),
                 "--out", str(tmp_path / "o.json")]) == 2
    assert "face" in capsys.readouterr().err


def test_motion_emage_without_weights_says_what_to_get(tmp_path, ref_json, capsys):
    audio = _wav(tmp_path / "speech.wav", _speech(1.0))
    assert main(["motion", "--audio", audio, "--ref-poses", ref_json, "--method", "emage",
                 "--out", str(tmp_path / "o.json")]) == 2
    err = capsys.readouterr().err
    assert "emage_audio" in err and "config.json" in err


def test_motion_ref_image_without_dwpose_weights(tmp_path, capsys):
    from PIL import Image

    audio = _wav(tmp_path / "speech.wav", _speech(1.0))
    Image.new("RGB", (64, 64)).save(tmp_path / "ref.png")
    assert main(["motion", "--audio", audio, "--ref-image", str(tmp_path / "ref.png"), "--models",
                 str(tmp_path), "--out", str(tmp_path / "o.json")]) == 2
    err = capsys.readouterr().err
    assert "yolox_l.onnx" in err and "dw-ll_ucoco_384.onnx" in err


def test_motion_emage_with_weights_end_to_end(tmp_path, ref_json, capsys):
    from pathlib import Path

    from test_smplx_to_2d import _write_model

    emage_dir = Path(__file__).parent / "data" / "emage_tiny"
    smplx = _write_model(tmp_path / "SMPLX_NEUTRAL_2020.npz")
    audio = _wav(tmp_path / "speech.wav", _speech(1.6))
    out = tmp_path / "poses.json"
    assert main(["motion", "--audio", audio, "--ref-poses", ref_json, "--method", "emage", "--emage-model",
                 str(emage_dir), "--smplx", str(smplx), "--fps", "25", "--out", str(out)]) == 0, capsys.readouterr()
    seq = PoseSequence.load_json(out)
    assert len(seq) == 40 and (seq.height, seq.width) == (256, 192)
    assert (seq.keypoints[:, 5:7, 2] > 0).all()  # shoulders present in every frame
