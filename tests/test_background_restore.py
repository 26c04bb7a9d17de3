"""Reference background restoration (iasa_core/background_restore.py): the reference's pixels outside both person
masks, the model's inside them, and the switch through the pipeline."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from iasa_core.background_restore import TIGHT, BackgroundRestorer, person_mask
from iasa_core.pose import layout as L
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
    ref_person = person_mask(kp[0], (H, W), 0, 0.3)
    for t in range(3):
        person = person_mask(kp[t], (H, W), 0, 0.3)
        assert person.sum() > 300
        far = ndimage.distance_transform_edt(~person) > 12  # grown 4 px, then the fade over 7.3 px
        clear = far & (ndimage.distance_transform_edt(~ref_person) > 5)  # and clear of the reference's person
        assert clear.sum() > 3000 and np.array_equal(out[t][clear], ref[clear])  # the reference exactly
        assert (out[t][person] == 40).all()  # on the frame's person: the model's pixels
    assert restorer.frames_restored == 3 and restorer.summary() == "background restore: 3 frames"
    assert (frames == 40).all()  # the input is not written to


def test_where_the_reference_person_stood_the_background_is_filled_in():
    kp = _poses(1)[0]
    ref = np.empty((H, W, 3), dtype=np.uint8)
    ref[:] = (10, 200, 30)
    ref[person_mask(kp, (H, W), 0, 0.3)] = (200, 10, 200)  # the person, in a colour of their own
    moved = kp.copy()
    moved[:, 0] += 40  # the person has stepped to the right
    out = BackgroundRestorer(ref, kp).restore(np.zeros((1, H, W, 3), dtype=np.uint8), moved[None])[0]
    old = person_mask(kp, (H, W), 0, 0.3) & (ndimage.distance_transform_edt(~person_mask(moved, (H, W), 0, 0.3))
                                             > 12)
    assert old.sum() > 200 and (out[old] == (10, 200, 30)).all()  # the background, not the person's ghost
    tight = BackgroundRestorer(ref, kp, grow=TIGHT[0], feather=TIGHT[1])
    near = ndimage.distance_transform_edt(~person_mask(moved, (H, W), 0, 0.3))
    ring = (near > 2) & (near < 2.9)  # restored under the tight margins (1 px grown, 2 px fade), kept under the wide
    out_tight = tight.restore(np.zeros((1, H, W, 3), dtype=np.uint8), moved[None])[0]
    assert (out_tight[ring] > 0).any(-1).all() and (out[ring] == 0).all()


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
