"""Per-video-frame audio features for procedural motion: loudness, voicing, onsets, pitch.

Everything is computed on 16 kHz mono at a 100 Hz analysis rate (10 ms hop) with vectorised
framing (stride tricks) and real FFTs, then mapped to the output frame rate: output frame k shows
time k / fps. numpy and scipy only (no librosa). 60 s of audio takes a few tens of milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft
from scipy import ndimage, signal

ANALYSIS_SR = 16000
HOP = 160                     # 10 ms: fast enough for syllables (4-8 Hz) and bursts
RMS_WIN = 400                 # 25 ms loudness window
FLUX_WIN = 512                # 32 ms spectral-flux window (31 Hz bins)
YIN_WIN = 400                 # 25 ms integration window of the YIN difference function
FMIN, FMAX = 60.0, 500.0      # speaking pitch range (low male voice to child / shouting)
YIN_THRESHOLD = 0.2           # CMNDF dip below this = periodic (0.1-0.2 usual for speech)
DYNAMIC_RANGE_DB = 40.0       # loudness 0..1 spans at most this many dB below the clip's peak
NOISE_MARGIN_DB = 10.0        # ... and starts at least this far above the clip's noise floor
MIN_RANGE_DB = 12.0           # a clip without dynamics still gets a usable (non-empty) range
SILENT_PEAK_DBFS = -70.0      # a clip whose peak is below this is treated as all silence
ONSET_MIN_SPACING_S = 0.08    # two onsets closer than this are one event
YIN_BLOCK = 2048              # analysis frames (20 s) per block of spectra: memory stays flat in the length


@dataclass
class AudioFeatures:
    """Audio features sampled at video frames (all arrays have length ``num_frames``)."""

    fps: float
    loudness: np.ndarray      # 0..1, smoothed RMS envelope in dB with a speech-adaptive floor
    voiced: np.ndarray        # 0..1, fraction of the frame's 10 ms analysis frames that are voiced
    onset: np.ndarray         # 0..1, normalised spectral-flux novelty (max within the frame)
    onset_frames: np.ndarray  # int, frames of peak-picked onsets (sorted, unique)
    onset_strength: np.ndarray  # 0..1, ``onset`` at each of ``onset_frames``
    pitch: np.ndarray         # Hz, 0 where unvoiced
    pitch_z: np.ndarray       # log-pitch normalised per clip (robust z, clipped to +-3), 0 unvoiced
    duration: float           # seconds of audio analysed

    @property
    def num_frames(self) -> int:
        return int(len(self.loudness))

    @property
    def times(self) -> np.ndarray:
        """Time in seconds of each output frame."""
        return np.arange(self.num_frames) / self.fps


def _to_mono_16k(mono: np.ndarray, sample_rate: int) -> np.ndarray:
    x = np.asarray(mono)
    if x.ndim == 2:  # tolerate (channels, samples) or (samples, channels)
        x = x.mean(axis=0 if x.shape[0] <= x.shape[1] else 1)
    elif x.ndim != 1:
        raise ValueError(f"audio: expected a 1-D mono waveform, got shape {x.shape}")
    if x.size == 0:
        raise ValueError("audio: expected a non-empty waveform, got 0 samples")
    if np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float32) / float(np.iinfo(x.dtype).max)
    x = np.asarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise ValueError("audio: expected finite samples, got NaN or inf")
    if isinstance(sample_rate, bool) or int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ValueError(f"sample_rate: expected a positive integer (Hz), got {sample_rate!r}")
    sample_rate = int(sample_rate)
    if sample_rate != ANALYSIS_SR:
        g = math.gcd(sample_rate, ANALYSIS_SR)
        x = signal.resample_poly(x, ANALYSIS_SR // g, sample_rate // g).astype(np.float32)
    return x


def _frames(x: np.ndarray, win: int, n: int) -> np.ndarray:
    """(n, win) view of frames centred at i * HOP (signal zero-padded on both sides)."""
    need = (n - 1) * HOP + win
    left = win // 2
    pad = np.zeros(max(need, left + len(x)), dtype=np.float32)
    pad[left:left + len(x)] = x
    return np.lib.stride_tricks.sliding_window_view(pad[:need], win)[::HOP]


def _loudness_db(x: np.ndarray, n: int) -> np.ndarray:
    fr = _frames(x, RMS_WIN, n)
    ms = np.einsum("ij,ij->i", fr, fr, dtype=np.float64) / RMS_WIN
    return 10.0 * np.log10(ms + 1e-12)


def _map_loudness(db: np.ndarray) -> np.ndarray:
    db = ndimage.gaussian_filter1d(db, 1.5, mode="nearest")   # ~15 ms: keeps syllable shape
    peak = float(np.percentile(db, 99.0))
    if peak < SILENT_PEAK_DBFS:
        return np.zeros_like(db)
    noise = float(np.percentile(db, 5.0))
    floor = max(noise + NOISE_MARGIN_DB, peak - DYNAMIC_RANGE_DB)
    floor = min(floor, peak - MIN_RANGE_DB)
    return np.clip((db - floor) / (peak - floor), 0.0, 1.0)


def _power(frames: np.ndarray) -> np.ndarray:
    """Power spectra of Hann-windowed analysis frames (n, FLUX_WIN)."""
    return np.abs(sfft.rfft(frames * np.hanning(FLUX_WIN).astype(np.float32), axis=1)) ** 2


def _onset_novelty(x: np.ndarray, n: int, loud: np.ndarray) -> np.ndarray:
    fr = _frames(x, FLUX_WIN, n)
    # Spectra are made a block of frames at a time, twice (the floor needs the loudest bin of the whole
    # clip first): all at once they took over 500 MB for 10 minutes. Each frame's numbers are the same.
    blocks = range(0, n, YIN_BLOCK)
    ref = max(float(_power(fr[a:a + YIN_BLOCK]).max()) for a in blocks)
    if ref <= 0:
        return np.zeros(n)
    flux = np.zeros(n)
    last = None  # the previous block's last spectrum, for the first difference of the next block
    for a in blocks:
        # dB spectrogram with a floor 80 dB under the loudest bin: level-invariant, silence-safe.
        spec = 10.0 * np.log10(np.maximum(_power(fr[a:a + YIN_BLOCK]), ref * 1e-8))
        before = spec[:-1] if last is None else np.concatenate([last, spec[:-1]])
        flux[max(a, 1):a + len(spec)] = np.maximum(spec[1 if last is None else 0:] - before, 0.0).mean(axis=1)
        last = spec[-1:]
    # Novelty = flux above its local mean (0.3 s), gated to where there is sound at all.
    nov = np.maximum(flux - ndimage.uniform_filter1d(flux, 31, mode="nearest"), 0.0)
    nov *= np.clip(ndimage.maximum_filter1d(loud, 5) / 0.1, 0.0, 1.0)
    peaks, _ = signal.find_peaks(nov)
    if len(peaks) == 0 or nov.max() <= 1e-9:
        return np.zeros(n)
    scale = float(np.percentile(nov[peaks], 98.0)) if len(peaks) > 20 else float(nov.max())
    return np.clip(nov / max(scale, 1e-9), 0.0, 1.0)


def _yin(x: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Pitch (Hz, 0 unvoiced) and periodicity flag per analysis frame (vectorised YIN, in blocks of frames)."""
    tau_max = int(math.ceil(ANALYSIS_SR / FMIN)) + 1
    fr = _frames(x, YIN_WIN + tau_max + 1, n)
    f0, has = np.empty(n), np.empty(n, dtype=bool)
    # Every frame is computed on its own, so blocks give the same numbers; all at once, the spectra and
    # difference functions of 10 minutes of audio took 2 GB.
    for a in range(0, n, YIN_BLOCK):
        f0[a:a + YIN_BLOCK], has[a:a + YIN_BLOCK] = _yin_frames(fr[a:a + YIN_BLOCK])
    return f0, has


def _yin_frames(fr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """YIN on analysis frames (n, YIN_WIN + tau_max + 1): pitch (Hz, 0 unvoiced) and periodicity flag."""
    tau_min = int(ANALYSIS_SR / FMAX)
    tau_max = int(math.ceil(ANALYSIS_SR / FMIN)) + 1
    n, length = fr.shape
    nfft = 1 << int(math.ceil(math.log2(length)))
    head = np.zeros((n, nfft), dtype=np.float32)
    head[:, :YIN_WIN] = fr[:, :YIN_WIN]
    spec_f = sfft.rfft(fr, n=nfft, axis=1)
    spec_h = sfft.rfft(head, axis=1)
    r = sfft.irfft(np.conj(spec_h) * spec_f, n=nfft, axis=1)[:, :tau_max + 1].astype(np.float64)
    sq = np.zeros((n, length + 1))
    np.cumsum(np.square(fr, dtype=np.float64), axis=1, out=sq[:, 1:])
    taus = np.arange(tau_max + 1)
    e_tau = sq[:, taus + YIN_WIN] - sq[:, taus]
    d = np.maximum(sq[:, YIN_WIN:YIN_WIN + 1] + e_tau - 2.0 * r, 0.0)
    d[:, 0] = 0.0
    cum = np.cumsum(d[:, 1:], axis=1)
    cmn = np.ones_like(d)
    cmn[:, 1:] = d[:, 1:] * taus[1:] / np.maximum(cum, 1e-12)
    # First local minimum below threshold in the speaking range.
    seg = cmn[:, tau_min:tau_max]
    nxt = cmn[:, tau_min + 1:tau_max + 1]
    cond = (seg < YIN_THRESHOLD) & (seg <= nxt)
    has = cond.any(axis=1)
    idx = cond.argmax(axis=1) + tau_min
    rows = np.arange(n)
    y0, y1, y2 = cmn[rows, idx - 1], cmn[rows, idx], cmn[rows, np.minimum(idx + 1, tau_max)]
    den = y0 - 2.0 * y1 + y2
    delta = np.where(np.abs(den) > 1e-12, 0.5 * (y0 - y2) / np.where(den == 0, 1.0, den), 0.0)
    tau = idx + np.clip(delta, -1.0, 1.0)
    f0 = np.where(has, ANALYSIS_SR / np.maximum(tau, 1.0), 0.0)
    return f0, has


def _at_frames(values: np.ndarray, t_out: np.ndarray, smooth: int) -> np.ndarray:
    """Box-smooth a 100 Hz series over one video frame, then sample at the output times."""
    if smooth > 1:
        values = ndimage.uniform_filter1d(values.astype(np.float64), smooth, mode="nearest")
    t_a = np.arange(len(values)) * HOP / ANALYSIS_SR
    return np.interp(t_out, t_a, values)


def audio_features(mono: np.ndarray, sample_rate: int, fps: float,
                   num_frames: int | None = None) -> AudioFeatures:
    """Audio features at ``fps`` for ``num_frames`` frames (default round(duration * fps))."""
    if isinstance(fps, bool) or not isinstance(fps, (int, float, np.integer, np.floating)) \
            or not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps: expected a positive finite number, got {fps!r}")
    fps = float(fps)
    x = _to_mono_16k(mono, sample_rate)
    duration = len(x) / ANALYSIS_SR
    if num_frames is None:
        num_frames = max(1, int(round(duration * fps)))
    elif isinstance(num_frames, bool) or int(num_frames) != num_frames or num_frames < 1:
        raise ValueError(f"num_frames: expected a positive integer, got {num_frames!r}")
    num_frames = int(num_frames)

    n = len(x) // HOP + 1
    loud_a = _map_loudness(_loudness_db(x, n))
    nov_a = _onset_novelty(x, n, loud_a)
    f0_a, periodic = _yin(x, n)
    voiced_a = periodic & (loud_a > 0.15)
    # A 50 ms median removes isolated octave jumps and single-frame voicing flips.
    voiced_a = ndimage.median_filter(voiced_a.astype(np.uint8), 5, mode="nearest").astype(bool)
    f0_a = np.where(voiced_a, ndimage.median_filter(np.where(voiced_a, f0_a, 0.0), 5, mode="nearest"), 0.0)
    voiced_a &= f0_a > 0

    t_out = np.arange(num_frames) / fps
    box = max(1, int(round(ANALYSIS_SR / HOP / fps)))
    loudness = np.clip(_at_frames(loud_a, t_out, box), 0.0, 1.0)
    voiced = np.clip(_at_frames(voiced_a.astype(np.float64), t_out, box), 0.0, 1.0)
    f0_sum = _at_frames(np.log2(np.where(voiced_a, f0_a, 1.0)) * voiced_a, t_out, box)
    pitch = np.where(voiced >= 0.5, np.exp2(f0_sum / np.maximum(voiced, 1e-9)), 0.0)
    onset = np.clip(_at_frames(ndimage.maximum_filter1d(nov_a, box, mode="nearest"), t_out, 1), 0.0, 1.0)

    spacing = max(1, int(round(ONSET_MIN_SPACING_S * ANALYSIS_SR / HOP)))
    peaks, _ = signal.find_peaks(nov_a, height=0.1, distance=spacing)
    keep = nov_a[peaks] >= ndimage.uniform_filter1d(nov_a, 51, mode="nearest")[peaks] + 0.05
    frames = np.round(peaks[keep] * HOP / ANALYSIS_SR * fps).astype(np.int64)
    frames = np.unique(frames[(frames >= 0) & (frames < num_frames)])

    pitch_z = np.zeros(num_frames)
    vox = pitch > 0
    if vox.any():
        lp = np.log2(pitch[vox])
        med = float(np.median(lp))
        scale = max(1.4826 * float(np.median(np.abs(lp - med))), 1.0 / 12.0)  # >= a semitone
        pitch_z[vox] = np.clip((lp - med) / scale, -3.0, 3.0)

    f32 = np.float32
    return AudioFeatures(
        fps=fps, loudness=loudness.astype(f32), voiced=voiced.astype(f32), onset=onset.astype(f32),
        onset_frames=frames, onset_strength=onset[frames].astype(f32), pitch=pitch.astype(f32),
        pitch_z=pitch_z.astype(f32), duration=float(duration))
