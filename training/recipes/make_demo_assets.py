"""Write the demo's bundled inputs (iasa_core/assets): a 5-second speech clip and a character image with its pose.

    python -m training.recipes.make_demo_assets [--out iasa_core/assets]

Both come from the synthetic world with a seed the embedded models were not trained on; the voice is the
built-in formant synthesizer (no eSpeak), so the files are ours to ship.
"""

from __future__ import annotations

import argparse
import sys
import wave
from pathlib import Path

import numpy as np
from PIL import Image

from iasa_core.pose.sequence import PoseSequence
from iasa_core.synthetic import make_sample

DEMO_SEED = 2026
DEMO_INDEX = 3


def write_wav(path: Path, mono: np.ndarray, rate: int) -> None:
    """16-bit PCM mono WAV."""
    pcm = np.clip(np.round(mono * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(pcm.tobytes())


def main(argv: list[str] | None = None) -> int:
    """CLI."""
    p = argparse.ArgumentParser(prog="python -m training.recipes.make_demo_assets", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="iasa_core/assets")
    p.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sample = make_sample(DEMO_SEED, DEMO_INDEX, 5.0, (args.size, args.size), 25.0, engine="synthetic",
                         gesture_fraction=0.0)
    write_wav(out / "demo_speech.wav", sample.audio.mono(16000), 16000)
    Image.fromarray(sample.frames[0]).save(out / "demo_character.png", optimize=True)
    PoseSequence(sample.poses.keypoints[:1], args.size, args.size, 25.0).save_json(out / "demo_character_pose.json")
    print(f"wrote demo_speech.wav ({sample.audio.duration:.1f} s), demo_character.png ({args.size}x{args.size}) and "
          f"demo_character_pose.json to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
