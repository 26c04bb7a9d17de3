"""A POSE_KEYPOINT file given on the command line, with errors that name its flag."""

from __future__ import annotations

import os

from .sequence import MissingCanvasError, PoseSequence


def load_poses_arg(path: str | os.PathLike, flag: str) -> PoseSequence:
    """``PoseSequence.load_json(path)``; a file without a canvas gets a message that names ``flag`` and the fix."""
    try:
        return PoseSequence.load_json(path)
    except MissingCanvasError:
        raise ValueError(
            f"{flag} {os.fspath(path)}: no frame has canvas_width/canvas_height, so the pixel size the keypoints "
            "belong to is unknown; add \"canvas_width\": W, \"canvas_height\": H (the size of the image or video "
            "the poses were made on) to its first frame, or write the poses with `python -m iasa_core pose` or "
            "`motion`, which store it") from None
