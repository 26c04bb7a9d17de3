"""`python -m iasa_core generate --poses P.json --image REF.png --model PRESET_OR_PATH --out out.mp4`."""

from __future__ import annotations

import argparse
import math
import sys
import time

from .memory import FLAT_MEMORY_HELP
from .node_support import DTYPES, pick_device, pick_dtype
from .restoration import add_restore_flags, restore_flags


def _lora(text: str) -> tuple[str, float]:
    """``PATH[:STRENGTH]``; a strength that is not a finite number is refused here, naming the flag."""
    path, sep, strength = text.rpartition(":")
    if not (sep and path):
        return text, 1.0
    try:
        value = float(strength)
    except ValueError:
        return text, 1.0  # no number after the last colon: the colon belongs to the path
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text}: the strength {strength!r} must be a finite number, e.g. "
                                         f"{path}:0.8")
    return path, value


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the `generate` sub-command."""
    p = subparsers.add_parser("generate", help="reference image + poses -> video with the stage-2 model",
                              description="Animate the person in --image along --poses and write an mp4.")
    p.add_argument("--poses", required=True, help="POSE_KEYPOINT JSON (from `motion` or `pose`); sets the fps")
    p.add_argument("--image", required=True, help="reference image of the person (any image format)")
    p.add_argument("--model", default="embedded",
                   help="embedded (the trained CPU student shipped with the package; embedded-dmd, "
                        "embedded-teacher: its ablation models), a preset name (tiny, wan2.1-1.3b, wan2.1-i2v-14b: "
                        "random weights), an IASA student .safetensors, a Wan single file, a diffusers folder or "
                        "an HF repo id (default embedded)")
    p.add_argument("--out", required=True, help="output .mp4")
    p.add_argument("--audio", help="audio to put in the video (e.g. the speech the poses were made from)")
    p.add_argument("--size", help="video size HxW, multiples of 16 (default: the model's own size, e.g. 128 on the "
                                  "short side for the embedded models, with the image's aspect ratio)")
    p.add_argument("--free-first-frame", action="store_true",
                   help="let the model draw frame 0 too; by default it lands on the reference image's own latent "
                        "(the video starts from the photo)")
    add_restore_flags(p)
    p.add_argument("--allow-large-size", action="store_true",
                   help="allow a --size above 1280x720 pixels (memory grows with the pixels: 4096x4096 needs over "
                        "20 GB)")
    p.add_argument("--sampler", choices=("auto", "student", "teacher"), default="auto",
                   help="auto: the model's own kind (students: 4 steps; Wan teachers: Euler + CFG)")
    p.add_argument("--steps", type=int, help="teacher Euler steps (default: the model's stored value, else 30)")
    p.add_argument("--timesteps", help="student timesteps out of 1000, comma-separated (default 1000,750,500,250)")
    p.add_argument("--guidance", type=float,
                   help="teacher CFG scale (default: the model's stored value, else 5)")
    p.add_argument("--shift", type=float, help="timestep shift (default: the model's, 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dense", action="store_true", help="dense self-attention instead of IASA")
    p.add_argument("--top-k", type=int, help="past latent frames each frame attends to (default: the model's)")
    p.add_argument("--backend", default="auto", choices=("auto", "dense", "gather", "flex", "flashinfer"))
    p.add_argument("--window-frames", type=int, default=81, help="frames per window of long videos (4n+1)")
    p.add_argument("--overlap", type=int, default=4, help="latent frames shared by consecutive windows")
    p.add_argument("--lora", action="append", default=[], type=_lora, metavar="PATH[:STRENGTH]",
                   help="merge a LoRA (community Wan or diffusers format); repeatable")
    p.add_argument("--pose-weights", help="UniAnimate-DiT checkpoint with the pose encoders (Wan files only)")
    p.add_argument("--vae", help="Wan2.1 VAE: file, diffusers folder or repo id (Wan files only)")
    p.add_argument("--image-encoder", help="CLIP vision encoder folder or repo id (Wan files only)")
    p.add_argument("--models", action="append", default=[], help="folder to look for model files in; repeatable")
    p.add_argument("--download", action="store_true", help="allow downloads from the HF hub")
    p.add_argument("--flat-memory", action="store_true", help=FLAT_MEMORY_HELP)
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--dtype", choices=sorted(DTYPES), help="denoiser dtype (default: bfloat16 on CUDA and on CPUs with native bf16 "
                   "(AMX / AVX512-BF16), else float32)")
    p.add_argument("--prompt", help="text prompt (needs --text-encoder; students run on their stored prompt)")
    p.add_argument("--negative-prompt", help="teacher CFG negative prompt (needs --text-encoder)")
    p.add_argument("--text-encoder", help="UMT5 encoder folder or repo id (text_encoder/ + tokenizer/)")
    p.add_argument("--bgr-poses", action="store_true", help="swap R/B of pose images (UniAnimate weights)")
    p.set_defaults(func=run)
    return p


# What the library's checks call each GenerateOptions field on this command line.
FLAGS = {"sampler": "--sampler", "timesteps": "--timesteps", "steps": "--steps", "guidance": "--guidance",
         "shift": "--shift", "seed": "--seed", "top_k": "--top-k", "backend": "--backend",
         "window_frames": "--window-frames", "overlap_latents": "--overlap", "size": "--size",
         "size_fix": "give a smaller --size (or none: the model's own size), or add --allow-large-size to try it "
                     "anyway"}


def _options(args: argparse.Namespace) -> dict:
    """GenerateOptions' values from the flags, every one checked (before anything heavy is imported)."""
    from types import SimpleNamespace

    from . import validate

    timesteps = validate.parse_numbers(args.timesteps, "--timesteps") if args.timesteps else None
    size = validate.parse_size(args.size, "--size") if args.size else None
    values = dict(sampler=args.sampler, timesteps=timesteps, steps=args.steps, guidance=args.guidance,
                  shift=args.shift, seed=args.seed, sparse=not args.dense, top_k=args.top_k, backend=args.backend,
                  window_frames=args.window_frames, overlap_latents=args.overlap, size=size,
                  pose_bgr=True if args.bgr_poses else None, allow_large_size=args.allow_large_size,
                  anchor_first=not args.free_first_frame, **restore_flags(args))
    validate.generate_options(SimpleNamespace(**values), FLAGS)
    return values


def _inputs(args: argparse.Namespace):
    """Poses, image and audio read and checked; the poses' fps must be one a video can have."""
    from . import validate
    from .media import load_image
    from .pose.cli_poses import load_poses_arg

    poses = load_poses_arg(args.poses, "--poses")
    validate.poses_with_person(poses.keypoints, f"--poses {args.poses}")
    validate.fps(poses.fps, f"the fps stored in --poses {args.poses}")
    image = load_image(args.image, name="--image")
    validate.reference_image(image.shape, f"--image {args.image}")
    audio = None
    if args.audio:
        from .audio import load_audio

        audio = load_audio(args.audio, name="--audio", limit_name=None)
    from .pipeline import fit_poses

    fit_poses(poses, image.shape[:2], image.shape[:2])  # the canvas-vs-image check, before the model loads
    return poses, image, audio


def _densities(plans: list[dict]) -> str:
    """Each window's block density, or their range when there are many (a 10-minute video has hundreds)."""
    values = [p["density"] for p in plans]
    if not values:
        return "dense"
    if len(values) <= 8:
        return ", ".join(f"{v:.3f}" for v in values)
    return f"{min(values):.3f} to {max(values):.3f} over {len(values)} windows"


def run(args: argparse.Namespace) -> int:
    """Check everything, load, sample, write; prints the time of each stage."""
    from . import validate
    from .output_paths import output_video

    # The checks import only light modules: a bad value is refused in a second, before diffusers is imported.
    out_path = output_video(args.out, "--out", inputs=(args.poses, args.image, args.audio))
    values = _options(args)
    if (args.prompt is not None or args.negative_prompt is not None) and not args.text_encoder:
        raise ValueError("--prompt/--negative-prompt need --text-encoder (a UMT5 folder); without them the "
                         "model's stored prompt is used")
    device = pick_device(args.device or "auto")
    dtype = pick_dtype(args.dtype or "auto", device)
    validate.runtime(args.backend if not args.dense else "dense", device, dtype,
                     {"backend": "--backend", "dtype": "--dtype"})
    poses, image, audio = _inputs(args)
    from .media import write_video
    from .model.loading import load_model
    from .model.native_size import native_size
    from .pipeline import GenerateOptions, stream_video

    options = GenerateOptions(**values)
    t0 = time.perf_counter()
    system = load_model(args.model, search_dirs=args.models, allow_download=args.download,
                        pose_weights=args.pose_weights, vae=args.vae, image_encoder=args.image_encoder,
                        loras=args.lora, seed=args.seed).to(device, dtype)
    print(f"model: {system.source} on {device} ({dtype}), loaded in {time.perf_counter() - t0:.1f} s")
    if options.size is None:
        options.size = native_size(system.config, image.shape[:2])
        validate.video_size(options.size, f"the model's size for the shape of --image {args.image}",
                            allow_large=args.allow_large_size,
                            fix="crop --image closer to the person, give --size, or add --allow-large-size")
    if args.prompt is not None or args.negative_prompt is not None:
        from .model.text import PromptEncoder

        encoder = PromptEncoder(args.text_encoder, allow_download=args.download)
        options.prompt_embeds = encoder(args.prompt) if args.prompt is not None else None
        options.negative_prompt_embeds = encoder(args.negative_prompt) if args.negative_prompt is not None else None
        del encoder  # 11 GB for the real one: free it before sampling

    line_open = [False]

    def progress(step: int, total: int) -> None:
        print(f"\rstep {step}/{total}", end="\n" if step == total else "", file=sys.stderr, flush=True)
        line_open[0] = step != total

    if args.flat_memory:
        from .memory import map_large_blocks

        map_large_blocks()  # the peak memory then stays flat in the video's length (see iasa_core/memory.py)
    stream = stream_video(system, image, poses, options, callback=progress)
    try:
        # frames are written as they are decoded (renamed into place at the end): memory stays flat in the length
        out = write_video(out_path, stream, stream.fps, audio=audio)
    finally:
        if line_open[0]:  # stopped mid-sampling (an error, Ctrl-C): its message gets a line of its own
            print(file=sys.stderr)
    t = stream.timings
    print(f"wrote {out}: {len(stream)} frames {stream.width}x{stream.height} at {stream.fps:g} fps; conditioning "
          f"{t['conditioning_s']:.1f} s, sampling {t['sampling_s']:.1f} s ({stream.denoiser_calls} denoiser calls), "
          f"decode {t['decode_s']:.1f} s" + (f", restore {t['restore_s']:.1f} s" if stream.restorers else "") +
          f"; block density per window: {_densities(stream.plans)}")
    for restorer in stream.restorers:
        print(restorer.summary())
    return 0
