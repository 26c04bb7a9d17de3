"""Image and video IO shared by the CLI and the nodes (PIL for images, PyAV for video).

Videos are written as H.264 (libx264, yuv420p) in mp4 so that every browser and player opens
them. yuv420p needs even width and height: odd sizes are padded by one row/column that
repeats the edge pixels (never cropped, so no content is lost and no black border appears).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .audio import AudioClip, load_audio
from .validate import MAX_FPS

ProgressFn = Callable[[int, "int | None"], None]

# ffmpeg's aac encoder needs a named channel layout; these are its standard ones.
_AAC_LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


class MediaError(ValueError):
    """An image or video input/output problem, with a message meant for the user."""


# ---------------------------------------------------------------------------- images


def load_image(path_or_array: Any, *, name: str = "image") -> np.ndarray:
    """Load a path, numpy array or ComfyUI IMAGE tensor as (H, W, 3) uint8 RGB."""
    if isinstance(path_or_array, (str, os.PathLike)):
        return _load_image_file(Path(path_or_array).expanduser(), name)
    if isinstance(path_or_array, torch.Tensor):
        arr = path_or_array.detach().to("cpu")
        arr = arr.float().numpy() if arr.is_floating_point() else arr.numpy()
        return _array_to_rgb(arr, name)
    if isinstance(path_or_array, np.ndarray):
        return _array_to_rgb(path_or_array, name)
    if isinstance(path_or_array, Image.Image):
        return _pil_to_rgb(path_or_array)
    raise MediaError(
        f"{_cap(name)} must be a file path, an (H, W, 3) numpy array or a ComfyUI IMAGE tensor "
        f"[B, H, W, 3]; got {type(path_or_array).__name__}."
    )


def image_to_comfy(img: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> ComfyUI IMAGE [1, H, W, 3] float32 in 0..1."""
    rgb = _array_to_rgb(np.asarray(img), "image")
    return torch.from_numpy(rgb.astype(np.float32) / 255.0).unsqueeze(0)


def _cap(name: str) -> str:
    """The input's name with a capital first letter, to start a message."""
    return name[:1].upper() + name[1:]


def _load_image_file(path: Path, name: str) -> np.ndarray:
    """Open an image file with PIL, apply EXIF orientation and convert to RGB."""
    if not path.exists():
        raise FileNotFoundError(f"{_cap(name)} file {path} does not exist; check the path.")
    if not path.is_file():
        raise MediaError(
            f"{_cap(name)} file {path} is not a file; give the path of an image (png, jpg, webp ...)."
        )
    try:
        with Image.open(path) as im:
            im.load()
            return _pil_to_rgb(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise MediaError(
            f"{_cap(name)} file {path} could not be read as an image; use a png, jpg, webp or "
            f"another format Pillow reads ({exc})."
        ) from exc


def _pil_to_rgb(im: Image.Image) -> np.ndarray:
    """PIL image -> (H, W, 3) uint8: EXIF rotation applied, alpha composited on white."""
    im = ImageOps.exif_transpose(im) or im
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit/float greyscale: stretch its own range to 8 bits instead of clipping at 255.
        arr = np.asarray(im, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        return np.repeat(np.round(arr).astype(np.uint8)[..., None], 3, axis=2)
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, rgba)
    return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))


def _array_to_rgb(arr: np.ndarray, name: str) -> np.ndarray:
    """(H, W, 3) / (B, H, W, 3) uint8 or float 0..1 -> (H, W, 3) uint8; first of a batch."""
    shape = tuple(arr.shape)
    if arr.ndim == 4:
        if arr.shape[0] == 0:
            raise MediaError(f"{_cap(name)} is an empty batch {shape}; expected at least one image.")
        arr = arr[0]
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4) or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise MediaError(
            f"{_cap(name)} has shape {shape}; expected (H, W, 3) or a ComfyUI IMAGE [B, H, W, 3]."
        )
    rgb = _to_uint8(arr, name)
    if rgb.shape[-1] == 1:
        rgb = np.repeat(rgb, 3, axis=2)
    elif rgb.shape[-1] == 4:
        alpha = rgb[..., 3:].astype(np.float32) / 255.0
        rgb = np.round(rgb[..., :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    return np.ascontiguousarray(rgb)


def _to_uint8(arr: np.ndarray, name: str) -> np.ndarray:
    """uint8 stays; floats in 0..1 are scaled and rounded; other types are refused."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.integer):
        raise MediaError(f"{_cap(name)} has dtype {arr.dtype}; expected uint8 0..255 or float 0..1.")
    if not np.issubdtype(arr.dtype, np.floating):
        raise MediaError(f"{_cap(name)} has dtype {arr.dtype}; expected uint8 0..255 or float 0..1.")
    if not np.all(np.isfinite(arr)):
        raise MediaError(f"{_cap(name)} contains NaN or infinite values; expected floats in 0..1.")
    return np.round(np.clip(arr.astype(np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)


# ---------------------------------------------------------------------------- video writing


def write_video(
    path: str | os.PathLike,
    frames: Any,
    fps: float,
    *,
    audio: AudioClip | None = None,
    crf: int = 18,
    progress: ProgressFn | None = None,
    lossless: bool = False,
) -> Path:
    """Write frames (T,H,W,3 uint8 / float 0..1, or an iterable of frames) as H.264 mp4.

    ``lossless=True`` stores the RGB pixels exactly (libx264rgb, crf 0): for training data, where a lossy
    encoder's chroma subsampling would cap every model at about 33 dB; most players cannot show it."""
    import av

    path = Path(path).expanduser()
    if audio is not None and not isinstance(audio, AudioClip):
        # A ComfyUI AUDIO dict or a path; silence is allowed in an output.
        audio = load_audio(audio, max_seconds=None, allow_silent=True, name="video audio")
    rate = _fps_fraction(fps)
    total = _frame_count(frames)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write next to the target and rename at the end: a failure never leaves a broken mp4
    # under the final name, and the rename stays on one filesystem.
    # (Not mkstemp: its 0600 mode would carry over to the final video.)
    tmp = path.parent / f".{path.stem}.{os.getpid()}.{secrets.token_hex(4)}.part.mp4"
    try:
        with av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
            count = _encode_all(container, _iter_frames(frames), rate, audio, crf, progress, total, lossless)
        if count == 0:
            raise MediaError(f"No frames to write to {path}; the frame sequence is empty.")
        os.replace(tmp, path)
    except av.FFmpegError as exc:
        raise MediaError(f"Writing the video {path} failed in ffmpeg: {exc}.") from exc
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _fps_fraction(fps: Any) -> Fraction:
    """Frame rate as an exact Fraction (23.976... -> 24000/1001)."""
    try:
        rate = Fraction(fps) if isinstance(fps, (Fraction, int, str)) else Fraction(float(fps))
    except (TypeError, ValueError, ZeroDivisionError) as exc:
        raise MediaError(f"The video fps {fps!r} is not a number; give frames per second, e.g. 25.") from exc
    if not rate > 0 or rate > MAX_FPS:
        raise MediaError(f"The video fps is {fps!r}; give a positive frame rate up to {MAX_FPS:g}.")
    # Floats such as 24000/1001 or 29.97 come back to their usual small-denominator form.
    return rate.limit_denominator(1001)


def _frame_count(frames: Any) -> int | None:
    """Number of frames when known up front (arrays, tensors, sequences)."""
    if isinstance(frames, (np.ndarray, torch.Tensor)):
        return int(frames.shape[0]) if frames.ndim == 4 else 1
    try:
        return len(frames)
    except TypeError:
        return None


def _iter_frames(frames: Any) -> Iterator[np.ndarray]:
    """Yield frames one at a time as (H, W, 3) uint8, converting floats and tensors lazily."""
    if isinstance(frames, (np.ndarray, torch.Tensor)) and frames.ndim == 3:
        frames = frames[None]
    if isinstance(frames, (np.ndarray, torch.Tensor)) and frames.ndim != 4:
        raise MediaError(f"Video frames have shape {tuple(frames.shape)}; expected (T, H, W, 3).")
    for i, frame in enumerate(frames):
        if isinstance(frame, torch.Tensor):
            frame = frame.detach().to("cpu")
            frame = frame.float().numpy() if frame.is_floating_point() else frame.numpy()
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[-1] != 3:
            raise MediaError(f"Video frame {i} has shape {tuple(frame.shape)}; expected (H, W, 3) RGB.")
        yield _to_uint8(frame, f"video frame {i}")


def _pad_even(frame: np.ndarray) -> np.ndarray:
    """Pad odd height/width by one edge-replicated row/column (yuv420p needs even sizes)."""
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def _encode_all(
    container: Any,
    frames: Iterator[np.ndarray],
    rate: Fraction,
    audio: AudioClip | None,
    crf: int,
    progress: ProgressFn | None,
    total: int | None,
    lossless: bool = False,
) -> int:
    """Encode every frame (and the audio, interleaved) into an open output container."""
    import av

    first = next(frames, None)
    if first is None:
        return 0
    height, width = first.shape[:2]
    if lossless:
        vstream = container.add_stream("libx264rgb", rate=rate, options={"crf": "0", "preset": "fast"})
    else:
        vstream = container.add_stream("libx264", rate=rate, options={"crf": str(int(crf)), "preset": "medium"})
    vstream.width, vstream.height = width + width % 2, height + height % 2
    vstream.pix_fmt = "rgb24" if lossless else "yuv420p"
    vstream.codec_context.time_base = 1 / rate
    muxer = _AudioMuxer(container, audio, rate) if audio is not None else None

    count = 0
    for frame in _chain(first, frames):
        if frame.shape[:2] != (height, width):
            raise MediaError(
                f"Video frame {count} is {frame.shape[1]}x{frame.shape[0]} but the first frame is "
                f"{width}x{height}; all frames must have the same size."
            )
        vf = av.VideoFrame.from_ndarray(_pad_even(frame), format="rgb24")
        vf.pts = count
        for packet in vstream.encode(vf):
            container.mux(packet)
        count += 1
        if muxer is not None:
            muxer.write_until(count)
        if progress is not None:
            progress(count, total)
    for packet in vstream.encode(None):
        container.mux(packet)
    if muxer is not None:
        muxer.finish(count)
    return count


def _chain(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    """Yield ``first`` and then the rest of an iterator."""
    yield first
    yield from rest


class _AudioMuxer:
    """Feeds an AudioClip to an AAC stream in step with the video, cut/padded to its length."""

    def __init__(self, container: Any, audio: AudioClip, rate: Fraction) -> None:
        channels = audio.num_channels
        wave = audio.waveform
        if channels not in _AAC_LAYOUTS:
            # AAC has no standard layout for this count; stereo keeps it playable everywhere.
            wave = np.repeat(audio.mono()[None], 2, axis=0)
            channels = 2
        self.wave = np.ascontiguousarray(wave, dtype=np.float32)
        self.sr = int(audio.sample_rate)
        self.layout = _AAC_LAYOUTS[channels]
        self.rate = rate
        self.stream = container.add_stream("aac", rate=self.sr, layout=self.layout)
        self.stream.codec_context.format = "fltp"
        self.stream.bit_rate = 96000 * channels
        self.container = container
        self.done = 0  # samples already sent to the encoder

    def _samples_for(self, n_frames: int) -> int:
        """Audio samples that cover exactly ``n_frames`` video frames."""
        return int(round(Fraction(n_frames) / self.rate * self.sr))

    def write_until(self, n_frames: int) -> None:
        """Encode audio up to the end of video frame ``n_frames`` (zeros after the clip ends)."""
        import av

        end = self._samples_for(n_frames)
        if end <= self.done:
            return
        chunk = self.wave[:, self.done : end]
        if chunk.shape[1] < end - self.done:
            chunk = np.pad(chunk, ((0, 0), (0, end - self.done - chunk.shape[1])))
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout=self.layout)
        frame.sample_rate = self.sr
        frame.pts = self.done
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.done = end

    def finish(self, n_frames: int) -> None:
        """Send the remaining audio for ``n_frames`` video frames and flush the encoder."""
        self.write_until(n_frames)
        for packet in self.stream.encode(None):
            self.container.mux(packet)


# ---------------------------------------------------------------------------- video reading


def _open_video(path: str | os.PathLike, name: str) -> tuple[Any, Path]:
    """Open a media file with PyAV, with clear errors for missing or unreadable files."""
    import av

    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{_cap(name)} file {path} does not exist; check the path.")
    if not path.is_file() or path.stat().st_size == 0:
        raise MediaError(
            f"{_cap(name)} file {path} is empty or not a file; give an mp4, mov, webm or mkv video."
        )
    try:
        return av.open(str(path), mode="r"), path
    except av.FFmpegError as exc:
        raise MediaError(
            f"{_cap(name)} file {path} could not be read as a video; use mp4, mov, webm, mkv or "
            f"another format ffmpeg reads ({exc})."
        ) from exc


def read_video(path: str | os.PathLike, *, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """Decode a video's frames as (T, H, W, 3) uint8 RGB, with its frame rate."""
    import av

    container, path = _open_video(path, "video")
    with container:
        if not container.streams.video:
            raise MediaError(f"Video file {path} has no video stream; give a video (mp4, mov, webm, mkv).")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 25.0
        frames: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                if max_frames is not None and len(frames) >= max_frames:
                    break
                frames.append(frame.to_ndarray(format="rgb24"))
        except av.FFmpegError as exc:
            raise MediaError(f"Video file {path} is corrupt and could not be decoded ({exc}).") from exc
    if not frames:
        raise MediaError(f"Video file {path} contains no frames; give a video with at least one frame.")
    return np.stack(frames), fps


def read_video_audio(path: str | os.PathLike) -> AudioClip | None:
    """The audio track of a video as an AudioClip, or None when it has none."""
    container, path = _open_video(path, "video")
    with container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        seconds = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None
    clip = load_audio(path, max_seconds=None, allow_silent=True, name="video audio")
    # AAC decoders return the encoder's tail padding; the stream duration says where the
    # real audio ends.
    if seconds is not None and seconds < clip.duration:
        clip = clip.trimmed(seconds)
    return clip
