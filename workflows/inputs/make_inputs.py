"""Make the small inputs that the default IASA workflows load (deterministic).

    python workflows/inputs/make_inputs.py [--out workflows/inputs]

Writes
  iasa_speaker.png         256x256 synthetic person (head and shoulders, arms) drawn with PIL shapes
  iasa_speaker_pose.json   its POSE_KEYPOINT (one frame, pixels, "fps" key), the same keypoints
                           the drawing was made from
  iasa_speaker_motion.json 33 frames (1.3 s at 25 fps) of that person talking and gesturing, starting
                           from the same pose (coordinates rounded to 0.1 px to keep it small); the
                           mask preview workflow shows the sparse attention plan of these
  iasa_speech.wav          3 s, 16 kHz mono 16-bit, speech-like: a harmonic voice with a wandering
                           pitch, syllable-rate loudness and two pauses

Copy these files into ComfyUI/input (or upload them) before running the workflows.
Running the script twice gives byte-identical files.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import wave

import numpy as np
from PIL import Image, ImageDraw

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from iasa_core.pose import layout as L  # noqa: E402
from iasa_core.pose.sequence import PoseSequence  # noqa: E402
from iasa_core.pose.synthetic import synthetic_keypoints  # noqa: E402

SIZE = 256
FPS = 25.0
SAMPLE_RATE = 16000
SECONDS = 3.0

IMAGE_NAME = "iasa_speaker.png"
POSE_NAME = "iasa_speaker_pose.json"
MOTION_NAME = "iasa_speaker_motion.json"
MOTION_FRAMES = 33  # 4n + 1 frames: 9 latent frames for the Wan VAE
AUDIO_NAME = "iasa_speech.wav"

SKIN = (233, 190, 160)
SKIN_SHADE = (214, 168, 138)
HAIR = (66, 44, 32)
SHIRT = (52, 98, 160)
SHIRT_SHADE = (42, 80, 134)
SEAM = (24, 44, 78)
EYE = (40, 30, 30)
LIPS = (170, 80, 80)
MOUTH = (90, 30, 35)


def speaker_keypoints() -> np.ndarray:
    """(133, 3) keypoints of the speaker in pixels on a SIZE x SIZE canvas."""
    return synthetic_keypoints(1, SIZE, SIZE, seed=0, fps=FPS)[0]


def speaker_motion() -> list[dict]:
    """POSE_KEYPOINT of the speaker moving (first frame = :func:`speaker_keypoints`), 0.1 px precision."""
    kp = synthetic_keypoints(MOTION_FRAMES, SIZE, SIZE, seed=0, fps=FPS)
    frames = PoseSequence(keypoints=kp, height=SIZE, width=SIZE, fps=FPS).to_pose_keypoint()
    for frame in frames:
        for person in frame["people"]:
            for key, values in person.items():
                if isinstance(values, list):
                    person[key] = [round(v, 1) if i % 3 < 2 else round(v, 3) for i, v in enumerate(values)]
        frame["fps"] = FPS
    return frames


def _background(size: int) -> Image.Image:
    """A soft vertical gradient (studio wall) with a faint floor band."""
    y = np.linspace(0.0, 1.0, size)[:, None, None]
    top = np.array([206, 214, 222], dtype=np.float64)
    bottom = np.array([160, 172, 186], dtype=np.float64)
    rgb = top * (1 - y) + bottom * y
    rgb = np.broadcast_to(rgb, (size, size, 3))
    return Image.fromarray(np.round(rgb).astype(np.uint8), "RGB")


def _pt(kp: np.ndarray, i: int) -> tuple[float, float]:
    return float(kp[i, 0]), float(kp[i, 1])


def _line(draw: ImageDraw.ImageDraw, a, b, width: int, color) -> None:
    draw.line([a, b], fill=color, width=width)
    r = width / 2.0
    for x, y in (a, b):
        draw.ellipse([x - r, y - r, x + r, y + r], fill=color)


def draw_speaker(kp: np.ndarray, size: int = SIZE) -> Image.Image:
    """Draw head, neck, torso, arms and hands where the keypoints put them."""
    img = _background(size)
    d = ImageDraw.Draw(img)
    s = float(size)

    l_sho, r_sho = np.array(_pt(kp, L.L_SHOULDER)), np.array(_pt(kp, L.R_SHOULDER))
    l_hip, r_hip = np.array(_pt(kp, L.L_HIP)), np.array(_pt(kp, L.R_HIP))
    neck = (l_sho + r_sho) / 2.0

    # Torso: shoulders widened a little, down to the hips (below the frame).
    out = (l_sho - r_sho) / np.linalg.norm(l_sho - r_sho)
    torso = [tuple(r_sho - out * 0.03 * s), tuple(l_sho + out * 0.03 * s),
             tuple(l_hip + out * 0.04 * s), tuple(r_hip - out * 0.04 * s)]
    d.polygon(torso, fill=SHIRT)
    # Collar: a V of skin at the neck.
    d.polygon([tuple(neck + [-0.05 * s, -0.01 * s]), tuple(neck + [0.05 * s, -0.01 * s]),
               tuple(neck + [0.0, 0.07 * s])], fill=SKIN_SHADE)

    # Neck from the collar up to the chin.
    face = kp[L.FACE[0]:L.FACE[-1] + 1, :2]
    chin = face[8]
    _line(d, tuple(neck), (float(chin[0]), float(chin[1]) - 0.02 * s), int(0.07 * s), SKIN_SHADE)

    # Arms: sleeve from shoulder to elbow, forearm to wrist.
    for sho, elb, wri in ((L.L_SHOULDER, L.L_ELBOW, L.L_WRIST), (L.R_SHOULDER, L.R_ELBOW, L.R_WRIST)):
        segments = []
        if kp[elb, 2] > 0:
            segments.append((_pt(kp, sho), _pt(kp, elb), int(0.075 * s)))
        if kp[elb, 2] > 0 and kp[wri, 2] > 0:
            segments.append((_pt(kp, elb), _pt(kp, wri), int(0.06 * s)))
        for a, b, w in segments:  # a dark outline first so the sleeves stand out from the shirt
            _line(d, a, b, w + 4, SEAM)
        for a, b, w in segments:
            _line(d, a, b, w, SHIRT_SHADE)

    # Hands: palm disc plus a stroke per finger.
    for hand in (L.LEFT_HAND, L.RIGHT_HAND):
        pts = kp[hand[0]:hand[-1] + 1]
        if not (pts[:, 2] > 0).any():
            continue
        w = pts[0, :2]
        palm = pts[[0, 5, 9, 13, 17], :2].mean(0)
        r = 0.035 * s
        d.ellipse([palm[0] - r, palm[1] - r, palm[0] + r, palm[1] + r], fill=SKIN)
        _line(d, (float(w[0]), float(w[1])), (float(palm[0]), float(palm[1])), int(0.04 * s), SKIN)
        for f in range(5):
            chain = pts[1 + 4 * f:5 + 4 * f]
            prev = palm if f else w
            for p in chain:
                if p[2] > 0:
                    _line(d, (float(prev[0]), float(prev[1])), (float(p[0]), float(p[1])),
                          max(2, int(0.014 * s)), SKIN)
                    prev = p[:2]

    # Head: hair behind, face ellipse over the jaw points, ears.
    jaw = face[0:17]
    x0, x1 = float(jaw[:, 0].min()), float(jaw[:, 0].max())
    y_chin = float(jaw[:, 1].max())
    brow_y = float(face[17:27, 1].min())
    top = brow_y - 0.07 * s
    d.ellipse([x0 - 0.02 * s, top - 0.03 * s, x1 + 0.02 * s, y_chin - 0.03 * s], fill=HAIR)
    for ear in (L.L_EAR, L.R_EAR):
        ex, ey = _pt(kp, ear)
        r = 0.022 * s
        d.ellipse([ex - r, ey - 1.4 * r, ex + r, ey + 1.4 * r], fill=SKIN_SHADE)
    d.ellipse([x0, top + 0.02 * s, x1, y_chin], fill=SKIN)
    d.chord([x0 - 0.005 * s, top - 0.01 * s, x1 + 0.005 * s, brow_y + 0.06 * s], 180, 360, fill=HAIR)

    # Brows, eyes, nose, mouth from the 68 face landmarks.
    for a, b in ((17, 22), (22, 27)):
        d.line([tuple(map(float, p)) for p in face[a:b]], fill=HAIR, width=max(2, int(0.01 * s)))
    for a, b in ((36, 42), (42, 48)):
        d.polygon([tuple(map(float, p)) for p in face[a:b]], fill=EYE)
    d.line([tuple(map(float, p)) for p in face[27:31]], fill=SKIN_SHADE, width=max(2, int(0.008 * s)))
    d.line([tuple(map(float, p)) for p in face[31:36]], fill=SKIN_SHADE, width=max(2, int(0.008 * s)))
    d.polygon([tuple(map(float, p)) for p in face[48:60]], fill=LIPS)
    d.polygon([tuple(map(float, p)) for p in face[60:68]], fill=MOUTH)
    return img


def speech_wave(seconds: float = SECONDS, sr: int = SAMPLE_RATE) -> np.ndarray:
    """A speech-like mono signal in [-1, 1]: voiced harmonics, syllables, pauses."""
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    rng = np.random.default_rng(20240611)

    # Pitch: a falling declination per phrase with a slow wobble (around 130 Hz, a male voice).
    f0 = 135.0 - 12.0 * (t % 1.4) / 1.4 + 8.0 * np.sin(2 * np.pi * 1.7 * t) + 3.0 * np.sin(2 * np.pi * 5.3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voiced = np.zeros(n)
    for k in range(1, 16):  # harmonics with a vowel-like spectral envelope (formants near 700 and 1200 Hz)
        fk = k * 135.0
        gain = (1.0 / k) * (1.0 + 1.5 * np.exp(-((fk - 700.0) / 250.0) ** 2)
                            + 1.0 * np.exp(-((fk - 1200.0) / 300.0) ** 2))
        voiced += gain * np.sin(k * phase)
    voiced /= np.abs(voiced).max()

    # Syllables: about 4.5 per second, each a raised-cosine bump with its own loudness.
    env = np.zeros(n)
    syl_rate = 4.5
    starts = np.arange(0.08, seconds, 1.0 / syl_rate)
    for s0 in starts:
        dur = 0.16 + 0.05 * rng.random()
        amp = 0.55 + 0.45 * rng.random()
        i0, i1 = int(s0 * sr), min(n, int((s0 + dur) * sr))
        if i1 <= i0:
            continue
        u = np.linspace(0.0, 1.0, i1 - i0)
        env[i0:i1] = np.maximum(env[i0:i1], amp * np.sin(np.pi * u) ** 2)

    # Pauses between phrases.
    for p0, p1 in ((1.05, 1.40), (2.25, 2.50)):
        env[int(p0 * sr):int(p1 * sr)] = 0.0

    # A little breath noise at the onsets keeps it from sounding like a pure organ tone.
    noise = rng.standard_normal(n)
    noise = np.convolve(noise, np.ones(8) / 8.0, mode="same")
    signal = env * (0.85 * voiced + 0.08 * noise)
    fade = int(0.01 * sr)
    signal[:fade] *= np.linspace(0, 1, fade)
    signal[-fade:] *= np.linspace(1, 0, fade)
    return 0.7 * signal / np.abs(signal).max()


def write_wav(path: str, signal: np.ndarray, sr: int = SAMPLE_RATE) -> None:
    pcm = np.round(np.clip(signal, -1.0, 1.0) * 32767.0).astype("<i2")
    with wave.open(path, "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(sr)
        wf.writeframes(pcm.tobytes())


def make_inputs(out_dir: str = HERE) -> list[str]:
    """Write the three input files into ``out_dir``; return their paths."""
    os.makedirs(out_dir, exist_ok=True)
    kp = speaker_keypoints()

    image_path = os.path.join(out_dir, IMAGE_NAME)
    draw_speaker(kp).save(image_path, format="PNG", optimize=True)

    pose_path = os.path.join(out_dir, POSE_NAME)
    PoseSequence(keypoints=kp[None], height=SIZE, width=SIZE, fps=FPS).save_json(pose_path)

    motion_path = os.path.join(out_dir, MOTION_NAME)
    with open(motion_path, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(speaker_motion(), separators=(",", ":")))

    audio_path = os.path.join(out_dir, AUDIO_NAME)
    write_wav(audio_path, speech_wave())
    return [image_path, pose_path, motion_path, audio_path]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=HERE, help="folder to write into (default: this folder)")
    args = parser.parse_args(argv)
    for path in make_inputs(args.out):
        print(f"{path}  {os.path.getsize(path)} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
