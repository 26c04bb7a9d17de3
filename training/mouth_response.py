"""Whether a model's mouth follows the poses' mouth: the same held-out clip generated with its true poses and with
the lips shut in every pose frame.

    python -m training.mouth_response --model M [--clips 2] [--steps 20]

Per clip (the seed `bench quality` uses), with the same noise for both runs: ``response`` is the mean absolute
difference of the mouth box's darkness (``iasa_core.bench.metrics.mouth_signal``, grey levels) between the two
videos (0: the model ignores the mouth; the truth's own spread over time, ``truth_std``, is the scale);
``r_response`` is the correlation over time of that difference with the mouth's opening
(``iasa_core.pose.render.mouth_opening``), ``r_truth`` the same for the truth minus a still copy of the reference
frame. A model that lip-syncs answers as strongly as the truth moves and with the truth's sign.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np

from iasa_core.bench.metrics import mouth_boxes, mouth_signal, pearson
from iasa_core.bench.quality import heldout_clips
from iasa_core.model.system import PoseWanSystem
from iasa_core.pose import layout as L
from iasa_core.pose.render import mouth_opening
from iasa_core.pose.sequence import PoseSequence

from .pose_reliance import add_heldout_args, check_heldout


def shut_lips(keypoints: np.ndarray) -> np.ndarray:
    """A copy of keypoints (T, 133, 3) whose inner lips meet half way (the mouth shut, its width unchanged)."""
    out = np.array(keypoints, dtype=np.float64, copy=True)
    upper, lower = (list(p) for p in zip(*L.INNER_LIP_PAIRS, strict=True))
    mid = (out[:, upper, 1] + out[:, lower, 1]) / 2
    out[:, upper, 1] = mid
    out[:, lower, 1] = mid
    return out


def clip_response(system: PoseWanSystem, frames: np.ndarray, keypoints: np.ndarray, *, sampler: str = "teacher",
                  steps: int = 20, seed: int = 0) -> dict[str, Any]:
    """One clip (T, H, W, 3) uint8 with keypoints (T, 133, 3): the numbers of the module docstring."""
    from iasa_core.pipeline import GenerateOptions, generate_video

    h, w = frames.shape[1:3]
    outputs = []
    for kp in (keypoints, shut_lips(keypoints)):
        opts = GenerateOptions(sampler=sampler, sparse=False, seed=seed, steps=steps)
        outputs.append(generate_video(system, frames[0], PoseSequence(kp, h, w, fps=25.0), opts).frames)
    boxes = mouth_boxes(keypoints, h, w)
    truth = mouth_signal(frames, boxes)
    still = mouth_signal(np.repeat(frames[:1], len(frames), axis=0), boxes)
    true_out, shut_out = (mouth_signal(o, boxes) for o in outputs)
    opening = np.array([mouth_opening(k) for k in keypoints])
    return {"response": float(np.abs(true_out - shut_out).mean()), "truth_std": float(np.std(truth)),
            "r_response": pearson(true_out - shut_out, opening), "r_truth": pearson(truth - still, opening)}


def mouth_response(system: PoseWanSystem, clips: int = 2, frames: int = 81, *, sampler: str = "teacher",
                   steps: int = 20) -> list[dict[str, Any]]:
    """``clip_response`` for each of ``clips`` held-out clips of ``frames`` frames."""
    check_heldout(clips, frames)
    return [clip_response(system, c.frames[:frames], c.poses.keypoints[:frames], sampler=sampler, steps=steps, seed=i)
            for i, c in enumerate(heldout_clips(clips, (frames + 2) / 25.0))]


def main(argv: list[str] | None = None) -> int:
    """CLI."""
    from iasa_core.model.loading import load_model
    from iasa_core.node_support import pick_dtype

    p = argparse.ArgumentParser(prog="python -m training.mouth_response", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_heldout_args(p)
    p.add_argument("--sampler", choices=("teacher", "student"), default="teacher")
    p.add_argument("--steps", type=int, default=20, help="teacher sampler steps (default 20)")
    args = p.parse_args(argv)
    system = load_model(args.model).to("cpu", pick_dtype("auto", "cpu"))
    rows = mouth_response(system, args.clips, args.frames, sampler=args.sampler, steps=args.steps)
    for i, r in enumerate(rows):
        print(f"clip {i + 1}: response {r['response']:.2f} grey levels (the truth's spread {r['truth_std']:.2f}); "
              f"r with the opening {r['r_response']:+.2f} (the truth's {r['r_truth']:+.2f})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
