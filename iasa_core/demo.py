"""`python -m iasa_core demo`: speech + one image -> talking video on the embedded model, with time per stage.

The same calls as the node workflow (IASA Audio To Poses -> IASA Sampler): procedural motion from the
audio, the sparse plan from the poses, the 4-step IASA student, then an mp4 with the audio.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
DEMO_AUDIO = ASSETS_DIR / "demo_speech.wav"
DEMO_IMAGE = ASSETS_DIR / "demo_character.png"
DEMO_POSE = ASSETS_DIR / "demo_character_pose.json"
DEMO_SIDE = 128  # the embedded model's training size: the short side of the video


def demo_size(image_hw: tuple[int, int], side: int = DEMO_SIDE) -> tuple[int, int]:
    """Video size with the short side ``side`` and the image's aspect, in multiples of 16."""
    h, w = image_hw
    scale = side / min(h, w)
    return max(16, round(h * scale / 16) * 16), max(16, round(w * scale / 16) * 16)


def reference_pose(image_path: Path, image: Any, ref_poses: str | None, models: list[str], download: bool):
    """The reference pose (133, 3) on the image's canvas: given JSON, the bundled one, or DWPose."""
    import numpy as np

    from .pose.cli_poses import load_poses_arg

    if ref_poses is None and image_path.resolve() == DEMO_IMAGE.resolve():
        ref_poses = str(DEMO_POSE)
    if ref_poses is not None:
        seq = load_poses_arg(ref_poses, "--ref-poses")
        kp = np.array(seq.keypoints[0], dtype=np.float32)
        h, w = image.shape[:2]
        if (seq.height, seq.width) != (h, w):
            kp[:, 0] *= w / seq.width
            kp[:, 1] *= h / seq.height
        return kp
    from .detect.dwpose import DWPoseDetector

    try:
        detector = DWPoseDetector.from_search(models, allow_download=download)
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"{exc}\nThe demo needs the pose of {image_path}: give it with --ref-poses POSES.json (e.g. written by "
            "`python -m iasa_core pose --image ...`), or put the DWPose weights where the message above says") \
            from None
    return detector.detect(image, name=str(image_path))


def run_demo(audio: str | None = None, image: str | None = None, out: str = "demo.mp4", *,
             ref_poses: str | None = None, model: str = "embedded", seed: int = 0, side: int = DEMO_SIDE,
             models: list[str] | None = None, download: bool = False, dtype: str = "auto",
             face_restore: bool | None = None, background_restore: bool | None = None,
             body_restore: bool | None = None,
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the whole chain; returns the output path, frame count and seconds per stage."""
    from . import validate
    from .audio import load_audio
    from .media import load_image, write_video
    from .node_support import pick_dtype
    from .output_paths import output_video

    # Everything that can be refused is refused here, before any model, detector or diffusers loads.
    times: dict[str, float] = {}
    t = time.perf_counter()
    audio_path = Path(audio) if audio else DEMO_AUDIO
    image_path = Path(image) if image else DEMO_IMAGE
    out = output_video(out, "--out", inputs=(audio_path, image_path, ref_poses))
    side = validate.whole(side, "--side", low=16)
    seed = validate.seed(seed, "--seed")
    torch_dtype = pick_dtype(dtype, "cpu")
    clip = load_audio(audio_path, name="--audio", limit_name=None)
    validate.audio_length(clip.duration, f"--audio {audio_path}")
    picture = load_image(image_path, name="--image")
    validate.reference_image(picture.shape, f"--image {image_path}")
    validate.video_size(demo_size(picture.shape[:2], side), f"--side {side} on the {picture.shape[1]}x"
                        f"{picture.shape[0]} --image", fix="give a smaller --side or crop --image closer to the person")
    times["load_inputs"] = time.perf_counter() - t
    from .model.loading import load_model
    from .motion.from_audio import poses_from_audio
    from .pipeline import GenerateOptions, resize_image, stream_video

    t = time.perf_counter()
    reference = reference_pose(image_path, picture, ref_poses, list(models or []), download).copy()
    hw = demo_size(picture.shape[:2], side)
    reference[:, 0] *= hw[1] / picture.shape[1]
    reference[:, 1] *= hw[0] / picture.shape[0]
    picture = resize_image(picture, hw)
    poses = poses_from_audio(clip, reference, hw[0], hw[1], method="procedural", fps=25.0, seed=seed)
    times["audio_to_poses"] = time.perf_counter() - t

    t = time.perf_counter()
    system = load_model(model).to("cpu", torch_dtype)
    times["load_model"] = time.perf_counter() - t

    def progress(step: int, total: int) -> None:
        log(f"  denoising step {step}/{total}")

    result = stream_video(system, picture, poses, GenerateOptions(seed=seed, face_restore=face_restore,
                                                                    background_restore=background_restore,
                                                                    body_restore=body_restore),
                          callback=progress)
    t = time.perf_counter()
    # frames are written as they are decoded, so memory does not grow with the audio's length
    path = write_video(out, result, result.fps, audio=clip)
    writing = time.perf_counter() - t
    times["conditioning"] = result.timings["conditioning_s"]
    times["sampling"] = result.timings["sampling_s"]
    times["decode"] = result.timings["decode_s"]
    times["restore"] = result.timings["restore_s"]
    poses_to_frames = result.timings["frames_s"]
    times["write_mp4"] = max(0.0, writing - (poses_to_frames - result.setup_seconds))
    n = len(result)
    total = sum(times.values())
    log(f"wrote {path}: {n} frames {hw[1]}x{hw[0]} at {result.fps:g} fps with the audio ({clip.duration:.1f} s)")
    densities = [p["density"] for p in result.plans]
    density = (", ".join(f"{d:.3f}" for d in densities) if len(densities) <= 8 else
               f"{min(densities):.3f} to {max(densities):.3f} over {len(densities)} windows") or "dense"
    log(f"model: {system.source} in {str(torch_dtype).replace('torch.', '')} ({result.denoiser_calls} denoiser "
        f"calls, block density {density})")
    for restorer in result.restorers:
        log(restorer.summary())
    for name, seconds in times.items():
        log(f"  {name:<15} {seconds:7.2f} s")
    log(f"poses -> frames: {poses_to_frames:.2f} s = {n / poses_to_frames:.1f} frames per second; "
        f"everything: {total:.2f} s = {n / total:.1f} frames per second")
    return {"out": str(path), "frames": n, "size": list(hw), "dtype": str(torch_dtype), "times_s": times,
            "poses_to_frames_fps": n / poses_to_frames, "overall_fps": n / total}
