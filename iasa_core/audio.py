"""Audio input: load speech from files or ComfyUI AUDIO dicts, mix to mono, resample.

The original waveform (rate and channels) is kept untouched for the final video; stage 1
asks for a mono copy at its own rate (16 kHz for EMAGE) through ``AudioClip.mono``.
Files are decoded with PyAV (it bundles ffmpeg), so wav, mp3, flac, ogg, m4a and anything
else ffmpeg reads work without librosa or an ffmpeg binary.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_MAX_SECONDS = 600.0
SILENCE_DB = -60.0
ACCEPTED_FORMATS = "wav, mp3, flac, ogg, m4a and anything ffmpeg reads"
COMFY_SOURCE = "AUDIO input"


class AudioError(ValueError):
    """An audio input that cannot be used, with a message meant for the user."""


class AudioFileNotFoundError(AudioError, FileNotFoundError):
    """A missing audio file: both an AudioError and a FileNotFoundError."""


@dataclass(eq=False)  # identity equality: comparing waveforms elementwise would be ambiguous
class AudioClip:
    """Decoded audio at its original sample rate and channel count."""

    waveform: np.ndarray  # (channels, samples) float32 in [-1, 1], original rate, untouched
    sample_rate: int
    source: str  # file path, or "AUDIO input" for a ComfyUI dict
    _mono_cache: tuple[int | None, np.ndarray] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.waveform.shape[-1] / float(self.sample_rate)

    @property
    def num_channels(self) -> int:
        """Number of channels in the original waveform."""
        return int(self.waveform.shape[0])

    @property
    def num_samples(self) -> int:
        """Number of samples per channel at the original rate."""
        return int(self.waveform.shape[-1])

    def mono(self, sample_rate: int | None = None) -> np.ndarray:
        """(samples,) float32 mixed to mono, resampled to ``sample_rate`` when given (cached)."""
        if self._mono_cache is not None and self._mono_cache[0] == sample_rate:
            return self._mono_cache[1]
        out = self.waveform.mean(axis=0, dtype=np.float64).astype(np.float32)
        if sample_rate is not None and int(sample_rate) != self.sample_rate:
            out = resample(out, self.sample_rate, int(sample_rate))
        # Callers share the cached array, so make accidental in-place edits fail loudly.
        out.setflags(write=False)
        self._mono_cache = (sample_rate, out)
        return out

    def to_comfy(self) -> dict:
        """ComfyUI AUDIO dict: {"waveform": tensor (1, C, N) float32, "sample_rate": int}."""
        import torch

        wave = torch.from_numpy(np.ascontiguousarray(self.waveform, dtype=np.float32).copy())
        return {"waveform": wave.unsqueeze(0), "sample_rate": int(self.sample_rate)}

    def trimmed(self, seconds: float) -> AudioClip:
        """A copy holding only the first ``seconds`` of audio (the whole clip if shorter)."""
        if not math.isfinite(seconds) or seconds < 0:
            raise AudioError(f"Cannot trim audio from {self.source} to {seconds} s: give a length >= 0.")
        n = min(self.num_samples, int(round(seconds * self.sample_rate)))
        return AudioClip(self.waveform[:, :n].copy(), self.sample_rate, self.source)


def resample(x: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Polyphase resampling along the last axis (scipy resample_poly, gcd-reduced ratio)."""
    from scipy.signal import resample_poly

    orig_sr, target_sr = int(orig_sr), int(target_sr)
    if orig_sr <= 0 or target_sr <= 0:
        raise AudioError(f"Cannot resample from {orig_sr} Hz to {target_sr} Hz: rates must be positive.")
    x = np.asarray(x, dtype=np.float32)
    if orig_sr == target_sr:
        return x.copy()
    g = math.gcd(orig_sr, target_sr)
    out = resample_poly(x, target_sr // g, orig_sr // g, axis=-1)
    return np.asarray(out, dtype=np.float32)


def rms_db(x: np.ndarray) -> float:
    """RMS level in dBFS (-inf for digital silence)."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return -math.inf
    rms = math.sqrt(float(np.mean(np.square(x))))
    return 20.0 * math.log10(rms) if rms > 0 else -math.inf


def is_silent(x: np.ndarray, threshold_db: float = SILENCE_DB) -> bool:
    """True when the RMS level in dBFS is below ``threshold_db``."""
    return rms_db(x) < threshold_db


def load_audio(
    source: Any,
    *,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
    allow_silent: bool = False,
    name: str = "audio",
    limit_name: str | None = "max_seconds",
) -> AudioClip:
    """Load a path, a ComfyUI AUDIO dict or an AudioClip into a checked AudioClip.

    ``limit_name`` is what the caller calls ``max_seconds`` (e.g. ``--max-seconds``), for the too-long message;
    None when the caller offers no way to raise it."""
    if isinstance(source, AudioClip):
        return source
    if max_seconds is not None and (isinstance(max_seconds, bool) or not isinstance(max_seconds, (int, float))
                                    or not math.isfinite(max_seconds) or max_seconds <= 0):
        raise AudioError(f"{limit_name or 'max_seconds'} must be a finite number of seconds above 0; "
                         f"got {max_seconds!r}.")
    if isinstance(source, dict):
        wave, sr = _from_comfy_dict(source, name)
        label = COMFY_SOURCE
        where = f"{_cap(name)} ({COMFY_SOURCE})"
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        label = str(path)
        where = f"{_file_label(name)} {path}"
        _check_file(path, name)
        wave, sr = _decode_file(path, name, max_seconds, limit_name)
    else:
        raise AudioError(
            f"{_cap(name)} must be a file path or a ComfyUI AUDIO dict "
            f'{{"waveform": tensor [batch, channels, samples], "sample_rate": int}}; '
            f"got {type(source).__name__}."
        )
    if wave.shape[-1] == 0:
        raise AudioError(f"{where} contains no audio samples; use a recording with speech.")
    if not np.all(np.isfinite(wave)):
        # Float wav/flac files can hold NaN; left in they would read as silence (or poison the mix).
        raise AudioError(f"{where} contains NaN or infinite samples; the file is damaged: export it again.")
    clip = AudioClip(np.clip(wave, -1.0, 1.0).astype(np.float32, copy=False), int(sr), label)
    _check_length(clip.duration, max_seconds, where, limit_name)
    if not allow_silent and is_silent(clip.waveform):
        raise AudioError(
            f"{where} is silent (level {rms_db(clip.waveform):.1f} dBFS, below {SILENCE_DB:.0f} dBFS); "
            f"use a recording with speech."
        )
    return clip


def _cap(name: str) -> str:
    """The input's name with a capital first letter, to start a message."""
    return name[:1].upper() + name[1:]


def _file_label(name: str) -> str:
    """How a message names the file: "Audio file" for "audio", a node input's own name ("audio_file") as is."""
    # A name that already says "file" (a ComfyUI input) must not become "Audio file file".
    if name.replace("_", " ").rstrip().endswith("file"):
        return name
    return f"{_cap(name)} file"


def _check_length(duration: float, max_seconds: float | None, where: str,
                  limit_name: str | None = "max_seconds") -> None:
    """Raise when the audio is longer than the configured limit."""
    if max_seconds is not None and duration > max_seconds:
        raise_it = f" or raise {limit_name}" if limit_name else ""
        raise AudioError(
            f"{where} is {duration:.1f} s long; the limit is {max_seconds:g} s; trim it{raise_it}."
        )


def _check_file(path: Path, name: str) -> None:
    """Raise clear errors for a missing, non-regular or empty file."""
    if not path.exists():
        raise AudioFileNotFoundError(
            f"{_file_label(name)} {path} does not exist; check the path (accepted formats: {ACCEPTED_FORMATS})."
        )
    if not path.is_file():
        raise AudioError(f"{_file_label(name)} {path} is not a file; give the path of an audio file.")
    if path.stat().st_size == 0:
        raise AudioError(f"{_file_label(name)} {path} is empty (0 bytes); use a complete audio file.")


def _decode_file(path: Path, name: str, max_seconds: float | None,
                 limit_name: str | None = "max_seconds") -> tuple[np.ndarray, int]:
    """Decode the first audio stream of a file into (channels, samples) float32 and its rate."""
    import av

    where = f"{_file_label(name)} {path}"
    unreadable = (
        f"{where} could not be read as audio; accepted formats are {ACCEPTED_FORMATS}. "
        f"Check that the file is complete and not corrupt"
    )
    try:
        with av.open(str(path), mode="r") as container:
            if not container.streams.audio:
                raise AudioError(f"{where} has no audio stream; accepted formats are {ACCEPTED_FORMATS}.")
            stream = container.streams.audio[0]
            _precheck_length(stream, max_seconds, where, limit_name)
            return _decode_stream(container, stream, where)
    except AudioError:
        raise
    except (av.FFmpegError, OSError, EOFError, UnicodeDecodeError) as exc:
        raise AudioError(f"{unreadable} ({exc}).") from exc


def _precheck_length(stream: Any, max_seconds: float | None, where: str, limit_name: str | None) -> None:
    """Refuse an over-long file from its header before decoding all of it."""
    if max_seconds is None or stream.duration is None or stream.time_base is None:
        return
    seconds = float(stream.duration * stream.time_base)
    # Headers can be slightly off (VBR mp3), so only refuse clear cases here; the decoded
    # length is checked exactly afterwards.
    if seconds > max_seconds * 1.05 + 1.0:
        _check_length(seconds, max_seconds, where, limit_name)


def _decode_stream(container: Any, stream: Any, where: str) -> tuple[np.ndarray, int]:
    """Decode every frame of one audio stream into planar float32."""
    chunks: list[np.ndarray] = []
    rate: int | None = None
    channels: int | None = None
    for frame in container.decode(stream):
        data = _frame_to_planar_float(frame)
        if data.shape[-1] == 0:
            continue
        if rate is None:
            rate, channels = int(frame.sample_rate), data.shape[0]
        if data.shape[0] != channels:
            # A mid-stream layout change (rare, broadcast captures): fold to the first layout.
            data = _match_channels(data, channels)
        if int(frame.sample_rate) != rate:
            data = resample(data, int(frame.sample_rate), rate)
        chunks.append(data)
    if rate is None:
        raise AudioError(f"{where} contains no audio samples; use a recording with speech.")
    return np.concatenate(chunks, axis=1), rate


def _match_channels(data: np.ndarray, channels: int) -> np.ndarray:
    """Mix or repeat channels so that ``data`` has ``channels`` rows."""
    mono = data.mean(axis=0, keepdims=True)
    return np.repeat(mono, channels, axis=0)


_INT_SCALE = {"u8": 128.0, "s16": 32768.0, "s32": 2147483648.0, "s64": 9223372036854775808.0}


def _frame_to_planar_float(frame: Any) -> np.ndarray:
    """Convert one PyAV AudioFrame of any sample format to (channels, samples) float32."""
    arr = frame.to_ndarray()
    fmt = frame.format
    channels = len(frame.layout.channels)
    if not fmt.is_planar:
        # Packed formats come back as (1, samples * channels), interleaved.
        arr = arr.reshape(-1, channels).T
    base = fmt.name.rstrip("p")
    if base == "u8":
        return ((arr.astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    if base in _INT_SCALE:
        return (arr.astype(np.float64) / _INT_SCALE[base]).astype(np.float32)
    return arr.astype(np.float32, copy=False)


def _from_comfy_dict(audio: dict, name: str) -> tuple[np.ndarray, int]:
    """Take batch item 0 of a ComfyUI AUDIO dict as (channels, samples) float32 and its rate."""
    form = '{"waveform": tensor [batch, channels, samples], "sample_rate": int}'
    if "waveform" not in audio or "sample_rate" not in audio:
        raise AudioError(
            f"{_cap(name)} ({COMFY_SOURCE}) must be a dict {form}; got keys {sorted(map(str, audio))}."
        )
    wave = audio["waveform"]
    if hasattr(wave, "detach"):  # torch tensor, possibly on GPU or in bf16
        wave = wave.detach().to("cpu").float().numpy()
    try:
        wave = np.asarray(wave, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise AudioError(f"{_cap(name)} ({COMFY_SOURCE}) waveform is not numeric; expected {form}.") from exc
    if wave.ndim == 3:
        if wave.shape[0] == 0:
            raise AudioError(f"{_cap(name)} ({COMFY_SOURCE}) has an empty batch; expected {form}.")
        wave = wave[0]
    elif wave.ndim == 1:
        wave = wave[None]
    elif wave.ndim != 2:
        raise AudioError(
            f"{_cap(name)} ({COMFY_SOURCE}) waveform has shape {tuple(wave.shape)}; expected {form}."
        )
    if not np.all(np.isfinite(wave)):
        raise AudioError(
            f"{_cap(name)} ({COMFY_SOURCE}) contains NaN or infinite samples; fix the node that produced it."
        )
    sr = audio["sample_rate"]
    if isinstance(sr, Fraction) or hasattr(sr, "item"):
        sr = float(sr)
    if isinstance(sr, bool) or not isinstance(sr, (int, float)) or not sr > 0 or int(sr) != sr:
        raise AudioError(
            f"{_cap(name)} ({COMFY_SOURCE}) sample_rate is {sr!r}; expected a positive integer in Hz."
        )
    if wave.shape[0] == 0:
        raise AudioError(f"{_cap(name)} ({COMFY_SOURCE}) has no channels; expected {form}.")
    return np.ascontiguousarray(wave), int(sr)
