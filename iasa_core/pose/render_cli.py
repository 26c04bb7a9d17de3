"""`python -m iasa_core render-poses poses.json --out poses.mp4`: skeleton video or PNG frames."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the `render-poses` sub-command on an argparse sub-parsers object."""
    p = subparsers.add_parser(
        "render-poses", help="draw POSE_KEYPOINT JSON as skeleton images (mp4 or a folder of PNGs)",
        description="Draw poses as OpenPose-style skeleton images, the pose conditioning of stage 2.")
    p.add_argument("poses", help="POSE_KEYPOINT JSON (one dict per video frame, e.g. from `motion` or DWPose)")
    p.add_argument("--out", required=True,
                   help="output .mp4 (H.264), or a folder to write frame_00000.png ... into")
    p.add_argument("--size", help="image size HxW, e.g. 512x512 (default: the poses' canvas)")
    p.add_argument("--fps", type=float, help="video frame rate (default: the poses' fps)")
    p.add_argument("--face", action="store_true", help="draw the 68 face points (UniAnimate's images have none)")
    p.add_argument("--mouth", action="store_true",
                   help="draw the mouth's opening as a patch that brightens as the mouth opens")
    p.add_argument("--no-hands", action="store_true", help="leave the hands out")
    p.add_argument("--bgr", action="store_true",
                   help="swap red and blue, as the images UniAnimate-trained weights were trained on")
    p.add_argument("--min-score", type=float, default=0.3, help="draw points with at least this score (default 0.3)")
    p.set_defaults(func=run)
    return p


def _parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().replace("*", "x").split("x"))
    except ValueError:
        raise ValueError(f"--size must look like HxW, e.g. 512x512; got {text!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"--size must be positive, got {text!r}")
    return h, w


def run(args) -> int:
    """Render the poses file given on the command line; returns 0 (errors raise ValueError etc.)."""
    from .. import validate
    from ..output_paths import VIDEO_SUFFIXES, output_folder, output_video
    from .cli_poses import load_poses_arg
    from .render import RenderStyle, render_poses

    size = _parse_size(args.size) if args.size else None
    if args.fps is not None:
        validate.fps(args.fps, "--fps")
    validate.finite(args.min_score, "--min-score", low=0.0)
    out = Path(args.out)
    is_video = out.suffix.lower() in VIDEO_SUFFIXES
    if not is_video and out.suffix and not out.is_dir():
        raise ValueError(f"--out {args.out}: expected a video file ({', '.join(VIDEO_SUFFIXES)}; written as H.264 "
                         f"MP4) or a folder for PNG frames (a name without an extension)")
    out = output_video(out, "--out", inputs=(args.poses,)) if is_video else output_folder(out, "--out")

    seq = load_poses_arg(args.poses, "poses")
    if args.fps is None:
        validate.fps(seq.fps, f"the fps stored in {args.poses} (or give --fps)")
    h, w = size or (seq.height, seq.width)
    style = RenderStyle(hands=not args.no_hands, face=args.face, mouth=args.mouth, min_score=args.min_score,
                        bgr=args.bgr)
    frames = render_poses(seq, h, w, style)
    fps = args.fps if args.fps is not None else seq.fps

    if is_video:
        from ..media import write_video

        write_video(out, frames, fps)
        where = f"{out} ({fps:g} fps)"
    else:
        from PIL import Image

        out.mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(frames):
            Image.fromarray(frame).save(out / f"frame_{i:05d}.png")
        where = f"{out}{os.sep}frame_00000.png ... frame_{len(frames) - 1:05d}.png"
    colours = "BGR" if args.bgr else "RGB"
    print(f"{len(frames)} pose frames at {h}x{w} ({colours}) written to {where}")
    return 0
