"""`python -m training.prepare`: talking videos -> a training dataset of filtered, cropped clips.

Thin command-line wrapper over ``training.data.prepare_dataset``; see ``training/data/store.py`` for
the dataset layout and ``training.data.ClipDataset`` for reading it back.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from iasa_core.detect import filter as F

from .data.options import PrepareError, PrepareOptions

EPILOG = """\
Layout of DATASET: dataset.json (options), shards/<video>.safetensors (per clip c<j>: frames uint8
(T,H,W,3), keypoints float32 (T,133,3) in the clip's pixels, labels uint8 (T,H,W) 0 background,
1 face, 2 hands, 3 arms, 4 body, audio float32 mono), manifest.jsonl (one line per clip),
progress.jsonl (one line per finished video), report.json (what was kept and dropped, and why).
Re-running the same command resumes: finished videos are skipped. Read it with
training.data.ClipDataset(DATASET).
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (every flag documented in --help)."""
    p = argparse.ArgumentParser(
        prog="python -m training.prepare",
        description="Cut talking videos (with audio) into training clips: DWPose keypoints per frame, the "
                    "paper's filter (face > 0.9, upper body > 0.8, >= 90 %% of upper-body points visible), "
                    "runs of kept frames cut into clips, one crop per clip around face, upper body and "
                    "hands, region masks and 16 kHz audio, written as safetensors shards with a manifest.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    d = PrepareOptions()
    io = p.add_argument_group("input and output")
    io.add_argument("--videos", required=True, metavar="DIR",
                    help="folder of talking videos (.mp4 .mov .mkv .webm .avi), searched recursively")
    io.add_argument("--out", required=True, metavar="DATASET",
                    help="dataset folder; created, or resumed when it holds a dataset made with the same options")
    io.add_argument("--keypoints", metavar="DIR",
                    help="use these keypoints instead of DWPose: POSE_KEYPOINT JSON per video, named "
                         "<relative path without extension>.json or <video stem>.json, one entry per "
                         "video frame on the video's canvas (what `python -m iasa_core pose --video` writes)")
    io.add_argument("--dwpose-dir", action="append", default=[], metavar="DIR",
                    help="folder holding yolox_l.onnx and dw-ll_ucoco_384.onnx (or their TorchScript "
                         "versions); repeatable; the Hugging Face cache is searched after these")
    io.add_argument("--download", action="store_true",
                    help="download missing DWPose weights from Hugging Face (into the first --dwpose-dir)")
    io.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where DWPose runs (default cpu)")
    clip = p.add_argument_group("clips")
    clip.add_argument("--size", type=int, nargs="+", default=[d.height], metavar="PX",
                      help=f"clip frame size: one number for a square, or HEIGHT WIDTH; multiples of 16 "
                           f"(default {d.height})")
    clip.add_argument("--fps", type=float, default=d.fps,
                      help=f"frame rate of the clips; sources are resampled to it (nearest frame) (default {d.fps:g})")
    clip.add_argument("--frames", type=int, default=d.frames,
                      help=f"frames per clip, 4n+1 as Wan's VAE needs (default {d.frames})")
    clip.add_argument("--stride", type=int,
                      help="frames between the starts of clips cut from one run of kept frames "
                           "(default: --frames, i.e. no overlap)")
    clip.add_argument("--max-clips-per-video", type=int, metavar="N",
                      help="at most N clips per video, spread evenly over it (default: no limit)")
    clip.add_argument("--margin", type=float, default=d.margin,
                      help=f"crop side over the side of the box around face, upper body and hands "
                           f"(default {d.margin:g}; shrinks towards 1 where the frame is too small)")
    clip.add_argument("--label-stride", type=int, metavar="PX",
                      help="region labels are computed on cells of PX pixels and upsampled "
                           "(default: short side / 128, i.e. 4 at 512)")
    clip.add_argument("--audio-rate", type=int, default=d.audio_rate,
                      help=f"sample rate of the clips' mono audio (default {d.audio_rate})")
    clip.add_argument("--allow-no-audio", action="store_true",
                      help="keep videos without an audio track (their clips get silent audio); by default "
                           "they are dropped with reason 'no audio'")
    clip.add_argument("--clips-per-shard", type=int, default=d.clips_per_shard,
                      help=f"clips per shard file; a shard is built in memory first (default {d.clips_per_shard})")
    filt = p.add_argument_group("frame filter (DWPose's raw scores; the paper's values by default)")
    filt.add_argument("--face-min", type=float, default=F.FACE_MIN,
                      help=f"mean face-point score must exceed this (default {F.FACE_MIN})")
    filt.add_argument("--upper-min", type=float, default=F.UPPER_MIN,
                      help=f"mean upper-body-point score must exceed this (default {F.UPPER_MIN})")
    filt.add_argument("--visible-fraction", type=float, default=F.VISIBLE_FRACTION,
                      help=f"share of upper-body points that must be visible (default {F.VISIBLE_FRACTION})")
    filt.add_argument("--visible-score", type=float, default=F.VISIBLE_SCORE,
                      help=f"score above which a point counts as visible (default {F.VISIBLE_SCORE})")
    run = p.add_argument_group("run")
    run.add_argument("--retry-failed", action="store_true",
                     help="process again the videos that failed in an earlier run (finished ones stay skipped)")
    run.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    return p


def options_from_args(args: argparse.Namespace) -> PrepareOptions:
    """PrepareOptions from parsed arguments (validated)."""
    if len(args.size) > 2:
        raise PrepareError(f"--size {' '.join(map(str, args.size))}: expected one number (square) or HEIGHT WIDTH")
    height, width = (args.size[0], args.size[0]) if len(args.size) == 1 else args.size
    return PrepareOptions(
        height=height, width=width, fps=args.fps, frames=args.frames, stride=args.stride,
        max_clips_per_video=args.max_clips_per_video, margin=args.margin, face_min=args.face_min,
        upper_min=args.upper_min, visible_fraction=args.visible_fraction, visible_score=args.visible_score,
        audio_rate=args.audio_rate, label_stride=args.label_stride, allow_no_audio=args.allow_no_audio,
        clips_per_shard=args.clips_per_shard).validate()


def _load_detector(args: argparse.Namespace):
    """DWPose from --dwpose-dir / the HF cache; FileNotFoundError with what to download when missing."""
    from iasa_core.detect.dwpose import DWPoseDetector

    dirs = list(args.dwpose_dir)
    return DWPoseDetector.from_search(search_dirs=dirs, device=args.device, allow_download=args.download,
                                      download_dir=dirs[0] if dirs else None)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the preparation; 0 on success, 1 when no clip could be made, 2 on a usage or setup error."""
    from .data.pipeline import format_report, prepare_dataset, source_videos
    from .data.store import check_output_dir

    args = build_parser().parse_args(argv)
    try:
        opts = options_from_args(args)
        # Before loading DWPose: a missing folder or an option mismatch should not wait for the weights to
        # load, nor hide behind a message about missing weights.
        source_videos(args.videos, args.keypoints)
        check_output_dir(args.out, opts, create=False)
    except (PrepareError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    detector = None
    if not args.keypoints:
        try:
            detector = _load_detector(args)
        except FileNotFoundError as exc:  # the message names the files, the folders and where to get them
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except (ImportError, RuntimeError, ValueError) as exc:
            print(f"error: DWPose could not be loaded: {exc}", file=sys.stderr)
            return 2
    try:
        report = prepare_dataset(args.videos, args.out, opts, keypoints_dir=args.keypoints, detector=detector,
                                 progress=not args.no_progress, retry_failed=args.retry_failed)
    except (PrepareError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_report(report))
    if report["clips"] == 0:
        print("no clips were written: see the reasons above (report.json has them per video)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
