"""`python -m iasa_core pose`: DWPose keypoints of an image and/or a video as POSE_KEYPOINT JSON."""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from .dwpose import CHOICES, DWPoseDetector, find_dwpose_files


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the `pose` sub-command on an argparse subparsers object."""
    p = subparsers.add_parser(
        "pose", help="DWPose keypoints of a photo and/or a video -> POSE_KEYPOINT JSON",
        description="Detect one person's COCO-WholeBody keypoints with DWPose and write them as "
                    "POSE_KEYPOINT JSON (one dict per frame, pixels, with an 'fps' key).")
    p.add_argument("--image", help="a photo: writes one frame")
    p.add_argument("--video", help="a video: writes every frame at the video's fps")
    p.add_argument("--out", required=True, help="output JSON (the video's poses when --video is given)")
    p.add_argument("--image-out", help="with both --image and --video: where the photo's pose goes "
                                       "(default: OUT with _image before .json)")
    p.add_argument("--models", action="append", default=[], metavar="DIR",
                   help="folder holding yolox_l.onnx and dw-ll_ucoco_384.onnx (or the TorchScript "
                        "files); repeatable; the Hugging Face cache is searched after these")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="default cpu")
    p.add_argument("--download", action="store_true",
                   help="download missing weights from Hugging Face (into the first --models folder)")
    p.add_argument("--prefer", choices=("onnx", "torchscript"), help="file format to look for first")
    p.add_argument("--choose", choices=CHOICES, default="largest",
                   help="which person when several are found (default largest)")
    p.set_defaults(func=run)
    return p


def _read_image(path: str) -> np.ndarray:
    """The photo through the shared loader: EXIF rotation, transparency on white, clear errors for bad files."""
    from ..media import load_image

    return load_image(path, name="--image")


def _read_video(path: str) -> tuple[np.ndarray, float]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such video")
    from iasa_core.media import read_video

    frames, fps = read_video(path)
    return np.asarray(frames), float(fps)


def _image_out(out: str) -> str:
    root, ext = os.path.splitext(out)
    return f"{root}_image{ext or '.json'}"


def run(args) -> int:
    """Detect and write the JSON; errors are raised (the CLI prints them as one line)."""
    from ..output_paths import output_file
    from ..pose.sequence import PoseSequence

    if not args.image and not args.video:
        raise ValueError("give --image PHOTO and/or --video VIDEO")
    for flag, path in (("--image", args.image), ("--video", args.video)):
        if path and not os.path.isfile(path):
            raise FileNotFoundError(f"{flag} {path}: no such file")
    inputs = (args.image, args.video)
    out = output_file(args.out, "--out", kind="poses JSON", example="poses.json", inputs=inputs)
    image_target = None
    if args.image:
        image_target = out if not args.video else output_file(
            getattr(args, "image_out", None) or _image_out(args.out), "--image-out", kind="poses JSON",
            example="image_poses.json", inputs=inputs)
        if args.video and image_target == out:
            raise ValueError(f"--image-out {image_target} is --out too; the photo's and the video's poses need "
                             "two files")
    img = _read_image(args.image) if args.image else None  # read (and refused if bad) before the weights load
    models = list(args.models or [])
    det_path, pose_path = find_dwpose_files(models, allow_download=args.download,
                                            prefer=getattr(args, "prefer", None), device=args.device,
                                            download_dir=models[0] if models else None,
                                            download_hint="or pass --download to fetch them")
    detector = DWPoseDetector.from_files(det_path, pose_path, device=args.device, choose=args.choose)
    print(f"DWPose: {os.path.basename(det_path)} + {os.path.basename(pose_path)} on {args.device}")

    written = []
    if img is not None:
        kp = detector.detect(img, name=args.image)
        PoseSequence(kp[None], img.shape[0], img.shape[1], fps=25.0).save_json(image_target)
        written.append((image_target, 1, img.shape[0], img.shape[1]))
    if args.video:
        frames, fps = _read_video(args.video)
        total = len(frames)
        step = max(1, total // 10)

        def progress(done: int, n: int) -> None:
            if done % step == 0 or done == n:
                print(f"  frame {done}/{n}", file=sys.stderr)

        kps = detector.detect_video(frames, progress=progress, name=args.video)
        PoseSequence(kps, frames.shape[1], frames.shape[2], fps=fps).save_json(out)
        written.append((out, total, frames.shape[1], frames.shape[2]))
    for path, n, h, w in written:
        print(f"wrote {n} frame{'s' if n != 1 else ''} of keypoints ({w}x{h}) to {path}")
    return 0
