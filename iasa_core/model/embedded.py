"""The embedded default models: small pose-conditioned Wan models trained on the synthetic world, shipped in the package.

``embedded`` is the 4-step IASA student distilled with DMD + the region loss (what the demo runs);
``embedded-dmd`` is the same distillation without the region loss and ``embedded-teacher`` the many-step
teacher they were distilled from (both for the ablation table of ``python -m iasa_core bench quality``).
The recipe that reproduces them is ``training/recipes/embedded.sh``.
"""

from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
EMBEDDED_MODELS = {
    "embedded": "iasa_embedded_student.safetensors",
    "embedded-dmd": "iasa_embedded_student_dmd.safetensors",
    "embedded-teacher": "iasa_embedded_teacher.safetensors",
}
DEFAULT_MODEL = "embedded"
# Schedule settings every embedded model runs with unless its file says otherwise: their 1.9 M-parameter VAE
# cannot carry a face's detail, so the reference photo's face is warped onto each frame
# (iasa_core/face_restore.py); they redraw the still background mottled, so the reference's is put back
# (iasa_core/background_restore.py); and they smear the body, so the reference's head, torso, arms and hands
# are moved onto each frame's pose (iasa_core/body_restore.py).
EMBEDDED_SCHEDULE = {"face_restore": True, "background_restore": True, "body_restore": True}


def embedded_path(name: str = DEFAULT_MODEL) -> Path:
    """The file of an embedded model; a clear error when the name is unknown or the file is missing."""
    if name not in EMBEDDED_MODELS:
        raise ValueError(f"unknown embedded model {name!r}; choose one of {sorted(EMBEDDED_MODELS)}")
    path = WEIGHTS_DIR / EMBEDDED_MODELS[name]
    if not path.is_file():
        raise FileNotFoundError(
            f"the embedded model file {path} is missing: it ships with the package. Reinstall it "
            "(pip install -e . from a full checkout) or rebuild it with training/recipes/embedded.sh")
    return path
