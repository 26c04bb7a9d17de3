"""Tests for iasa_core.media: image loading, mp4 writing/reading with audio."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from iasa_core.audio import AudioClip
from iasa_core.media import (
    MediaError,
    image_to_comfy,
    load_image,
    read_video,
    read_video_audio,
    write_video,
)

RED, GREEN, BLUE = (220, 40, 30), (30, 200, 80), (40, 60, 210)


def block_frames(t: int = 9, h: int = 48, w: int = 64) -> np.ndarray:
    """(T, H, W, 3) uint8 frames of flat colour blocks; a 16x16 block moves 8 px per frame."""
    frames = np.empty((t, h, w, 3), np.uint8)
    frames[:] = BLUE
    frames[:, (h // 4) * 2 :] = GREEN  # split on an even row: chroma is shared by 2x2 pixels
    for i in range(t):
        x = (i * 8) % (w - 16)
        frames[i, 16:32, x : x + 16] = RED
    return frames


def tone_clip(seconds: float, sr: int = 44100, channels: int = 2) -> AudioClip:
    """An AudioClip of sines, one frequency per channel."""
    t = np.arange(int(sr * seconds)) / sr
    rows = [0.3 * np.sin(2 * np.pi * (440 + 220 * c) * t) for c in range(channels)]
    return AudioClip(np.stack(rows).astype(np.float32), sr, "test")


def stream_info(path: Path) -> dict:
    """Codec names, rates and durations of a media file's streams."""
    info = {}
    with av.open(str(path)) as container:
        for s in container.streams:
            info[s.type] = {
                "codec": s.codec_context.name,
                "seconds": float(s.duration * s.time_base) if s.duration else None,
                "rate": getattr(s, "rate", None),
                "channels": len(s.layout.channels) if s.type == "audio" else None,
                "pix_fmt": s.codec_context.pix_fmt if s.type == "video" else None,
            }
    return info


# ---------------------------------------------------------------- video round trips


@pytest.mark.parametrize("fps", [25, 24000 / 1001, Fraction(24000, 1001)])
def test_write_read_round_trip(tmp_path: Path, fps: float) -> None:
    frames = block_frames()
    calls = []
    out = write_video(tmp_path / "sub" / "v.mp4", frames, fps, progress=lambda i, n: calls.append((i, n)))
    assert out == tmp_path / "sub" / "v.mp4" and out.is_file()
    assert calls == [(i, 9) for i in range(1, 10)]
    video, got_fps = read_video(out)
    assert video.shape == frames.shape and video.dtype == np.uint8
    assert got_fps == pytest.approx(float(fps), rel=1e-9)
    assert np.abs(video.astype(np.int16) - frames).mean() < 3
    info = stream_info(out)
    assert info["video"]["codec"] == "h264" and info["video"]["pix_fmt"] == "yuv420p"
    assert "audio" not in info
    assert read_video_audio(out) is None
    assert [p.name for p in out.parent.iterdir()] == ["v.mp4"]  # no temporary left behind


def test_read_video_max_frames(tmp_path: Path) -> None:
    out = write_video(tmp_path / "v.mp4", block_frames(), 25)
    video, _ = read_video(out, max_frames=4)
    assert video.shape == (4, 48, 64, 3)


@pytest.mark.parametrize("audio_seconds", [0.2, 0.36, 1.0])
@pytest.mark.parametrize("sr,channels", [(44100, 2), (16000, 1)])
def test_audio_is_muxed_to_video_length(tmp_path: Path, audio_seconds: float, sr: int, channels: int) -> None:
    fps = 25
    frames = block_frames()  # 9 frames = 0.36 s
    clip = tone_clip(audio_seconds, sr, channels)
    out = write_video(tmp_path / "v.mp4", frames, fps, audio=clip)
    info = stream_info(out)
    assert info["audio"]["codec"] == "aac"
    assert info["audio"]["rate"] == sr and info["audio"]["channels"] == channels
    back = read_video_audio(out)
    assert back is not None
    assert back.sample_rate == sr and back.num_channels == channels
    assert abs(back.duration - 9 / fps) <= 1024 / sr  # within one AAC frame
    # The original sound survives where it existed, and padding is silence.
    n = int(min(audio_seconds, 0.36) * sr)
    rms = np.sqrt(np.mean(back.waveform[0, n // 4 : n * 3 // 4] ** 2))
    assert rms == pytest.approx(0.3 / np.sqrt(2), rel=0.15)
    if audio_seconds < 0.3:
        assert np.abs(back.waveform[:, int(0.3 * sr) :]).max() < 0.02


def test_audio_with_fractional_fps(tmp_path: Path) -> None:
    fps = Fraction(24000, 1001)
    out = write_video(tmp_path / "v.mp4", block_frames(), fps, audio=tone_clip(2.0))
    back = read_video_audio(out)
    assert abs(back.duration - 9 / float(fps)) <= 1024 / 44100
    assert read_video(out)[1] == pytest.approx(24000 / 1001)


def test_audio_as_comfy_dict(tmp_path: Path) -> None:
    out = write_video(tmp_path / "v.mp4", block_frames(), 25, audio=tone_clip(0.5, 16000, 1).to_comfy())
    back = read_video_audio(out)
    assert back.sample_rate == 16000 and back.num_channels == 1
    assert abs(back.duration - 0.36) <= 1024 / 16000


def test_odd_sizes_are_padded_with_edge(tmp_path: Path) -> None:
    frames = block_frames(5, 47, 63)
    out = write_video(tmp_path / "odd.mp4", frames, 25)
    video, _ = read_video(out)
    assert video.shape == (5, 48, 64, 3)
    assert np.abs(video[:, :47, :63].astype(np.int16) - frames).mean() < 3
    # The added row and column repeat the edge instead of being black.
    assert np.abs(video[:, 47].astype(np.int16) - video[:, 46]).mean() < 4
    assert np.abs(video[:, :, 63].astype(np.int16) - video[:, :, 62]).mean() < 4


def test_float_numpy_torch_and_iterable_input(tmp_path: Path) -> None:
    frames = block_frames(4)
    as_float = frames.astype(np.float32) / 255.0
    for i, src in enumerate(
        [as_float, torch.from_numpy(as_float), (f for f in as_float), list(torch.from_numpy(as_float))]
    ):
        out = write_video(tmp_path / f"f{i}.mp4", src, 25)
        video, _ = read_video(out)
        assert video.shape == frames.shape
        assert np.abs(video.astype(np.int16) - frames).mean() < 3


def test_generator_progress_has_unknown_total(tmp_path: Path) -> None:
    calls = []
    write_video(
        tmp_path / "g.mp4", (f for f in block_frames(3)), 25, progress=lambda i, n: calls.append((i, n))
    )
    assert calls == [(1, None), (2, None), (3, None)]


def test_failed_write_leaves_no_file(tmp_path: Path) -> None:
    frames = [np.zeros((48, 64, 3), np.uint8)] * 3 + [np.zeros((32, 32, 3), np.uint8)]
    target = tmp_path / "bad.mp4"
    with pytest.raises(MediaError, match=r"Video frame 3 is 32x32 but the first frame is 64x48"):
        write_video(target, frames, 25)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_previous_file(tmp_path: Path) -> None:
    target = write_video(tmp_path / "v.mp4", block_frames(3), 25)
    before = target.read_bytes()
    with pytest.raises(MediaError):
        write_video(target, [np.zeros((48, 64, 3), np.uint8), np.zeros((48, 64), np.uint8)], 25)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]


@pytest.mark.parametrize(
    "frames,fps,pattern",
    [
        (np.zeros((0, 8, 8, 3), np.uint8), 25, "frame sequence is empty"),
        (np.zeros((8, 8), np.uint8), 25, r"shape \(8, 8\); expected \(T, H, W, 3\)"),
        (np.zeros((2, 8, 8, 4), np.uint8), 25, r"frame 0 has shape \(8, 8, 4\)"),
        (np.full((2, 8, 8, 3), np.nan, np.float32), 25, "NaN"),
        (np.zeros((2, 8, 8, 3), np.uint8), 0, "positive frame rate"),
        (np.zeros((2, 8, 8, 3), np.uint8), "fast", "not a number"),
    ],
)
def test_write_video_errors(tmp_path: Path, frames: np.ndarray, fps: float, pattern: str) -> None:
    with pytest.raises(MediaError, match=pattern):
        write_video(tmp_path / "x.mp4", frames, fps)
    assert not (tmp_path / "x.mp4").exists()
    assert [p for p in tmp_path.iterdir() if p.is_file()] == []


def test_read_video_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"^Video file .*missing\.mp4 does not exist"):
        read_video(tmp_path / "missing.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video" * 20)
    with pytest.raises(MediaError, match="could not be read as a video"):
        read_video(bad)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(MediaError, match="is empty"):
        read_video(empty)


# ---------------------------------------------------------------- images


def _checker(h: int = 20, w: int = 30) -> np.ndarray:
    """An (H, W, 3) uint8 image with distinct quadrants."""
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 2, : w // 2] = RED
    img[: h // 2, w // 2 :] = GREEN
    img[h // 2 :, : w // 2] = BLUE
    img[h // 2 :, w // 2 :] = (250, 250, 250)
    return img


def test_load_png_exact_and_jpeg_close(tmp_path: Path) -> None:
    img = _checker()
    Image.fromarray(img).save(tmp_path / "a.png")
    Image.fromarray(img).save(tmp_path / "a.jpg", quality=95)
    png = load_image(tmp_path / "a.png")
    assert png.dtype == np.uint8 and png.shape == (20, 30, 3)
    np.testing.assert_array_equal(png, img)
    jpg = load_image(str(tmp_path / "a.jpg"))
    assert jpg.shape == (20, 30, 3)
    assert np.abs(jpg.astype(np.int16) - img).mean() < 6


def test_load_rgba_composited_on_white(tmp_path: Path) -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:2, :, 3] = 255  # top opaque red, bottom fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    np.testing.assert_array_equal(out[:2], np.full((2, 4, 3), (255, 0, 0), np.uint8))
    np.testing.assert_array_equal(out[2:], np.full((2, 4, 3), 255, np.uint8))
    np.testing.assert_array_equal(load_image(rgba), out)


def test_load_grayscale_and_16bit(tmp_path: Path) -> None:
    gray = np.arange(0, 240, 10, dtype=np.uint8).reshape(4, 6)
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    out = load_image(tmp_path / "g.png")
    assert out.shape == (4, 6, 3)
    np.testing.assert_array_equal(out, np.repeat(gray[..., None], 3, axis=2))
    deep = (np.arange(24, dtype=np.uint16).reshape(4, 6) * 2000).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "d.png")
    out16 = load_image(tmp_path / "d.png")
    assert out16.shape == (4, 6, 3) and out16.max() == 255 and out16.min() == 0


def test_load_exif_rotated(tmp_path: Path) -> None:
    img = np.zeros((10, 20, 3), np.uint8)
    img[:, :10] = (255, 0, 0)  # left half red, stored landscape
    pil = Image.fromarray(img)
    exif = pil.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    pil.save(tmp_path / "r.jpg", exif=exif, quality=95)
    out = load_image(tmp_path / "r.jpg")
    assert out.shape == (20, 10, 3)
    # After a clockwise turn the stored left half becomes the top half.
    assert out[:10, :, 0].mean() > 200 and out[10:, :, 0].mean() < 50


def test_load_arrays_and_tensors() -> None:
    img = _checker()
    np.testing.assert_array_equal(load_image(img), img)
    as_float = img.astype(np.float32) / 255.0
    np.testing.assert_array_equal(load_image(as_float), img)
    batch = torch.from_numpy(np.stack([as_float, 1 - as_float]))
    np.testing.assert_array_equal(load_image(batch), img)
    np.testing.assert_array_equal(load_image(batch[0]), img)
    comfy = image_to_comfy(img)
    assert comfy.shape == (1, 20, 30, 3) and comfy.dtype == torch.float32
    assert 0.0 <= float(comfy.min()) and float(comfy.max()) <= 1.0
    np.testing.assert_array_equal(load_image(comfy), img)


def test_load_image_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"^Reference photo file .*nope\.png does not exist"):
        load_image(tmp_path / "nope.png", name="reference photo")
    text = tmp_path / "notes.png"
    text.write_text("hello")
    with pytest.raises(MediaError, match=r"^Image file .*notes\.png could not be read as an image"):
        load_image(text)
    with pytest.raises(MediaError, match=r"has shape \(4, 4, 5\); expected \(H, W, 3\)"):
        load_image(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(MediaError, match=r"has shape \(2, 3, 4, 4, 3\)"):
        load_image(torch.zeros(2, 3, 4, 4, 3))
    with pytest.raises(MediaError, match="empty batch"):
        load_image(torch.zeros(0, 4, 4, 3))
    with pytest.raises(MediaError, match="dtype int64"):
        load_image(np.zeros((4, 4, 3), np.int64))
    with pytest.raises(MediaError, match="must be a file path"):
        load_image(42)
