"""Write the template browser's thumbnails (workflows/<name>.jpg) from the pack's own nodes and inputs.

    python workflows/make_thumbnails.py

ComfyUI's frontend shows custom_nodes/<pack>/workflows/<name>.jpg for the template <name>.json (jpg
only). Each thumbnail is a strip made by running this pack's nodes on workflows/inputs/ on the CPU: the
photo, its poses drawn by IASA Render Poses, and (for the talking video) frames the embedded student
made; the mask preview shows IASA Sparse Plan's own preview; the native Wan graphs show the photo and the
pose video made from the speech. A few seconds; small files (a few kB).
It also draws the pack's icon, icon.png at the repository root.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
INPUTS = HERE / "inputs"
SIZE = (384, 216)  # width, height of every thumbnail
QUALITY = 80


def _nodes():
    sys.path.insert(0, str(ROOT))
    import nodes  # the pack's own nodes/ (as build_workflows.py imports it)

    nodes.comfy_bridge.set_input_directory(INPUTS)
    return nodes.NODE_CLASS_MAPPINGS


def _run(cls, **kwargs):
    return getattr(cls(), cls.FUNCTION)(**kwargs)


def _pil(image) -> Image.Image:
    """A ComfyUI IMAGE (one frame [H, W, 3] or a batch's first) as a PIL image."""
    arr = image.detach().cpu().numpy()
    if arr.ndim == 4:
        arr = arr[0]
    return Image.fromarray((np.clip(arr, 0.0, 1.0) * 255).round().astype(np.uint8))


def _strip(tiles: list[Image.Image]) -> Image.Image:
    """Tiles side by side, each scaled to the thumbnail's height, centred on a dark canvas."""
    w, h = SIZE
    gap = 4
    scaled = [t.convert("RGB").resize((max(1, round(t.width * h / t.height)), h), Image.LANCZOS) for t in tiles]
    total = sum(t.width for t in scaled) + gap * (len(scaled) - 1)
    if total > w:  # too wide: shrink the whole strip
        k = w / total
        scaled = [t.resize((max(1, round(t.width * k)), max(1, round(t.height * k))), Image.LANCZOS) for t in scaled]
        total = sum(t.width for t in scaled) + gap * (len(scaled) - 1)
    canvas = Image.new("RGB", SIZE, (24, 24, 28))
    x = (w - total) // 2
    for t in scaled:
        canvas.paste(t, (x, (h - t.height) // 2))
        x += t.width + gap
    return canvas


def thumbnails() -> dict[str, Image.Image]:
    """Template name -> its thumbnail."""
    n = _nodes()
    character = Image.open(INPUTS / "iasa_character.png")
    speaker = Image.open(INPUTS / "iasa_speaker.png")

    # Talking video: speech -> procedural motion of the character -> the embedded student's frames.
    (audio,) = _run(n["IASALoadAudio"], audio_file="iasa_speech.wav", max_seconds=600.0)
    (ref_pose,) = _run(n["IASALoadPoses"], pose_file="iasa_character_pose.json", fps=25.0)
    (poses,) = _run(n["IASAMotion"], audio=audio, method="procedural", fps=25.0, seed=0, seconds=0.4,
                    reference_pose=ref_pose)
    (skeletons,) = _run(n["IASARenderPoses"], poses=poses, width=0, height=0, hands=True, face=False,
                        bgr=False, min_score=0.3)
    (model,) = _run(n["IASAModelLoader"], model="embedded", dtype="auto", device="cpu")
    ref = np.asarray(character.convert("RGB"), dtype=np.float32)[None] / 255.0
    import torch

    (frames, _fps) = _run(n["IASASampler"], model=model, reference_image=torch.from_numpy(ref), poses=poses,
                          sampler="auto", steps=0, seed=0, backend="auto", sparse=True)
    talking = _strip([character, _pil(skeletons[len(skeletons) // 2]), _pil(frames[0]), _pil(frames[5])])

    # The speaker graphs: the photo and the motion it is driven by, drawn by IASA Render Poses.
    (motion,) = _run(n["IASALoadPoses"], pose_file="iasa_speaker_motion.json", fps=25.0)
    (drawn,) = _run(n["IASARenderPoses"], poses=motion, width=0, height=0, hands=True, face=True, bgr=False,
                    min_score=0.3)
    emage = _strip([speaker, _pil(drawn[8]), _pil(drawn[24])])
    reenact = _strip([_pil(drawn[0]), _pil(drawn[16]), speaker])

    (_plan, preview, _density) = _run(n["IASASparsePlan"], poses=motion, width=256, height=256, frames=0, top_k=2,
                                      block_size=32, mode="exact")
    mask = _strip([_pil(preview)])

    # Native Wan graphs: the photo and the pose video made from the speech (what the Wan node is given).
    (speaker_pose,) = _run(n["IASALoadPoses"], pose_file="iasa_speaker_pose.json", fps=16.0)
    (speech_motion,) = _run(n["IASAMotion"], audio=audio, method="procedural", fps=16.0, seed=0, seconds=1.0,
                            reference_pose=speaker_pose)
    native = {}
    for name, face in (("iasa_wan_animate_audio", False), ("iasa_wan_fun_control_audio", True)):
        (video,) = _run(n["IASARenderPoses"], poses=speech_motion, width=0, height=0, hands=True, face=face,
                        bgr=False, min_score=0.3)
        native[name] = _strip([speaker, _pil(video[4]), _pil(video[12])])
    return {"iasa_talking_video": talking, "iasa_talking_video_emage_dwpose": emage,
            "iasa_pose_reenactment": reenact, "iasa_mask_preview": mask, **native}


def icon() -> Image.Image:
    """The pack's icon ([tool.comfy] Icon, 128x128 PNG): the speaker's pose as IASA Render Poses draws it."""
    n = _nodes()
    (pose,) = _run(n["IASALoadPoses"], pose_file="iasa_speaker_pose.json", fps=25.0)
    (drawn,) = _run(n["IASARenderPoses"], poses=pose, width=128, height=128, hands=True, face=True, bgr=False,
                    min_score=0.3)
    return _pil(drawn)


def main() -> int:
    """Write every thumbnail next to its workflow, and the pack's icon at the repository root."""
    for name, image in thumbnails().items():
        image.save(HERE / f"{name}.jpg", quality=QUALITY, optimize=True)
    icon().save(ROOT / "icon.png", optimize=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
