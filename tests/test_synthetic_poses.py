"""The synthetic pose fixture: deterministic, on the canvas, moving, with a mouth that opens."""

import numpy as np

from iasa_core.pose import layout as L
from iasa_core.pose.synthetic import synthetic_keypoints


def test_synthetic_keypoints_shape_determinism_and_motion():
    a = synthetic_keypoints(33, 240, 320, seed=3)
    assert a.shape == (33, L.NUM_KEYPOINTS, 3) and a.dtype == np.float32
    np.testing.assert_array_equal(a, synthetic_keypoints(33, 240, 320, seed=3))
    assert not np.array_equal(a, synthetic_keypoints(33, 240, 320, seed=4))
    seen = a[..., 2] > 0
    assert seen[:, list(L.UPPER_BODY)].all()
    assert ((a[..., 0] >= 0) & (a[..., 0] < 320) & (a[..., 1] >= 0) & (a[..., 1] < 240))[seen].all()
    wrist_path = np.linalg.norm(np.diff(a[:, L.L_WRIST, :2], axis=0), axis=-1).sum()
    assert wrist_path > 20  # the arms gesture
    upper_arm = np.linalg.norm(a[:, L.L_SHOULDER, :2] - a[:, L.L_ELBOW, :2], axis=-1)
    np.testing.assert_allclose(upper_arm, upper_arm[0], rtol=1e-4)  # bone lengths are kept
    lip_gap = a[:, 23 + 66, 1] - a[:, 23 + 62, 1]  # inner lower minus inner upper lip
    assert lip_gap.max() > 2 * lip_gap.min()
