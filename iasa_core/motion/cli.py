"""`python -m iasa_core motion --audio A --ref-poses P.json | --ref-image I --method procedural --out poses.json`."""

from __future__ import annotations

import argparse
import time


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the `motion` sub-command."""
    p = subparsers.add_parser("motion", help="speech audio -> pose sequence of the reference person (JSON)",
                              description="Turn speech into WholeBody poses aligned to the person in the "
                                          "reference image (procedural: no weights needed; emage: EMAGE + SMPL-X).")
    p.add_argument("--audio", required=True, help="speech (wav, mp3, flac, ogg, m4a, ...)")
    ref = p.add_mutually_exclusive_group(required=True)
    ref.add_argument("--ref-image", help="reference photo; its pose is found with DWPose (needs its weights)")
    ref.add_argument("--ref-poses", help="POSE_KEYPOINT JSON whose first frame is the reference pose")
    p.add_argument("--method", choices=("procedural", "emage"), default="procedural",
                   help="procedural (default, no weights) or emage (EMAGE weights + your SMPL-X model file)")
    p.add_argument("--fps", type=float, default=25.0, help="pose frame rate (default 25)")
    p.add_argument("--seed", type=int, default=0, help="seed of the procedural gestures and blinks")
    p.add_argument("--out", required=True, help="output POSE_KEYPOINT JSON")
    p.add_argument("--emage-model", help="folder with EMAGE's config.json + pytorch_model.bin (or an HF repo id)")
    p.add_argument("--smplx", help="SMPLX_NEUTRAL_2020.npz or its folder (see the error message for where to put it)")
    p.add_argument("--models", action="append", default=[], help="folder to look for DWPose weights in; repeatable")
    p.add_argument("--download", action="store_true", help="allow downloads from the HF hub")
    p.add_argument("--max-seconds", type=float, default=600.0, help="refuse longer audio (default 600 s)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Check every input and the output path, load audio and the reference pose, make the motion, write JSON."""
    from .. import validate
    from ..audio import load_audio
    from ..output_paths import output_file
    from ..pose.cli_poses import load_poses_arg
    from .from_audio import poses_from_audio

    out = output_file(args.out, "--out", kind="poses JSON", example="poses.json",
                      inputs=(args.audio, args.ref_poses, args.ref_image))
    fps = validate.fps(args.fps, "--fps")
    max_seconds = validate.finite(args.max_seconds, "--max-seconds", above=0.0)
    seed = validate.seed(args.seed, "--seed")
    clip = load_audio(args.audio, max_seconds=max_seconds, name="--audio", limit_name="--max-seconds")
    validate.audio_length(clip.duration, f"--audio {args.audio}")
    if args.ref_poses:
        ref_seq = load_poses_arg(args.ref_poses, "--ref-poses")
        reference, height, width = ref_seq.keypoints[0], ref_seq.height, ref_seq.width
    else:
        from ..detect.dwpose import DWPoseDetector
        from ..media import load_image

        image = load_image(args.ref_image, name="--ref-image")
        validate.reference_image(image.shape, f"--ref-image {args.ref_image}")
        detector = DWPoseDetector.from_search(args.models, allow_download=args.download)
        reference = detector.detect(image, name=args.ref_image)
        height, width = image.shape[:2]
    t0 = time.perf_counter()
    seq = poses_from_audio(clip, reference, height, width, method=args.method, fps=fps, seed=seed,
                           emage_model=args.emage_model, smplx_model=args.smplx, search_dirs=args.models,
                           allow_download=args.download)
    seconds = time.perf_counter() - t0
    seq.save_json(out)
    print(f"wrote {out}: {len(seq)} frames at {seq.fps:g} fps on a {width}x{height} canvas "
          f"({args.method}, {clip.duration:.1f} s of audio -> motion in {seconds:.2f} s)")
    return 0
