"""Reference background restoration (iasa_core/background_restore.py): the reference's pixels outside both person
masks, the model's inside them, and the switch through the pipeline."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from iasa_core.background_restore import BackgroundRestorer
from iasa_core.pose import layout as L
from iasa_core.pose.regions import pixel_region_labels
from iasa_core.pose.synthetic import synthetic_keypoints

H = W = 96


def _poses(frames: int = 3) -> np.ndarray:
    return synthetic_keypoints(frames, H, W, seed=3).astype(np.float64)


def test_the_background_is_the_references_and_the_person_the_models():
    kp = _poses()
    ref = (np.random.default_rng(0).random((H, W, 3)) * 255).astype(np.uint8)
    frames = np.full((3, H, W, 3), 40, dtype=np.uint8)
    restorer = BackgroundRestorer(ref, kp[0])
    out = restorer.restore(frames, kp)
    person = pixel_region_labels(kp, H, W, cell=2) > 0
    for t in range(3):
        near = ndimage.distance_transform_edt(~(person[t] | person[0])) <= 12  # grow 4 px + fade 7.3 px
        assert np.array_equal(out[t][~near], ref[~near])  # far from both poses: the reference exactly
        assert (out[t][person[t]] == 40).all()  # on the frame's person: the model's pixels
    assert restorer.frames_restored == 3 and restorer.summary() == "background restore: 3 frames"
    assert (frames == 40).all()  # the input is not written to


def test_without_shoulders_nothing_is_restored():
    kp = _poses(1)
    hidden = kp[0].copy()
    hidden[L.L_SHOULDER, 2] = 0.0
    ref = np.zeros((H, W, 3), dtype=np.uint8)
    frames = np.full((1, H, W, 3), 40, dtype=np.uint8)
    restorer = BackgroundRestorer(ref, hidden)
    assert not restorer.usable and "no shoulders" in restorer.summary()
    assert np.array_equal(restorer.restore(frames, kp), frames)


def test_bad_inputs_are_named():
    kp = _poses(1)
    ref = np.zeros((H, W, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"background restore: the reference image must be"):
        BackgroundRestorer(ref[..., :2], kp[0])
    with pytest.raises(ValueError, match=r"the reference keypoints must be \(133, 3\)"):
        BackgroundRestorer(ref, kp[0, :5])
    with pytest.raises(ValueError, match=r"1 frames need keypoints \(1, 133, 3\)"):
        BackgroundRestorer(ref, kp[0]).restore(np.zeros((1, H, W, 3), dtype=np.uint8), kp[0])


def test_generation_puts_the_background_back_when_asked():
    from iasa_core.model.presets import get_preset
    from iasa_core.model.system import PoseWanSystem
    from iasa_core.pipeline import GenerateOptions, fit_poses, generate_video
    from iasa_core.pose.sequence import PoseSequence

    system = PoseWanSystem.random(get_preset("tiny"), seed=0)
    image = (np.random.default_rng(1).random((64, 64, 3)) * 255).astype(np.uint8)
    poses = PoseSequence(synthetic_keypoints(9, 64, 64, seed=1), 64, 64, fps=25.0)
    opt = dict(window_frames=9, overlap_latents=1)
    raw = generate_video(system, image, poses, GenerateOptions(**opt))
    both = generate_video(system, image, poses, GenerateOptions(**opt, background_restore=True, face_restore=True))
    kp = fit_poses(poses, image.shape[:2], image.shape[:2])
    want = BackgroundRestorer(image, kp[0]).restore(raw.frames, kp)
    from iasa_core.face_restore import FaceRestorer

    want = FaceRestorer(image, kp[0]).restore(want, kp)  # the face goes over the background
    assert np.array_equal(both.frames, want)
    assert [n.split(":")[0] for n in both.restore_notes] == ["background restore", "face restore"]
    with pytest.raises(ValueError, match="background_restore must be true, false or none"):
        generate_video(system, image, poses, GenerateOptions(background_restore=1))
