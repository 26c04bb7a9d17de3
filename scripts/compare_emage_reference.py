#!/usr/bin/env python
"""Check that our EMAGE (iasa_core.motion.emage) reproduces the reference implementation.

The reference is the public PantoMatrix code (``models/emage_audio``). This script builds the
reference networks from a config with random weights (fixed seed), saves them with the
reference's own ``save_pretrained`` into a temporary folder in the Hugging Face layout of
``H-Liu1997/emage_audio``, loads that folder with our loader, runs both on the same synthetic
16 kHz audio (with and without a seed motion), and reports the largest absolute differences of
the SMPL-X outputs (poses, expression, translation). PASS means all are <= 1e-4.

Nothing is downloaded. Usage::

    python scripts/compare_emage_reference.py --reference /path/to/PantoMatrix [--config small|full]
        [--seconds 4] [--seed 0] [--json out.json] [--write-fixture DIR]

Reference requirements (in the Python that runs this script, besides our own package's torch,
numpy, safetensors): ``pip install omegaconf "transformers>=4.30"``. Tested with the reference's
pin, transformers 4.30.2 (its save_pretrained writes pytorch_model.bin, like the hub checkpoint),
and with transformers 5.23 (writes model.safetensors). Under 5.x the reference classes can no
longer be re-loaded with their own from_pretrained (they never call post_init); this script
never does that. The reference's other requirements (librosa, smplx, pytorch3d, ...) are not
needed: only ``models/emage_audio`` is imported, and the audio is made at 16 kHz.
Example: ``python -m venv --system-site-packages /tmp/refvenv && /tmp/refvenv/bin/pip install
omegaconf==2.3.0 transformers==4.30.2``, then run this script with /tmp/refvenv/bin/python.

``--write-fixture DIR`` (small config only) stores the random weights (rounded to float16, as
the run used them), the audio and the reference outputs under DIR for tests/test_emage.py.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-4
PARTS = ("face", "upper", "lower", "hands", "global")
PART_DIMS = {"face": 106, "upper": 78, "hands": 180, "lower": 61, "global": 61}

GENERATOR_CONFIGS = {
    # The released emage_audio config (configs/emage_audio.yaml, model section).
    "full": dict(
        pose_fps=30,
        motion_f=256,
        pose_dims=330,
        pose_rep="smplx",
        audio_rep="wave16k",
        audio_sr=16000,
        audio_fps=16000,
        audio_norm=False,
        audio_f=256,
        speaker_f=768,
        speaker_dims=1,
        hidden_size=768,
        seed_frames=4,
        pose_length=64,
        stride=20,
        test_length=64,
        joint_mask=None,
        vae_codebook_size=256,
        ll=3,
        lf=3,
        lu=3,
        lh=3,
        cl=1,
        cf=0,
        cu=1,
        ch=1,
    ),
}
GENERATOR_CONFIGS["small"] = dict(
    GENERATOR_CONFIGS["full"], motion_f=16, audio_f=16, hidden_size=16, speaker_f=16, vae_codebook_size=8
)
VQ_CONFIGS = {
    "full": dict(vae_length=256, vae_layer=2, vae_codebook_size=256, vae_quantizer_lambda=1.0),
    "small": dict(vae_length=8, vae_layer=2, vae_codebook_size=8, vae_quantizer_lambda=1.0),
}


def synthetic_speech(seconds: float, seed: int, sr: int = 16000) -> np.ndarray:
    """Deterministic voiced-speech-like signal: gliding pitch with harmonics, syllable envelope, noise."""
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voiced = sum(np.sin(k * phase) / k for k in range(1, 9))
    envelope = (0.5 + 0.5 * np.sin(2 * np.pi * 3.1 * t)) ** 2
    noise = np.random.default_rng(seed).standard_normal(n)
    return (0.25 * envelope * voiced + 0.01 * noise).astype(np.float32)


@torch.no_grad()
def randomize(module: torch.nn.Module, gen: torch.Generator, codebook_std: float = 1.0) -> None:
    """Make every tensor random: constant-initialised ones (norm scales, biases, BN statistics)
    and codebooks get random values; weights keep their (seeded) random initialisation.
    Scales are chosen so the chosen codes change from frame to frame (with large constant
    offsets every frame picks the same code and the comparison would prove little)."""
    for name, t in module.state_dict().items():
        if name.endswith("num_batches_tracked") or name.endswith("position_embeddings.pe"):
            continue
        if name.endswith("running_var"):
            t.copy_(torch.rand(t.shape, generator=gen) * 1.5 + 0.5)
        elif name.endswith("running_mean"):
            t.copy_(torch.randn(t.shape, generator=gen) * 0.1)
        elif name.endswith("quantizer.embedding.weight"):
            t.copy_(torch.randn(t.shape, generator=gen) * codebook_std)
        elif torch.all(t == 1):
            t.add_(torch.randn(t.shape, generator=gen) * 0.1)
        elif torch.all(t == 0):
            t.copy_(torch.randn(t.shape, generator=gen) * 0.02)
        elif "speaker_embedding" in name:
            t.mul_(0.1)  # N(0, 1) per channel and constant over time: would swamp the frame-varying signal


@torch.no_grad()
def round_to_fp16(module: torch.nn.Module) -> None:
    for name, t in module.state_dict().items():
        if t.is_floating_point() and not name.endswith("position_embeddings.pe"):
            t.copy_(t.half().float())


def build_reference(ref, config: str, seed: int):
    """Reference generator + VQ sub-models with random weights."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    model = ref.EmageAudioModel(ref.EmageAudioConfig(**GENERATOR_CONFIGS[config]))
    randomize(model, gen)
    subs = {}
    for name in PARTS:
        kwargs = dict(VQ_CONFIGS[config], vae_test_dim=PART_DIMS[name])
        if name == "global":
            subs[name] = ref.EmageVAEConv(ref.EmageVAEConvConfig(**kwargs))
        else:
            subs[name] = ref.EmageVQVAEConv(ref.EmageVQVAEConvConfig(**kwargs))
        randomize(subs[name], gen)
    return model, subs


@torch.no_grad()
def run_reference(
    ref_proc, model, vq, audio: np.ndarray, seed_poses=None, seed_trans=None
) -> dict[str, np.ndarray]:
    """The released inference procedure (test_emage_audio.py) on already-16 kHz audio; a seed
    motion is passed the way its training script does (masked_motion, mask=None)."""
    wave = torch.from_numpy(audio)[None]
    speaker = torch.zeros(1, 1, dtype=torch.long)
    masked_motion, ref_trans = None, torch.zeros(1, 3)
    if seed_poses is not None:
        s = seed_poses.shape[0]
        rot = ref_proc.axis_angle_to_rotation_6d(torch.from_numpy(seed_poses).reshape(1, s, 55, 3)).reshape(
            1, s, -1
        )
        trans = torch.from_numpy(seed_trans)[None]
        masked_motion = torch.cat([rot, trans, torch.zeros(1, s, 4)], dim=-1)
        ref_trans = trans[:, 0]
    out = model.inference(wave, speaker, vq, masked_motion=masked_motion, mask=None)
    cfg = model.cfg

    def pick(part: str, letter: str):
        lat = (
            out[f"rec_{part}"] if getattr(cfg, "l" + letter) > 0 and getattr(cfg, "c" + letter) == 0 else None
        )
        idx = (
            torch.max(F.log_softmax(out[f"cls_{part}"], dim=2), dim=2)[1]
            if getattr(cfg, "c" + letter) > 0
            else None
        )
        return lat, idx

    fl, fi = pick("face", "f")
    ul, ui = pick("upper", "u")
    hl, hi = pick("hands", "h")
    ll, li = pick("lower", "l")
    res = vq.decode(
        face_latent=fl,
        upper_latent=ul,
        lower_latent=ll,
        hands_latent=hl,
        face_index=fi,
        upper_index=ui,
        lower_index=li,
        hands_index=hi,
        get_global_motion=True,
        ref_trans=ref_trans,
    )
    t = res["motion_axis_angle"].shape[1]
    motion = {
        "poses": res["motion_axis_angle"].reshape(t, -1).numpy(),
        "expression": res["expression"].reshape(t, -1).numpy(),
        "trans": res["trans"].reshape(t, -1).numpy(),
    }
    return motion, {k: v[0].numpy() for k, v in out.items()}


def compare_latents(mine: dict[str, torch.Tensor], theirs: dict[str, np.ndarray]) -> dict:
    """Max abs difference of the stitched per-frame latents/logits, and how many distinct codes
    each part used (argmax of the logits; the face: nearest code is decided later)."""
    out = {}
    for key, ref_value in theirs.items():
        m = mine[key].cpu().numpy()
        out[key] = float(np.max(np.abs(m - ref_value))) if m.shape == ref_value.shape else float("inf")
    out["distinct_codes"] = {
        k[4:]: int(len(np.unique(v.argmax(-1)))) for k, v in theirs.items() if k.startswith("cls_")
    }
    return out


def compare(ours, theirs: dict[str, np.ndarray]) -> dict:
    result = {"frames_reference": int(theirs["poses"].shape[0]), "frames_ours": int(ours.poses.shape[0])}
    same_len = result["frames_reference"] == result["frames_ours"]
    for key, mine in (("poses", ours.poses), ("expression", ours.expression), ("trans", ours.trans)):
        if same_len and mine.shape == theirs[key].shape:
            result[f"max_abs_{key}"] = float(np.max(np.abs(mine - theirs[key]))) if mine.size else 0.0
        else:
            result[f"max_abs_{key}"] = float("inf")
    result["max_abs"] = max(result[f"max_abs_{k}"] for k in ("poses", "expression", "trans"))
    return result


def git_commit(path: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def write_fixture(folder: Path, model, subs, audio, cases, seed_case) -> None:
    """Weights as float16 safetensors (the run used exactly these values), audio, reference outputs."""
    from safetensors.torch import save_file

    def save(sub_folder: Path, module) -> None:
        sub_folder.mkdir(parents=True, exist_ok=True)
        (sub_folder / "config.json").write_text(module.config.to_json_string(use_diff=True))
        state = {
            k: (
                v if k.endswith("position_embeddings.pe") or not v.is_floating_point() else v.half()
            ).contiguous()
            for k, v in module.state_dict().items()
        }
        save_file(state, str(sub_folder / "model.safetensors"), metadata={"format": "pt"})

    save(folder, model)
    for name, sub in subs.items():
        save(folder / "emage_vq" / name, sub)
    arrays = {
        "audio": audio.astype(np.float16),
        "seed_input_poses": seed_case[0],
        "seed_input_trans": seed_case[1],
    }
    for case, out in cases.items():
        for key, value in out.items():
            arrays[f"{case}_{key}"] = value.astype(np.float32)
    np.savez_compressed(folder / "golden.npz", **arrays)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--reference", required=True, type=Path, help="PantoMatrix checkout (has models/emage_audio)"
    )
    parser.add_argument("--config", choices=("small", "full"), default="full")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--json", type=Path, default=None, help="result file (default emage_compare_<config>.json)"
    )
    parser.add_argument(
        "--reference-commit", default=None, help="recorded in the JSON when the checkout has no .git"
    )
    parser.add_argument(
        "--write-fixture", type=Path, default=None, help="(small config) write a golden fixture here"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    ref_root = args.reference.expanduser().resolve()
    if not (ref_root / "models" / "emage_audio" / "modeling_emage_audio.py").is_file():
        parser.error(
            f"{ref_root} has no models/emage_audio/modeling_emage_audio.py (want a PantoMatrix checkout)"
        )
    if args.write_fixture and args.config != "small":
        parser.error("--write-fixture needs --config small")
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ref_root))
    import models.emage_audio as ref  # the reference package
    import models.emage_audio.processing_emage_audio as ref_proc
    import transformers

    from iasa_core.motion.emage import EmageAudioModel, EmageMotion, plan_windows

    torch.use_deterministic_algorithms(True, warn_only=True)
    model, subs = build_reference(ref, args.config, args.seed)
    if args.write_fixture:
        round_to_fp16(model)
        for sub in subs.values():
            round_to_fp16(sub)
    model.eval()
    vq = ref.EmageVQModel(
        face_model=subs["face"],
        upper_model=subs["upper"],
        lower_model=subs["lower"],
        hands_model=subs["hands"],
        global_model=subs["global"],
    ).eval()

    audio = synthetic_speech(args.seconds, args.seed)
    if args.write_fixture:
        audio = audio.astype(np.float16).astype(np.float32)
    rng = np.random.default_rng(args.seed + 7)
    seed_poses = (rng.standard_normal((8, 165)) * 0.3).astype(np.float32)
    seed_trans = (rng.standard_normal((8, 3)) * 0.1).astype(np.float32)

    report = {
        "config": args.config,
        "seconds": args.seconds,
        "seed": args.seed,
        "tolerance": TOLERANCE,
        "reference": str(ref_root),
        "reference_commit": args.reference_commit or git_commit(ref_root),
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "numpy": np.__version__,
        },
        "generator_params": sum(p.numel() for p in model.parameters()),
        "cases": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "emage_audio"
        t0 = time.time()
        model.save_pretrained(str(folder))
        for name, sub in subs.items():
            sub.save_pretrained(str(folder / "emage_vq" / name))
        report["saved_files"] = sorted(p.name for p in folder.iterdir() if p.is_file())
        ours = EmageAudioModel.from_pretrained(folder)
        report["save_load_s"] = round(time.time() - t0, 2)

    cases, outputs, raw_outputs = {"no_seed": (None, None), "seed": (seed_poses, seed_trans)}, {}, {}
    for case, (poses, trans) in cases.items():
        t0 = time.time()
        theirs, theirs_raw = run_reference(ref_proc, model, vq, audio, poses, trans)
        t_ref = time.time() - t0
        seed_motion = None
        if poses is not None:
            seed_motion = EmageMotion(
                poses=poses, expression=np.zeros((len(poses), 100), np.float32), trans=trans
            )
        t0 = time.time()
        stitched, start = ours.generate(audio, seed_motion=seed_motion, reference_tail=True)
        mine = ours.decode(stitched, start)
        t_ours = time.time() - t0
        res = compare(mine, theirs)
        res["latents_max_abs"] = compare_latents(stitched, theirs_raw)
        total = len(audio) * 30 // 16000
        res.update(
            reference_s=round(t_ref, 2),
            ours_s=round(t_ours, 2),
            frames_audio=total,
            frames_ours_default=sum(w.keep for w in plan_windows(total)),
        )
        report["cases"][case] = res
        outputs[case] = theirs
        raw_outputs[case] = theirs_raw
        print(
            f"[{case:8s}] frames ref={res['frames_reference']} ours={res['frames_ours']}  "
            f"max|d| poses={res['max_abs_poses']:.3e} expression={res['max_abs_expression']:.3e} "
            f"trans={res['max_abs_trans']:.3e}  latents/logits={max(v for k, v in res['latents_max_abs'].items() if k != 'distinct_codes'):.3e}  "
            f"codes used {res['latents_max_abs']['distinct_codes']}  (ref {t_ref:.1f}s, ours {t_ours:.1f}s)"
        )

    # The seed must matter, or the seeded case would prove nothing about the seed path.
    report["seed_effect_on_reference_latents"] = float(
        max(np.max(np.abs(raw_outputs["seed"][k] - raw_outputs["no_seed"][k])) for k in raw_outputs["seed"])
    )
    report["seed_effect_on_reference_trans"] = float(
        np.max(np.abs(outputs["seed"]["trans"] - outputs["no_seed"]["trans"]))
    )
    worst = max(c["max_abs"] for c in report["cases"].values())
    report["max_abs"] = worst
    report["pass"] = bool(worst <= TOLERANCE)
    out_path = args.json or Path(f"emage_compare_{args.config}.json")
    out_path.write_text(json.dumps(report, indent=2))
    if args.write_fixture:
        write_fixture(args.write_fixture, model, subs, audio, outputs, (seed_poses, seed_trans))
        print(f"fixture written to {args.write_fixture}")
    print(
        f"{'PASS' if report['pass'] else 'FAIL'}: max abs difference {worst:.3e} (tolerance {TOLERANCE:g}); "
        f"report {out_path}"
    )
    return 0 if report["pass"] else 1


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
