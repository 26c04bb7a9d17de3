"""`python -m iasa_core bench quality`: the paper's Table 2 ablation at the embedded model's scale, on this machine.

Held-out clips of the synthetic world (a seed the training never saw) give exact ground-truth videos. Each
row animates every clip's first frame along its poses with one model and attention setting, end to end
from poses to frames (reference conditioning, pose encoding, plan, sampling, VAE decoding), and compares
the frames with the truth: PSNR, SSIM, PSNR inside the face and the hands, and a lip-sync proxy (how the
mouth's darkness follows the truth's over time, beyond what the moving mouth box sees over a still copy of
the reference frame; the copy row has none). FPS is frames over wall-clock seconds on this machine.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

HELDOUT_SEED = 424242  # the embedded models were trained on other seeds of the world
HELDOUT_GESTURES = 0.5


@dataclass(frozen=True)
class QualityRow:
    """One line of the table: which model, which sampler, which attention."""

    name: str
    model: str     # an embedded model name or a model file; "" for the copy-the-reference floor
    sampler: str   # "teacher" (many Euler steps + CFG), "student" (few steps) or "copy" (no model)
    sparse: bool
    local: bool = True
    face_restore: bool = False        # the reference face warped onto the frames (a post-process)
    background_restore: bool = False  # the reference background put back outside the person (a post-process)
    body_restore: bool = False        # the reference head, torso, arms and hands moved (a post-process)


COPY_ROW = QualityRow("copy the reference frame (floor)", "", "copy", sparse=False)
# Short names of the table's rows, in its order (`bench quality --rows`).
ROW_KEYS = ("floor", "teacher", "teacher-global", "teacher-iasa", "dmd", "student", "student-face",
            "student-restored", "student-body", "student-global")


def default_rows(teacher: str = "embedded-teacher", dmd: str = "embedded-dmd", student: str = "embedded",
                 only: list[str] | tuple[str, ...] | None = None) -> list[QualityRow]:
    """The floor (the reference repeated: a model that does not move), then the paper's Table 2 rows.

    The three models default to the embedded ones; model files (e.g. a training run's, before export) may
    stand in for any of them. ``only``: the rows of these ``ROW_KEYS``, in the table's order."""
    rows = [
        COPY_ROW,
        QualityRow("teacher, many-step, dense", teacher, "teacher", sparse=False),
        QualityRow("+ global mask", teacher, "teacher", sparse=True, local=False),
        QualityRow("+ local mask (IASA)", teacher, "teacher", sparse=True, local=True),
        QualityRow("+ DMD, 4 steps", dmd, "student", sparse=True),
        QualityRow("+ region loss (ours)", student, "student", sparse=True),
        # The same frames with the reference face warped onto them (iasa_core/face_restore.py), then also with
        # the reference background put back (iasa_core/background_restore.py), then also with the reference
        # head, torso, arms and hands moved onto the pose (iasa_core/body_restore.py): what the demo shows.
        QualityRow("ours + face restore", student, "student", sparse=True, face_restore=True),
        QualityRow("ours + face and background restore", student, "student", sparse=True, face_restore=True,
                   background_restore=True),
        QualityRow("ours + face, background and body restore", student, "student", sparse=True, face_restore=True,
                   background_restore=True, body_restore=True),
        # Where the local (same-region) rule costs: the same student with only the global top-K frame mask.
        QualityRow("ours with the global mask only", student, "student", sparse=True, local=False),
    ]
    if only is None:
        return rows
    unknown = [k for k in only if k not in ROW_KEYS]
    if unknown or not only:
        raise ValueError(f"bench quality rows: unknown {unknown or 'empty list'}; choose from "
                         f"{', '.join(ROW_KEYS)}, comma-separated (e.g. floor,teacher)")
    return [row for key, row in zip(ROW_KEYS, rows, strict=True) if key in only]


def heldout_clips(count: int, seconds: float, size: int = 128, seed: int = HELDOUT_SEED) -> list[Any]:
    """``count`` synthetic-world samples (speech voice: the built-in synthesizer, so any machine makes the same)."""
    from ..synthetic import make_sample

    return [make_sample(seed, i, seconds, (size, size), 25.0, engine="synthetic", gesture_fraction=HELDOUT_GESTURES)
            for i in range(count)]


def copy_row(clips: list[Any]) -> dict[str, Any]:
    """The floor every model must beat: each clip's first frame repeated for its whole length."""
    from .metrics import video_metrics

    metrics = [video_metrics(np.repeat(c.frames[:1], len(c.frames), axis=0), c.frames, c.poses.keypoints)
               for c in clips]
    out: dict[str, Any] = {"row": asdict(COPY_ROW), "frames": sum(len(c.frames) for c in clips), "seconds": 0.0,
                           "fps": float("nan"), "denoiser_steps": 0, "timings_s": {}}
    for key in metrics[0]:
        out[key] = float(np.nanmean([m[key] for m in metrics]))
    return out


def _generate(system, row: QualityRow, clips: list[Any], steps: int, seed: int) -> Iterator[Any]:
    """Each clip generated from its first frame and poses with one row's options (GenerationResult)."""
    from ..pipeline import GenerateOptions, generate_video

    for i, clip in enumerate(clips):
        opts = GenerateOptions(sampler=row.sampler, sparse=row.sparse, seed=seed + i, steps=steps,
                               local=None if row.local else False, face_restore=row.face_restore,
                               background_restore=row.background_restore, body_restore=row.body_restore)
        yield generate_video(system, clip.frames[0], clip.poses, opts)


def _row_model(row: QualityRow, teacher_steps: int | None, device: str, dtype: torch.dtype | None):
    """The row's model on ``device`` and its sampling steps (the teacher's stored count unless given)."""
    from ..model.loading import load_model

    system = load_model(row.model).to(device, dtype)
    return system, teacher_steps if teacher_steps is not None else int(system.schedule.get("steps", 30))


def time_row(row: QualityRow, clips: list[Any], *, teacher_steps: int | None = None, device: str = "cpu",
             dtype: torch.dtype | None = None, seed: int = 0) -> float:
    """Seconds one row takes to generate every clip again (its outputs are the first pass's: not kept)."""
    system, steps = _row_model(row, teacher_steps, device, dtype)
    return sum(r.timings["total_s"] for r in _generate(system, row, clips, steps, seed))


def evaluate_row(row: QualityRow, clips: list[Any], *, teacher_steps: int | None = None, device: str = "cpu",
                 dtype: torch.dtype | None = None, seed: int = 0, log: Callable[[str], None] = print,
                 keep: list | None = None) -> dict[str, Any]:
    """Generate every clip with one row's setting; metrics averaged over clips, FPS over all frames.

    ``keep``: a list that receives each clip's output frames (for contact sheets)."""
    from .metrics import video_metrics

    if row.sampler == "copy":
        if keep is not None:
            keep.extend(np.repeat(c.frames[:1], len(c.frames), axis=0) for c in clips)
        return copy_row(clips)
    system, steps = _row_model(row, teacher_steps, device, dtype)
    metrics: list[dict[str, float]] = []
    frames_total, seconds_total = 0, 0.0
    timings: dict[str, float] = {}
    for i, (clip, result) in enumerate(zip(clips, _generate(system, row, clips, steps, seed), strict=True)):
        if keep is not None:
            keep.append(result.frames)
        m = video_metrics(result.frames, clip.frames, clip.poses.keypoints)
        metrics.append(m)
        frames_total += len(result.frames)
        seconds_total += result.timings["total_s"]
        for k, v in result.timings.items():
            timings[k] = timings.get(k, 0.0) + v
        log(f"  {row.name}: clip {i + 1}/{len(clips)} {len(result.frames)} frames in "
            f"{result.timings['total_s']:.2f} s, PSNR {m['psnr']:.2f} dB")
    out: dict[str, Any] = {"row": asdict(row), "frames": frames_total, "seconds": seconds_total,
                           "fps": frames_total / seconds_total if seconds_total > 0 else float("nan"),
                           "denoiser_steps": steps if row.sampler == "teacher" else len(
                               system.schedule.get("timesteps", [])),
                           "timings_s": timings}
    for key in metrics[0]:
        out[key] = float(np.nanmean([m[key] for m in metrics]))
    return out


def bench_quality(clips: int = 2, seconds: float = 5.0, *, rows: list[QualityRow] | None = None,
                  teacher_steps: int | None = None, seed: int = HELDOUT_SEED, device: str | None = None,
                  dtype: str = "auto", sheet: str | None = None, timing_passes: int = 1,
                  log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the table; returns its rows plus the settings and machine, ready to print or write as JSON.

    Speed-ups are against the first row that runs a model (the floor runs none). ``sheet``: write a contact
    sheet PNG per clip (ground truth, then every row's output) at this path (``_clipN`` added for N > 0).
    ``timing_passes`` > 1: every model row is timed that many times, the rows taking turns (each pass runs
    them all once), and its FPS is over the median pass: on a noisy machine single passes move by 10-20 %."""
    from ..node_support import pick_dtype

    if clips < 1 or seconds <= 0:
        raise ValueError(f"bench quality needs at least 1 clip and seconds > 0; got {clips} and {seconds}")
    if isinstance(timing_passes, bool) or not isinstance(timing_passes, int) or timing_passes < 1:
        raise ValueError(f"bench quality timing passes must be a whole number >= 1; got {timing_passes!r}")
    device = device or "cpu"
    torch_dtype = pick_dtype(dtype, device)
    t0 = time.perf_counter()
    data = heldout_clips(clips, seconds, seed=seed)
    log(f"{clips} held-out clips of {seconds:g} s (world seed {seed}) made in {time.perf_counter() - t0:.1f} s")
    results = []
    outputs: dict[str, list[np.ndarray]] = {}
    rows = rows or default_rows()
    for row in rows:
        log(f"{row.name} ({row.model}, {row.sampler}, {'sparse' if row.sparse else 'dense'})")
        outputs[row.name] = []
        results.append(evaluate_row(row, data, teacher_steps=teacher_steps, device=device, dtype=torch_dtype,
                                    log=log, keep=outputs[row.name]))
        if row.sampler != "copy":
            results[-1]["seconds_passes"] = [results[-1]["seconds"]]
    timed = [(row, r) for row, r in zip(rows, results, strict=True) if row.sampler != "copy"]
    for n in range(2, timing_passes + 1):
        for row, r in timed:
            r["seconds_passes"].append(time_row(row, data, teacher_steps=teacher_steps, device=device,
                                                dtype=torch_dtype))
            log(f"  {row.name}: timing pass {n}/{timing_passes} {r['seconds_passes'][-1]:.2f} s")
    for _, r in timed:
        r["seconds"] = float(np.median(r["seconds_passes"]))
        r["fps"] = r["frames"] / r["seconds"] if r["seconds"] > 0 else float("nan")
    if sheet:
        from .sheet import save_contact_sheet

        for i, clip in enumerate(data):
            path = sheet if i == 0 else str(Path(sheet).with_name(f"{Path(sheet).stem}_clip{i}.png"))
            rows_i = [("ground truth", clip.frames)] + [(name, frames[i]) for name, frames in outputs.items()]
            log(f"contact sheet written to {save_contact_sheet(path, rows_i)}")
    first = next((r for r in results if r["row"]["sampler"] != "copy"), results[0])
    for r in results:
        r["speedup_vs_first"] = r["fps"] / first["fps"] if first["fps"] > 0 else float("nan")
        r["psnr_vs_first_db"] = r["psnr"] - first["psnr"]
    return {"clips": clips, "seconds": seconds, "seed": seed, "device": device, "dtype": str(torch_dtype),
            "threads": torch.get_num_threads(), "timing_passes": timing_passes, "rows": results}


def format_table(result: dict[str, Any]) -> str:
    """The result as a Markdown table (what the README shows)."""
    head = ("| Method | FPS | speed-up | PSNR | first-frame PSNR | SSIM | face PSNR | hand PSNR | lip-sync r |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    lines = [head]
    for r in result["rows"]:
        fps, speed = ("-", "-") if r["row"]["sampler"] == "copy" else (f"{r['fps']:.1f}",
                                                                       f"{r['speedup_vs_first']:.1f}x")
        lip = "-" if math.isnan(r["lip_sync"]) else f"{r['lip_sync']:.3f}"  # a still video has no mouth motion
        lines.append(f"| {r['row']['name']} | {fps} | {speed} | {r['psnr']:.2f} | {r['first_psnr']:.2f} | "
                     f"{r['ssim']:.3f} | {r['face_psnr']:.2f} | {r['hand_psnr']:.2f} | {lip} |")
    return "\n".join(lines)
