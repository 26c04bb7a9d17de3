"""Speech -> a pose sequence of the reference person, by procedural motion or by EMAGE + SMPL-X."""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np

from .. import validate
from ..audio import AudioClip
from ..pose.sequence import PoseSequence

METHODS = ("procedural", "emage")
EMAGE_SAMPLE_RATE = 16000


def poses_from_audio(clip: AudioClip, reference: np.ndarray, height: int, width: int, *,
                     method: str = "procedural", fps: float = 25.0, seed: int = 0,
                     emage_model: str | os.PathLike | None = None, smplx_model: str | os.PathLike | None = None,
                     search_dirs: Iterable[str | os.PathLike] = (), allow_download: bool = False) -> PoseSequence:
    """Animate ``reference`` (133, 3) keypoints on an H x W canvas along the speech in ``clip``."""
    if method not in METHODS:
        raise ValueError(f"motion method must be one of {METHODS}; got {method!r}")
    fps = validate.fps(fps, "fps")
    validate.audio_length(clip.duration, f"audio {clip.source}")
    reference = np.asarray(reference, dtype=np.float32)
    if reference.shape != (133, 3):
        raise ValueError(f"the reference pose must be (133, 3) WholeBody keypoints; got {reference.shape}")
    mono = clip.mono(EMAGE_SAMPLE_RATE)
    if method == "procedural":
        from .procedural import procedural_poses

        return procedural_poses(mono, EMAGE_SAMPLE_RATE, reference, height, width, fps=fps, seed=seed)
    from .emage import EmageAudioModel
    from .smplx_to_2d import smplx_motion_to_poses

    if emage_model is None:
        raise ValueError("EMAGE needs its weights: pass the folder holding config.json and pytorch_model.bin "
                         "(or model.safetensors) of H-Liu1997/emage_audio, or use method='procedural'")
    model = EmageAudioModel.from_pretrained(emage_model, allow_download=allow_download)
    motion = model.infer(mono)
    seq = smplx_motion_to_poses(motion.poses, motion.expression, motion.trans, smplx_model, reference,
                                height, width, fps=fps, src_fps=motion.fps)
    n = max(1, round(clip.duration * fps))
    if len(seq) != n:  # EMAGE works in whole 30 fps frames: trim or hold the last pose to the audio's length
        kp = seq.keypoints[:n] if len(seq) >= n else np.concatenate(
            [seq.keypoints, np.repeat(seq.keypoints[-1:], n - len(seq), axis=0)])
        seq = PoseSequence(kp, height, width, fps)
    return seq
