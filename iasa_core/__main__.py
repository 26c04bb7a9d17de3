"""The CLI: `python -m iasa_core <command> ...`."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from .memory import FLAT_MEMORY_HELP
from .restoration import add_restore_flags, restore_flags


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one ``error:`` line (exit 2), like every other user error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        """Print ``error: <prog>: <message>`` and a pointer to --help, then exit 2."""
        self.exit(2, f"error: {self.prog}: {' '.join(message.split())} (see {self.prog} --help)\n")


INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C


def _load_poses(args):
    from . import validate
    from .pose.cli_poses import load_poses_arg
    from .pose.sequence import PoseSequence
    from .pose.synthetic import synthetic_keypoints

    size = validate.parse_size(args.size, "--size") if args.size else None
    if args.frames is not None:
        validate.whole(args.frames, "--frames", low=1)
    if args.synthetic:
        h, w = size or (480, 832)
        frames = args.frames or 81
        return PoseSequence(synthetic_keypoints(frames, h, w, seed=args.seed), h, w), (h, w)
    if not args.poses:
        raise CliError("give --poses POSES.json (a POSE_KEYPOINT list, e.g. from `motion` or DWPose) "
                       "or --synthetic for a generated test sequence")
    seq = load_poses_arg(args.poses, "--poses")
    if args.frames:
        if args.frames > len(seq):
            raise CliError(f"--frames {args.frames} but {args.poses} holds {len(seq)} frames")
        seq = PoseSequence(seq.keypoints[: args.frames], seq.height, seq.width, seq.fps)
    return seq, size or (seq.height, seq.width)


def cmd_mask(args) -> int:
    """Build a sparse plan from poses, print its numbers, optionally write a preview and JSON."""
    from .output_paths import image_file, output_file, write_text
    from .sparse import build_plan
    from .sparse.preview import plan_preview

    preview = image_file(args.preview, "--preview") if args.preview else None
    summary = output_file(args.json, "--json", kind="JSON", example="plan.json") if args.json else None
    if args.window_frames and (args.window_frames < 5 or (args.window_frames - 1) % 4):
        raise CliError(f"--window-frames {args.window_frames}: give 4n+1 frames, at least 5 (e.g. 81), or 0 for "
                       "one plan over the whole video")
    if args.window_frames and not 0 < args.overlap < (args.window_frames - 1) // 4 + 1:
        raise CliError(f"--overlap {args.overlap}: give 1 to {(args.window_frames - 1) // 4} latent frames "
                       f"(a window of {args.window_frames} frames has {(args.window_frames - 1) // 4 + 1})")
    seq, size = _load_poses(args)
    regions = tuple(r.strip() for r in args.regions.split(",") if r.strip())
    options = dict(top_k=args.top_k, block_size=args.block_size, mode=args.mode, regions=regions,
                   local=not args.no_local, sink_first=args.sink_first, causal=not args.non_causal)
    if args.window_frames and len(seq) > args.window_frames:
        return _mask_windows(args, seq, size, options, preview, summary)
    plan = build_plan(seq, size, num_frames=len(seq), **options)
    s = plan.to_summary()
    print(f"{s['video_frames']} frames at {s['height']}x{s['width']} -> {s['latent_frames']} latent frames x "
          f"{s['tokens_per_frame']} tokens = {s['seq_len']} tokens, {s['num_blocks']}x{s['num_blocks']} blocks "
          f"of {s['block_size']}")
    print(f"top-K={s['top_k']} regions={','.join(s['regions'])} local={s['local']} "
          f"sink_first={s['sink_first']} causal={s['causal']} mode={s['mode']}")
    print(f"density {s['density']:.4f} (block level, {s['nnz_blocks']} blocks, {s['partial_blocks']} partial); "
          f"token density {s['token_density']:.4f}; built in {s['build_seconds'] * 1000:.0f} ms")
    if preview:
        preview.parent.mkdir(parents=True, exist_ok=True)
        plan_preview(plan).save(preview)
        print(f"preview written to {preview}")
    if summary:
        write_text(summary, json.dumps(s, indent=1))
        print(f"plan summary written to {summary}")
    return 0


def _mask_windows(args, seq, size, options, preview, summary) -> int:
    """`mask` on a video longer than a window: one plan per sampling window, as `generate` builds them."""
    from .output_paths import write_text
    from .sparse.preview import plan_preview
    from .sparse.windowed import window_plans, windows_summary

    summaries = []
    for i, (_window, plan) in enumerate(window_plans(seq, size, args.window_frames, args.overlap, **options)):
        summaries.append(plan.to_summary())
        if i == 0 and preview:
            preview.parent.mkdir(parents=True, exist_ok=True)
            plan_preview(plan).save(preview)
        del plan  # one window's plan at a time: memory does not grow with the video's length
    s = windows_summary(summaries, len(seq))
    first = summaries[0]
    print(f"{len(seq)} frames at {size[0]}x{size[1]} -> {s['windows']} windows of {first['video_frames']} frames "
          f"({first['latent_frames']} latent frames x {first['tokens_per_frame']} tokens = {first['seq_len']} tokens, "
          f"{first['num_blocks']}x{first['num_blocks']} blocks of {first['block_size']}), as generate samples them")
    print(f"top-K={first['top_k']} regions={','.join(first['regions'])} local={first['local']} "
          f"sink_first={first['sink_first']} causal={first['causal']} mode={first['mode']}")
    print(f"density {s['density_mean']:.4f} mean over windows ({s['density_min']:.4f} to {s['density_max']:.4f}); "
          f"token density {s['token_density_mean']:.4f}; built in {s['build_seconds'] * 1000:.0f} ms")
    if preview:
        print(f"preview of the first window written to {preview}")
    if summary:
        write_text(summary, json.dumps(s, indent=1))
        print(f"plan summaries written to {summary}")
    return 0


def cmd_bench(args) -> int:
    """Benchmarks."""
    from . import validate
    from .output_paths import image_file, output_file, write_text

    json_out = output_file(args.json, "--json", kind="JSON", example="bench.json") if args.json else None
    if args.sheet:
        image_file(args.sheet, "--sheet")
    validate.finite(args.seconds, "--seconds", above=0.0)
    if args.what == "attention":
        from .bench.attention import bench_attention

        result = bench_attention(device=args.device, top_k=args.top_k, mode=args.mode, repeats=args.repeats)
    elif args.what == "model":
        from .bench.model import bench_model

        result = bench_model(device=args.device, top_k=args.top_k, mode=args.mode, repeats=args.repeats,
                             backend=args.backend)
    elif args.what == "quality":
        from .bench.quality import bench_quality, default_rows, format_table

        models = {k: v for k, v in (("teacher", args.teacher), ("dmd", args.dmd), ("student", args.student)) if v}
        only = [k.strip() for k in args.rows.split(",") if k.strip()] if args.rows is not None else None
        try:
            rows = default_rows(**models, only=only) if models or only is not None else None
        except ValueError as e:
            raise CliError(str(e)) from None
        validate.whole(args.timing_passes, "--timing-passes", low=1)
        result = bench_quality(clips=args.clips, seconds=args.seconds, teacher_steps=args.teacher_steps,
                               device=args.device, dtype=args.dtype, sheet=args.sheet, rows=rows,
                               timing_passes=args.timing_passes)
        print(format_table(result))
    elif args.what == "vae":
        import torch

        from .bench.vae import bench_vae
        from .node_support import pick_dtype

        bf16 = pick_dtype(args.dtype, args.device or "cpu") == torch.bfloat16
        result = bench_vae(args.model, clips=args.clips, frames=args.frames, precision="bf16" if bf16 else "fp32")
    else:
        raise CliError(f"unknown benchmark {args.what!r}; available: attention, model, quality, vae")
    if json_out:
        write_text(json_out, json.dumps(result, indent=1))
        print(f"results written to {json_out}")
    return 0


def cmd_demo(args) -> int:
    """Speech + image -> talking video on the embedded model, with the time of each stage."""
    from .demo import run_demo
    from .output_paths import output_file, write_text

    json_out = output_file(args.json, "--json", kind="JSON", example="demo.json") if args.json else None
    if args.flat_memory:
        from .memory import map_large_blocks

        map_large_blocks()  # the peak memory then stays flat in the audio's length (see iasa_core/memory.py)
    result = run_demo(args.audio, args.image, args.out, ref_poses=args.ref_poses, model=args.model, seed=args.seed,
                      side=args.side, models=args.models, download=args.download, dtype=args.dtype,
                      **restore_flags(args))
    if json_out:
        write_text(json_out, json.dumps(result, indent=1))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    p = OneLineParser(prog="python -m iasa_core", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="log which backends are chosen")
    sub = p.add_subparsers(dest="command", required=True)

    m = sub.add_parser("mask", help="build the sparse attention plan for poses; print density, draw it")
    m.add_argument("--poses", help="POSE_KEYPOINT JSON (one dict per video frame)")
    m.add_argument("--synthetic", action="store_true", help="use a generated talking-person sequence")
    m.add_argument("--size", help="video size HxW, multiples of 16 (default: the poses' canvas)")
    m.add_argument("--frames", type=int, help="video frames, 4n+1 (default: all poses)")
    m.add_argument("--top-k", type=int, default=2, help="past latent frames each frame sees (default 2)")
    m.add_argument("--block-size", type=int, default=128, help="kernel block size in tokens (default 128)")
    m.add_argument("--mode", choices=("exact", "pooled"), default="exact")
    m.add_argument("--regions", default="face,hands,arms,body", help="regions attending across frames")
    m.add_argument("--no-local", action="store_true", help="global mask only (no same-region rule)")
    m.add_argument("--sink-first", action="store_true", help="the first latent frame is always visible")
    m.add_argument("--non-causal", action="store_true", help="top-K among all other frames, not just past")
    m.add_argument("--window-frames", type=int, default=81,
                   help="longer videos get one plan per window of this many frames (4n+1), as generate samples "
                        "them; 0: one plan over the whole video (its memory grows with the square of the length)")
    m.add_argument("--overlap", type=int, default=4, help="latent frames shared by consecutive windows (default 4)")
    m.add_argument("--seed", type=int, default=0, help="seed of --synthetic")
    m.add_argument("--preview", help="write a PNG of the block pattern and the token regions")
    m.add_argument("--json", help="write the plan summary as JSON")
    m.set_defaults(func=cmd_mask)

    b = sub.add_parser("bench", help="benchmarks that print numbers and write JSON")
    b.add_argument("what", choices=("attention", "model", "quality", "vae"),
                   help="attention: kernels alone; model: one DiT step dense vs IASA; quality: the ablation "
                        "table (FPS, PSNR, SSIM, face/hand PSNR, lip sync) of the embedded models on held-out "
                        "synthetic clips; vae: a model's VAE round trip on held-out clips, per latent frame")
    b.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    b.add_argument("--top-k", type=int, default=2)
    b.add_argument("--mode", choices=("exact", "pooled"), default="exact")
    b.add_argument("--repeats", type=int, default=3)
    b.add_argument("--backend", default="auto", help="sparse backend for `bench model` (default auto)")
    b.add_argument("--clips", type=int, default=2, help="`quality`, `vae`: held-out clips (default 2)")
    b.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto",
                   help="`quality`, `vae`: auto = bfloat16 on CUDA and on CPUs with native bf16, else float32")
    b.add_argument("--model", default="embedded", help="`vae`: the model whose VAE is measured (default embedded)")
    b.add_argument("--sheet", help="`quality`: also write a contact sheet PNG per clip (truth and every row's "
                                   "output at six frames)")
    b.add_argument("--frames", type=int, default=81, help="`vae`: frames per held-out clip, 4n+1 (default 81)")
    b.add_argument("--seconds", type=float, default=5.0, help="`quality`: seconds per clip (default 5)")
    b.add_argument("--timing-passes", type=int, default=1,
                   help="`quality`: time every model row this many times, the rows taking turns, and report the "
                        "FPS of the median pass (default 1; 3 steadies the FPS column on a noisy machine)")
    b.add_argument("--teacher-steps", type=int,
                   help="`quality`: teacher Euler steps (default: the teacher's stored value, 50)")
    for name, default in (("teacher", "embedded-teacher"), ("dmd", "embedded-dmd"), ("student", "embedded")):
        b.add_argument(f"--{name}", help=f"`quality`: the model (name or .safetensors file) of the {name} rows "
                                         f"(default {default}), e.g. a training run's before export")
    b.add_argument("--rows", help="`quality`: only these rows, comma-separated, from "
                                  "floor,teacher,teacher-global,teacher-iasa,dmd,student,student-face,student-restored,"
                                  "student-body,student-global (default all)")
    b.add_argument("--json", help="write the results as JSON")
    b.set_defaults(func=cmd_bench)

    from . import generate_cli, headless_cli
    from .detect import cli as detect_cli
    from .motion import cli as motion_cli
    from .pose import render_cli

    generate_cli.add_parser(sub)
    render_cli.add_parser(sub)
    detect_cli.add_parser(sub)
    motion_cli.add_parser(sub)
    headless_cli.add_parser(sub)

    d = sub.add_parser("demo", help="speech + one image -> talking video on the embedded model (no downloads)",
                       description="Bundled speech clip + character image by default: procedural motion -> poses "
                                   "-> sparse plan -> 4-step IASA student -> reference background, body and "
                                   "face restoration -> mp4 with the audio.")
    d.add_argument("--audio", help="speech file (default: the bundled 5-second clip)")
    d.add_argument("--image", help="reference image of one person (default: the bundled character)")
    d.add_argument("--ref-poses", help="POSE_KEYPOINT JSON whose first frame is the image's pose (default: the "
                                       "bundled one for the bundled image, else DWPose)")
    d.add_argument("--out", default="demo.mp4", help="output mp4 (default demo.mp4)")
    d.add_argument("--model", default="embedded", help="model (default: the embedded student)")
    d.add_argument("--side", type=int, default=128, help="short side of the video in pixels (default 128, the "
                                                        "embedded model's training size)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto",
                   help="denoiser dtype: auto = bfloat16 on CPUs with native bf16 (AMX / AVX512-BF16), else float32")
    d.add_argument("--models", action="append", default=[], help="folder with DWPose weights (user images)")
    d.add_argument("--download", action="store_true", help="allow downloading DWPose weights from the HF hub")
    add_restore_flags(d)
    d.add_argument("--json", help="also write the timings as JSON")
    d.add_argument("--flat-memory", action="store_true", help=FLAT_MEMORY_HELP)
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors print one clear line and return 2."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return args.func(args)
    except (CliError, ValueError, OSError, RuntimeError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Writers clean up their temporary files on the way out; an existing output is left as it was.
        print(f"error: interrupted (Ctrl-C) during `{args.command}`", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
