"""Tests for iasa_core.audio: decoding files with PyAV, ComfyUI dicts, resampling, errors."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch

from iasa_core.audio import (
    DEFAULT_MAX_SECONDS,
    AudioClip,
    AudioError,
    is_silent,
    load_audio,
    resample,
)

LAYOUTS = {1: "mono", 2: "stereo"}

# (container format, encoder, sample format fed to it, extension, lossy)
FORMATS = {
    "wav": ("wav", "pcm_s16le", "s16", "wav", False),
    "flac": ("flac", "flac", "s16", "flac", False),
    "mp3": ("mp3", "libmp3lame", "fltp", "mp3", True),
    "ogg": ("ogg", "vorbis", "fltp", "ogg", True),  # ffmpeg's native vorbis encoder: stereo only
    "opus": ("ogg", "libopus", "flt", "ogg", True),
    "m4a": ("ipod", "aac", "fltp", "m4a", True),
    "alac": ("ipod", "alac", "s16p", "m4a", False),  # decodes to planar s16p
}


def _has_encoder(codec: str) -> bool:
    """Whether the ffmpeg bundled with PyAV can encode with ``codec``."""
    try:
        av.Codec(codec, "w")
        return True
    except Exception:
        return False


def _to_sample_format(x: np.ndarray, sample_fmt: str) -> np.ndarray:
    """Float (C, N) in [-1, 1] -> the array layout PyAV expects for ``sample_fmt``."""
    base = sample_fmt.rstrip("p")
    if base == "s16":
        arr = np.round(np.clip(x, -1, 1) * 32767).astype(np.int16)
    elif base == "s32":
        arr = np.round(np.clip(x, -1, 1) * 2147483647.0).astype(np.int32)
    elif base == "u8":
        arr = (np.round(np.clip(x, -1, 1) * 127) + 128).astype(np.uint8)
    elif base == "dbl":
        arr = x.astype(np.float64)
    else:
        arr = x.astype(np.float32)
    if not sample_fmt.endswith("p"):
        arr = np.ascontiguousarray(arr.T).reshape(1, -1)  # packed: interleaved in one plane
    return arr


def write_audio(path: Path, x: np.ndarray, sr: int, fmt: str, codec: str, sample_fmt: str) -> Path:
    """Encode a (C, N) float array to ``path`` with PyAV."""
    layout = LAYOUTS[x.shape[0]]
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=sr, layout=layout)
        if codec == "vorbis":  # ffmpeg's own vorbis encoder is marked experimental
            stream.codec_context.options = {"strict": "experimental"}
        stream.codec_context.format = sample_fmt
        if codec in ("aac", "libmp3lame", "libopus"):
            stream.bit_rate = 192000  # high enough that the waveform, not just the sound, survives
        for i in range(0, x.shape[1], 4096):
            frame = av.AudioFrame.from_ndarray(
                _to_sample_format(x[:, i : i + 4096], sample_fmt), format=sample_fmt, layout=layout
            )
            frame.sample_rate = sr
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def tones(sr: int, seconds: float, channels: int) -> np.ndarray:
    """(channels, N) float32 test signal: a different sine per channel."""
    t = np.arange(int(round(sr * seconds))) / sr
    rows = [0.5 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 660 * t + 0.5)]
    return np.stack(rows[:channels]).astype(np.float32)


def _aligned_corr(a: np.ndarray, b: np.ndarray, max_lag: int = 4000) -> float:
    """Pearson correlation of ``b`` against ``a`` after shifting ``b`` by its codec delay."""
    ref = a[max_lag // 2 : len(a) - max_lag]
    lags = np.correlate(b[: len(ref) + 2 * max_lag], ref, "valid")[: 2 * max_lag]
    lag = int(np.argmax(lags))
    return float(np.corrcoef(ref, b[lag : lag + len(ref)])[0, 1])


def _peak_hz(x: np.ndarray, sr: int) -> float:
    """Frequency of the strongest FFT bin."""
    return float(np.argmax(np.abs(np.fft.rfft(x))) * sr / len(x))


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("sr", [16000, 44100])
def test_wav_round_trip_is_exact(tmp_path: Path, channels: int, sr: int) -> None:
    x = tones(sr, 0.5, channels)
    ints = np.round(x * 32767).astype(np.int16)
    path = write_audio(tmp_path / "a.wav", x, sr, "wav", "pcm_s16le", "s16")
    clip = load_audio(path)
    assert clip.sample_rate == sr
    assert clip.num_channels == channels
    assert clip.waveform.dtype == np.float32
    assert clip.waveform.shape == ints.shape
    np.testing.assert_array_equal(clip.waveform, ints.astype(np.float32) / 32768.0)
    assert clip.source == str(path)
    assert clip.duration == pytest.approx(0.5)


@pytest.mark.parametrize(
    "codec,sample_fmt,tol",
    [
        ("pcm_s32le", "s32", 1e-6),
        ("pcm_f32le", "flt", 0),
        ("pcm_f64le", "dbl", 1e-7),
        ("pcm_u8", "u8", 1 / 64),
    ],
)
def test_wav_sample_formats(tmp_path: Path, codec: str, sample_fmt: str, tol: float) -> None:
    x = tones(16000, 0.25, 2)
    clip = load_audio(write_audio(tmp_path / "a.wav", x, 16000, "wav", codec, sample_fmt))
    assert clip.waveform.shape == x.shape
    np.testing.assert_allclose(clip.waveform, x, atol=tol + 1e-7)


@pytest.mark.parametrize(
    "kind,channels",
    [
        ("flac", 1),
        ("flac", 2),
        ("mp3", 1),
        ("mp3", 2),
        ("ogg", 2),
        ("opus", 1),
        ("m4a", 1),
        ("m4a", 2),
        ("alac", 2),
    ],
)
def test_other_formats_round_trip(tmp_path: Path, kind: str, channels: int) -> None:
    fmt, codec, sample_fmt, ext, lossy = FORMATS[kind]
    if not _has_encoder(codec):
        pytest.skip(f"the ffmpeg bundled with PyAV has no {codec} encoder")
    sr = 48000 if codec == "libopus" else 44100
    x = tones(sr, 1.0, channels)
    clip = load_audio(write_audio(tmp_path / f"a.{ext}", x, sr, fmt, codec, sample_fmt))
    assert clip.sample_rate == sr
    assert clip.num_channels == channels
    assert abs(clip.duration - 1.0) < 0.05
    if not lossy:
        np.testing.assert_array_equal(clip.waveform, np.round(x * 32767).astype(np.float32) / 32768.0)
        return
    for c in range(channels):
        assert _peak_hz(clip.waveform[c], sr) == pytest.approx(_peak_hz(x[c], sr), abs=2.0)
        # ffmpeg's native vorbis encoder smears pure tones, so only the good encoders must match
        # sample by sample.
        if codec != "vorbis":
            assert _aligned_corr(x[c], clip.waveform[c]) > 0.99
        rms_in, rms_out = np.sqrt(np.mean(x[c] ** 2)), np.sqrt(np.mean(clip.waveform[c] ** 2))
        assert rms_out == pytest.approx(rms_in, rel=0.1)


def test_mono_mix_and_cache(tmp_path: Path) -> None:
    x = tones(16000, 0.25, 2)
    clip = load_audio(AudioClip(x, 16000, "test"))
    mono = clip.mono()
    assert mono.shape == (x.shape[1],) and mono.dtype == np.float32
    np.testing.assert_allclose(mono, x.mean(axis=0), atol=1e-7)
    assert clip.mono() is mono  # cached
    m8 = clip.mono(8000)
    assert m8.shape == (x.shape[1] // 2,)
    assert clip.mono(8000) is m8
    np.testing.assert_array_equal(clip.waveform, x)  # original untouched


def test_resample_keeps_frequency_and_length() -> None:
    sr_in, sr_out = 44100, 16000
    t = np.arange(sr_in) / sr_in
    x = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    y = resample(x, sr_in, sr_out)
    assert y.dtype == np.float32
    assert y.shape == (sr_out,)
    spectrum = np.abs(np.fft.rfft(y))
    peak_hz = np.argmax(spectrum) * sr_out / len(y)
    assert abs(peak_hz - 440) <= 1.0
    mid = y[1000:-1000]
    assert np.sqrt(np.mean(mid**2)) == pytest.approx(np.sqrt(0.5), rel=0.01)
    # Along the last axis for multi-channel input; identity for equal rates.
    assert resample(np.stack([x, x]), sr_in, sr_out).shape == (2, sr_out)
    np.testing.assert_array_equal(resample(x, sr_in, sr_in), x)


def test_is_silent() -> None:
    assert is_silent(np.zeros(1000, np.float32))
    assert is_silent(np.full(1000, 1e-4, np.float32))  # -80 dBFS
    assert not is_silent(np.full(1000, 1e-2, np.float32))  # -40 dBFS
    assert not is_silent(np.full(1000, 1e-4, np.float32), threshold_db=-90)


# ---------------------------------------------------------------- ComfyUI dicts


def test_comfy_dict_round_trip() -> None:
    x = tones(22050, 0.3, 2)
    audio = {"waveform": torch.from_numpy(x)[None], "sample_rate": 22050}
    clip = load_audio(audio)
    assert clip.source == "AUDIO input"
    assert clip.sample_rate == 22050
    np.testing.assert_array_equal(clip.waveform, x)
    out = clip.to_comfy()
    assert set(out) == {"waveform", "sample_rate"}
    assert out["waveform"].dtype == torch.float32
    assert tuple(out["waveform"].shape) == (1, 2, x.shape[1])
    assert out["sample_rate"] == 22050 and isinstance(out["sample_rate"], int)
    torch.testing.assert_close(out["waveform"], audio["waveform"])
    np.testing.assert_array_equal(load_audio(out).waveform, x)


def test_comfy_dict_takes_batch_zero_and_accepts_numpy() -> None:
    x = tones(16000, 0.2, 1)
    batch = np.stack([x, 0.1 * x])
    clip = load_audio({"waveform": batch, "sample_rate": np.int64(16000)})
    np.testing.assert_array_equal(clip.waveform, x)
    assert clip.sample_rate == 16000


def test_audioclip_returned_as_is_and_trimmed() -> None:
    clip = AudioClip(tones(16000, 1.0, 2), 16000, "x")
    assert load_audio(clip) is clip
    short = clip.trimmed(0.25)
    assert short.waveform.shape == (2, 4000) and short.sample_rate == 16000
    assert clip.trimmed(5.0).waveform.shape == (2, 16000)
    with pytest.raises(AudioError, match="length >= 0"):
        clip.trimmed(-1)


# ---------------------------------------------------------------- errors


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.wav"
    with pytest.raises(FileNotFoundError) as info:
        load_audio(path, name="speech")
    assert isinstance(info.value, AudioError)
    assert str(info.value).startswith(f"Speech file {path} does not exist")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioError, match=r"^Audio file .*empty\.wav is empty \(0 bytes\)"):
        load_audio(path)


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="is not a file"):
        load_audio(tmp_path)


@pytest.mark.parametrize(
    "content", [b"this is not audio at all" * 50, b"RIFF\x00\x00\x00\x00WAVEfmt garbage"]
)
def test_corrupt_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError) as info:
        load_audio(path)
    msg = str(info.value)
    assert msg.startswith(f"Audio file {path}")
    assert "wav, mp3, flac, ogg, m4a and anything ffmpeg reads" in msg


def test_image_file_has_no_audio_stream(tmp_path: Path) -> None:
    from PIL import Image

    path = tmp_path / "picture.png"
    Image.new("RGB", (8, 8), (255, 0, 0)).save(path)
    with pytest.raises(AudioError, match=r"(has no audio stream|could not be read as audio).*m4a"):
        load_audio(path)


def test_zero_samples(tmp_path: Path) -> None:
    import struct

    # A valid 44-byte wav header announcing 0 data bytes (PyAV writes no header without packets).
    fmt_chunk = struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16)
    header = b"RIFF" + struct.pack("<I", 36) + b"WAVEfmt " + struct.pack("<I", 16) + fmt_chunk
    path = tmp_path / "zero.wav"
    path.write_bytes(header + b"data" + struct.pack("<I", 0))
    with pytest.raises(AudioError, match="contains no audio samples"):
        load_audio(path)
    with pytest.raises(AudioError, match="contains no audio samples"):
        load_audio({"waveform": torch.zeros(1, 1, 0), "sample_rate": 16000})


def test_silent_file(tmp_path: Path) -> None:
    x = np.zeros((1, 8000), np.float32)
    path = write_audio(tmp_path / "quiet.wav", x, 16000, "wav", "pcm_s16le", "s16")
    with pytest.raises(AudioError, match=r"^Audio file .*quiet\.wav is silent .*use a recording with speech"):
        load_audio(path)
    assert load_audio(path, allow_silent=True).duration == pytest.approx(0.5)


def test_too_long(tmp_path: Path) -> None:
    x = tones(8000, 2.0, 1)
    path = write_audio(tmp_path / "long.wav", x, 8000, "wav", "pcm_s16le", "s16")
    with pytest.raises(AudioError) as info:
        load_audio(path, max_seconds=1.5)
    assert str(info.value) == (
        f"Audio file {path} is 2.0 s long; the limit is 1.5 s; trim it or raise max_seconds."
    )
    assert load_audio(path, max_seconds=None).duration == pytest.approx(2.0)
    # The wording the users see for the default limit.
    long_dict = {"waveform": torch.full((1, 1, 700 * 100), 0.1), "sample_rate": 100}
    with pytest.raises(
        AudioError, match=r"is 700\.0 s long; the limit is 600 s; trim it or raise max_seconds"
    ):
        load_audio(long_dict)
    assert DEFAULT_MAX_SECONDS == 600.0


def test_long_file_refused_from_header(tmp_path: Path) -> None:
    x = tones(8000, 12.0, 1)
    path = write_audio(tmp_path / "long.flac", x, 8000, "flac", "flac", "s16")
    with pytest.raises(AudioError, match=r"is 12\.0 s long; the limit is 5 s"):
        load_audio(path, max_seconds=5)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_dict_with_nan_or_inf(bad: float) -> None:
    wave = torch.full((1, 1, 100), 0.1)
    wave[0, 0, 5] = bad
    with pytest.raises(AudioError, match=r"^Audio \(AUDIO input\) contains NaN or infinite samples"):
        load_audio({"waveform": wave, "sample_rate": 16000})


@pytest.mark.parametrize(
    "audio,pattern",
    [
        ({"samples": torch.zeros(1, 1, 10)}, "must be a dict"),
        ({"waveform": torch.zeros(1, 1, 1, 10), "sample_rate": 16000}, r"has shape \(1, 1, 1, 10\)"),
        ({"waveform": torch.zeros(0, 1, 10), "sample_rate": 16000}, "empty batch"),
        ({"waveform": torch.full((1, 1, 10), 0.1), "sample_rate": 0}, "expected a positive integer"),
        ({"waveform": torch.full((1, 1, 10), 0.1), "sample_rate": "16k"}, "expected a positive integer"),
        ({"waveform": "noise", "sample_rate": 16000}, "not numeric"),
    ],
)
def test_wrong_dict_form(audio: dict, pattern: str) -> None:
    with pytest.raises(AudioError, match=pattern):
        load_audio(audio)


def test_wrong_source_type() -> None:
    with pytest.raises(AudioError, match="must be a file path or a ComfyUI AUDIO dict"):
        load_audio(12345)
