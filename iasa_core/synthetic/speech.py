"""Varied speech audio for the synthetic world: eSpeak NG when installed, else a built-in synthesizer.

Engines (``speech_clip(..., engine=...)``):

* ``"espeak"``: real text-to-speech with libespeak-ng from the optional PyPI package
  ``espeakng-loader`` (ships the library and its voice data; works offline; the library is
  GPL-3.0-or-later and is only loaded at run time, in a child process). Random English sentences
  in a random accent and voice variant, speaking rate, pitch and pitch range, with pauses.
* ``"synthetic"``: a formant synthesizer with no extra dependency: syllables (consonant + vowel
  with vowel formants), a pitch contour with phrase declination and accents, syllable-rate loudness,
  fricative and plosive noise, pauses between phrases; the speaker (pitch, vocal-tract length,
  rate, breathiness) is drawn from the generator too.
* ``"auto"``: ``"espeak"`` when ``espeakng-loader`` is importable, else ``"synthetic"``.

Both are deterministic for a given generator state. The clip's ``source`` names the engine and
the voice, for the record.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage, signal

from iasa_core.audio import AudioClip, resample

ENGINES = ("auto", "espeak", "synthetic")
ESPEAK_PACKAGE = "espeakng-loader"
_WORKER = Path(__file__).with_name("_espeak_worker.py")

_ACCENTS = ("en", "en-us", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us-nyc")
_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2",
             "klatt3", "Andy", "Annie", "anika", "belinda", "benjamin", "david", "edward", "ian", "linda",
             "max", "paul", "rob", "robert", "steph", "travis", "victor")
_SUBJECTS = ("I", "we", "you", "they", "she", "he", "my friend", "the team", "our neighbour", "everyone",
             "the teacher", "this model", "nobody", "the people here", "my brother", "the little dog")
_VERBS = ("think", "know", "said", "believe", "found", "wanted", "remember", "noticed", "explained", "decided",
          "showed", "told me", "wrote", "guessed", "promised", "forgot")
_OBJECTS = ("the weather was lovely", "the train left early", "this plan might work", "the colours look great",
            "the water is cold", "it takes a little time", "the garden needs some care", "the answer is simple",
            "the music was too loud", "we should try again", "the meeting starts at nine",
            "the bread is still warm", "nothing happened at all", "the road goes over the hill",
            "the story has a happy ending", "the old clock stopped", "a small boat crossed the river",
            "the numbers add up", "the light turned green", "everybody liked the idea")
_OPENERS = ("Well,", "So,", "Honestly,", "You know,", "Actually,", "Look,", "Yesterday", "Right,", "And then",
            "Of course", "")
_QUESTIONS = ("Do you see what I mean?", "Can you believe it?", "Where did you put the keys?",
              "Why not try it now?", "Is that really true?", "What do you think?", "Shall we go?")


def espeak_available() -> bool:
    """True when the optional ``espeakng-loader`` package (libespeak-ng + data) is importable."""
    try:
        import espeakng_loader  # noqa: F401
    except ImportError:
        return False
    return True


def _sentence(rng: np.random.Generator) -> str:
    if rng.uniform() < 0.15:
        return str(rng.choice(_QUESTIONS))
    opener = str(rng.choice(_OPENERS))
    body = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} that {rng.choice(_OBJECTS)}"
    if rng.uniform() < 0.35:
        body += f", and {rng.choice(_OBJECTS)}"
    text = f"{opener} {body}".strip()
    return text[0].upper() + text[1:] + str(rng.choice([".", ".", "!", "..."]))


def _espeak_clip(rng: np.random.Generator, seconds: float, sample_rate: int) -> AudioClip:
    try:
        import espeakng_loader
    except ImportError:
        raise RuntimeError(f"speech engine 'espeak' needs the optional package {ESPEAK_PACKAGE!r} "
                           f"(pip install {ESPEAK_PACKAGE}); or use engine='synthetic'") from None
    voice = f"{rng.choice(_ACCENTS)}+{rng.choice(_VARIANTS)}"
    rate = int(rng.integers(125, 205))       # words per minute
    pitch = int(rng.integers(20, 80))
    prange = int(rng.integers(25, 95))
    words_needed = seconds * rate / 60.0 * 1.4 + 4   # synthesise more than needed, then cut
    utterances, words = [], 0
    while words < words_needed:
        text = _sentence(rng)
        words += len(text.split())
        utterances.append({"text": text, "voice": voice, "rate": rate,
                           "pitch": int(np.clip(pitch + rng.integers(-6, 7), 0, 99)), "range": prange})
    job = {"library": espeakng_loader.get_library_path(), "data": espeakng_loader.get_data_path(),
           "seed": int(rng.integers(2**31 - 1)), "utterances": utterances}
    # -I: the worker needs only the standard library; isolation keeps user site hooks out.
    proc = subprocess.run([sys.executable, "-I", str(_WORKER)], input=json.dumps(job).encode(),
                          capture_output=True, timeout=300, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"eSpeak NG failed (exit {proc.returncode}): {proc.stderr.decode(errors='replace')}")
    buf = proc.stdout
    (src_rate,) = struct.unpack_from("<i", buf, 0)
    pos, pieces = 4, []
    n_total = int(round(seconds * sample_rate))
    lead = int(rng.uniform(0.0, 0.3) * sample_rate)
    pieces.append(np.zeros(lead, np.float32))
    for _ in utterances:
        (n,) = struct.unpack_from("<i", buf, pos)
        pcm = np.frombuffer(buf, dtype="<i2", count=n, offset=pos + 4).astype(np.float32) / 32768.0
        pos += 4 + 2 * n
        pieces.append(resample(pcm, src_rate, sample_rate).astype(np.float32))
        pieces.append(np.zeros(int(rng.uniform(0.1, 0.6) * sample_rate), np.float32))
    wave = np.concatenate(pieces)[:n_total]
    wave = np.pad(wave, (0, n_total - len(wave)))
    peak = float(np.abs(wave).max())
    if peak > 0:
        wave = wave * (rng.uniform(0.35, 0.9) / peak)
    _fade(wave, sample_rate)
    return AudioClip(wave[None].astype(np.float32), sample_rate,
                     f"espeak-ng voice={voice} rate={rate} pitch={pitch} range={prange}")


# ---------------------------------------------------------------------- built-in formant synthesizer

# F1, F2, F3 (Hz) of an adult male voice, roughly Peterson & Barney's averages; a speaker's
# vocal-tract length scales them all.
_VOWELS = np.array([
    (270, 2290, 3010), (390, 1990, 2550), (530, 1840, 2480), (660, 1720, 2410), (730, 1090, 2440),
    (570, 840, 2410), (440, 1020, 2240), (300, 870, 2240), (640, 1190, 2390), (490, 1350, 1690),
], dtype=np.float64)
_NASAL = (250.0, 1100.0, 2500.0)
_BANDWIDTHS = np.array([80.0, 110.0, 160.0])
# Consonant kinds: fricative noise bands (Hz) and plosives (closure + burst), nasals (voiced).
_FRICATIVES = {"s": (3500.0, 7500.0, 0.5), "sh": (1800.0, 5000.0, 0.45), "f": (1000.0, 7000.0, 0.2),
               "h": (400.0, 3000.0, 0.15)}
_CONSONANTS = ("s", "sh", "f", "h", "p", "t", "k", "m", "n", "l", "none")
_CONSONANT_P = np.array([0.12, 0.05, 0.06, 0.05, 0.08, 0.12, 0.08, 0.08, 0.1, 0.1, 0.16])


def _fade(x: np.ndarray, sr: int, seconds: float = 0.01) -> None:
    n = min(len(x) // 2, int(seconds * sr))
    if n > 0:
        ramp = np.linspace(0.0, 1.0, n, dtype=x.dtype)
        x[:n] *= ramp
        x[-n:] *= ramp[::-1]


def _smooth(x: np.ndarray, sigma: float, axis: int = 0) -> np.ndarray:
    """Gaussian-like smoothing in O(n) whatever the width: two box filters (a triangle kernel)."""
    size = max(1, int(round(1.7 * sigma)))
    y = ndimage.uniform_filter1d(x, size, axis=axis, mode="nearest")
    return ndimage.uniform_filter1d(y, size, axis=axis, mode="nearest")


def _synthetic_clip(rng: np.random.Generator, seconds: float, sr: int) -> AudioClip:
    n = int(round(seconds * sr))
    kind = rng.choice(3, p=[0.45, 0.45, 0.1])            # male, female, child-like
    f0_base = float(rng.uniform(*((85, 150), (165, 250), (240, 320))[kind]))
    tract = float(rng.uniform(*((0.92, 1.05), (1.08, 1.2), (1.18, 1.3))[kind]))  # formant scale
    syl_rate = float(rng.uniform(3.0, 6.5))               # syllables per second
    breath = float(rng.uniform(0.02, 0.25))
    tilt = float(rng.uniform(0.6, 1.4))                   # glottal source roll-off exponent
    accent = float(rng.uniform(0.08, 0.3))                # pitch accent size (fraction of f0)

    # Piecewise-constant targets per sample, smoothed afterwards into continuous tracks.
    voiced = np.zeros(n)
    formant = np.tile(_VOWELS[4] * tract, (n, 1))
    f0 = np.full(n, f0_base)
    noise_amp = {k: np.zeros(n) for k in (*_FRICATIVES, "burst")}
    t = int(rng.uniform(0.0, 0.35) * sr)
    prev_formant = formant[0].copy()
    while t < n:
        n_syl = int(rng.integers(3, 15))
        phrase_start = t
        phrase_len = n_syl / syl_rate
        for _ in range(n_syl):
            if t >= n:
                break
            stressed = rng.uniform() < 0.35
            cons = str(rng.choice(_CONSONANTS, p=_CONSONANT_P / _CONSONANT_P.sum()))
            period = rng.uniform(0.7, 1.3) / syl_rate * (1.25 if stressed else 1.0)
            c_len = 0 if cons == "none" else int(rng.uniform(0.18, 0.35) * period * sr)
            v_len = max(int(period * sr) - c_len, int(0.04 * sr))
            loud = rng.uniform(0.55, 0.8) * (1.3 if stressed else 1.0)
            a, b = t, min(n, t + c_len)
            if cons in _FRICATIVES:
                noise_amp[cons][a:b] = loud * _FRICATIVES[cons][2] / 0.5
            elif cons in ("p", "t", "k"):
                closure = a + (b - a) * 2 // 3          # silence, then a short burst
                noise_amp["burst"][closure:b] = loud * 0.8
            elif cons in ("m", "n", "l"):
                voiced[a:b] = loud * (0.35 if cons != "l" else 0.6)
                formant[a:b] = np.asarray(_NASAL) * tract if cons != "l" else (360, 1300, 2700)
            vowel = _VOWELS[rng.integers(len(_VOWELS))] * tract
            a, b = min(n, t + c_len), min(n, t + c_len + v_len)
            voiced[a:b] = np.maximum(voiced[a:b], loud)
            # Diphthong-ish: the vowel glides from the previous vowel's colour towards its own.
            glide = np.linspace(0.0, 1.0, max(b - a, 1))[:, None] ** 0.3
            formant[a:b] = prev_formant + (vowel - prev_formant) * glide[: b - a]
            prev_formant = vowel
            # Pitch: declination over the phrase plus an accent on stressed syllables.
            pos = (t - phrase_start) / sr / max(phrase_len, 1e-3)
            level = f0_base * (1.12 - 0.24 * pos) * (1 + (accent if stressed else 0.0) * rng.uniform(0.5, 1.0))
            f0[t:b] = level
            t = b
            if rng.uniform() < 0.15:                    # a short gap between words
                t += int(rng.uniform(0.02, 0.08) * sr)
        f0[min(t, n - 1):] = f0_base
        t += int(rng.uniform(0.15, 0.7) * sr)           # pause between phrases

    ms = sr / 1000.0
    voiced = _smooth(voiced, 12 * ms)
    formant = _smooth(formant, 15 * ms, axis=0)
    f0 = _smooth(f0, 40 * ms)
    tt = np.arange(n) / sr
    f0 = f0 * (1 + 0.015 * np.sin(2 * np.pi * rng.uniform(4.5, 6.5) * tt + rng.uniform(0, 6.3))
               + 0.01 * _smooth(rng.standard_normal(n), 20 * ms) * np.sqrt(40 * ms))
    phase = 2 * np.pi * np.cumsum(f0) / sr

    # Voiced part: harmonics shaped by a cascade of three formant resonances and a source tilt.
    # Gains change slowly: compute them every 4 ms and interpolate (most of the cost otherwise).
    out = np.zeros(n)
    hop = max(1, int(0.004 * sr))
    ctrl = np.arange(0, n, hop)
    f0_c, form_c = f0[ctrl], formant[ctrl]
    bw = _BANDWIDTHS * tract
    samples = np.arange(n)
    for k in range(1, int(0.45 * sr / f0.min()) + 1):
        fk = k * f0_c
        gain = np.full(len(ctrl), float(k) ** -tilt)
        for i in range(3):
            r = fk / form_c[:, i]
            gain /= np.sqrt((1 - r * r) ** 2 + (fk * bw[i] / form_c[:, i] ** 2) ** 2)
        gain[fk > 0.45 * sr] = 0.0                      # no aliasing above the Nyquist margin
        out += np.interp(samples, ctrl, gain) * np.sin(k * phase)
    out /= max(float(np.abs(out).max()), 1e-9)
    white = rng.standard_normal(n)
    low = signal.sosfilt(signal.butter(2, min(3000.0, 0.45 * sr), fs=sr, output="sos"), white)
    wave = voiced * ((1 - breath) * out + breath * 0.5 * low)
    for name, amp in noise_amp.items():
        if not amp.any():
            continue
        lo, hi = (1200.0, 0.45 * sr) if name == "burst" else _FRICATIVES[name][:2]
        sos = signal.butter(2, [lo, min(hi, 0.45 * sr)], btype="band", fs=sr, output="sos")
        band = signal.sosfilt(sos, white)
        band /= max(float(np.abs(band).max()), 1e-9)
        wave += _smooth(amp, 4 * ms) * 0.5 * band
    peak = float(np.abs(wave).max())
    if peak > 0:
        wave = wave * (rng.uniform(0.35, 0.9) / peak)
    wave = wave.astype(np.float32)
    _fade(wave, sr)
    voice = ("male", "female", "child")[kind]
    return AudioClip(wave[None], sr, f"synthetic voice={voice} f0={f0_base:.0f}Hz rate={syl_rate:.1f}syl/s")


def speech_clip(rng: np.random.Generator, seconds: float, sample_rate: int = 16000,
                engine: str = "auto") -> AudioClip:
    """Mono speech of exactly round(seconds * sample_rate) samples from a random speaker."""
    if engine not in ENGINES:
        raise ValueError(f"speech_clip: engine must be one of {ENGINES}, got {engine!r}")
    if not seconds > 0:
        raise ValueError(f"speech_clip: seconds must be positive, got {seconds}")
    if int(sample_rate) < 8000:
        raise ValueError(f"speech_clip: sample_rate must be at least 8000, got {sample_rate}")
    if engine == "auto":
        engine = "espeak" if espeak_available() else "synthetic"
    if engine == "espeak":
        return _espeak_clip(rng, float(seconds), int(sample_rate))
    return _synthetic_clip(rng, float(seconds), int(sample_rate))
