"""CLI: write a synthetic talking-character world.

    python -m iasa_core.synthetic --out DIR --videos N --seconds S --size 128 [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time

from .character import DEFAULT_SUPERSAMPLE
from .speech import ENGINES, espeak_available
from .world import make_world


def _size(text: str) -> tuple[int, int]:
    """"128" -> (128, 128); "128x160" -> (H, W) = (128, 160)."""
    parts = text.lower().split("x")
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SIZE or HxW in pixels, got {text!r}") from None
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2 or min(vals) < 16:
        raise argparse.ArgumentTypeError(f"expected SIZE or HxW of at least 16 pixels, got {text!r}")
    return vals[0], vals[1]


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, make the world, print one line per video."""
    parser = argparse.ArgumentParser(prog="python -m iasa_core.synthetic", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder to write videos/, keypoints/ and world.json into")
    parser.add_argument("--videos", type=int, required=True, help="number of videos")
    parser.add_argument("--seconds", type=float, required=True, help="length of each video")
    parser.add_argument("--size", type=_size, default=(128, 128), help="SIZE or HxW (default 128)")
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--engine", choices=ENGINES, default="auto",
                        help="speech: espeak (needs pip install espeakng-loader), synthetic, or auto")
    parser.add_argument("--gesture-fraction", type=float, default=0.3,
                        help="share of videos with random gestures instead of speech-driven arm motion")
    parser.add_argument("--supersample", type=int, default=DEFAULT_SUPERSAMPLE,
                        help="anti-aliasing factor of the renderer")
    parser.add_argument("--lossy", action="store_true",
                        help="write ordinary lossy mp4 (any player shows it) instead of the exact frames (lossless "
                             "RGB H.264, for training)")
    args = parser.parse_args(argv)
    engine = args.engine
    if engine == "auto":
        engine = "espeak" if espeak_available() else "synthetic"
        print(f"speech engine: {engine}" + ("" if engine == "espeak" else
                                            " (pip install espeakng-loader for real text-to-speech)"))
    start = time.perf_counter()

    def progress(i: int, n: int, rec: dict) -> None:
        print(f"[{i + 1}/{n}] {rec['id']}  {rec['frames']} frames  {rec['kind']:<7}  {rec['audio']}  "
              f"{rec['seconds_to_make']:.2f}s", flush=True)

    try:
        records = make_world(args.out, args.videos, args.seconds, args.size, args.fps, args.seed,
                             engine=engine, gesture_fraction=args.gesture_fraction,
                             supersample=args.supersample, progress=progress, lossless=not args.lossy)
    except (ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(records)} videos to {args.out} in {time.perf_counter() - start:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
