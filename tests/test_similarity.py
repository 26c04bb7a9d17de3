"""Rigid alignment error: closed form against brute force, invariances, missing points."""

import numpy as np
import pytest

from iasa_core.pose.layout import NUM_KEYPOINTS, UPPER_BODY
from iasa_core.pose.similarity import rigid_alignment_error


def _rot(p, a, t):
    r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return p @ r.T + np.asarray(t)


def _frames(*poses):
    kp = np.zeros((len(poses), NUM_KEYPOINTS, 3))
    for i, p in enumerate(poses):
        kp[i, : len(p), :2] = p
        kp[i, : len(p), 2] = 1.0
    return kp


def _brute(a, b):
    best = np.inf
    for ang in np.linspace(-np.pi, np.pi, 40001):
        r = _rot(b, ang, 0)
        t = (a - r).mean(0)
        best = min(best, np.sqrt(((a - r - t) ** 2).sum(1).mean()))
    return best


def test_rigid_copies_have_zero_error_and_noise_matches_brute_force():
    rng = np.random.default_rng(1)
    p = rng.normal(size=(len(UPPER_BODY), 2)) * 40 + 300
    noisy = p + rng.normal(size=p.shape) * 4
    kp = _frames(p, _rot(p, 0.7, [30, -12]), _rot(p, -2.5, [-100, 50]), noisy)
    err = rigid_alignment_error(kp)
    assert err.shape == (4, 4)
    np.testing.assert_allclose(err[:3, :3], 0, atol=1e-6)
    np.testing.assert_allclose(err, err.T, atol=1e-9)
    assert err[0, 3] == pytest.approx(_brute(p, noisy), abs=1e-4)
    assert err[3, 1] == pytest.approx(_brute(noisy, _rot(p, 0.7, [30, -12])), abs=1e-4)


def test_reflection_is_not_a_rigid_motion():
    rng = np.random.default_rng(2)
    p = rng.normal(size=(len(UPPER_BODY), 2)) * 40
    mirrored = p * [-1, 1]
    err = rigid_alignment_error(_frames(p, mirrored))
    assert err[0, 1] > 1.0
    assert err[0, 1] == pytest.approx(_brute(p, mirrored), abs=1e-4)


def test_low_score_points_are_ignored_in_both_frames():
    rng = np.random.default_rng(3)
    p = rng.normal(size=(len(UPPER_BODY), 2)) * 40 + 200
    q = _rot(p, 0.3, [5, 5])
    q[4] += 500  # a wild outlier...
    kp = _frames(p, q)
    assert rigid_alignment_error(kp)[0, 1] > 10
    kp[1, 4, 2] = 0.1  # ...with a low score in one frame only
    assert rigid_alignment_error(kp)[0, 1] == pytest.approx(0, abs=1e-6)


def test_too_few_common_points_is_infinite():
    rng = np.random.default_rng(4)
    p = rng.normal(size=(len(UPPER_BODY), 2))
    kp = _frames(p, p)
    kp[1, 1:, 2] = 0.0
    err = rigid_alignment_error(kp)
    assert np.isinf(err[0, 1]) and np.isinf(err[1, 0])
    assert err[0, 0] == pytest.approx(0, abs=1e-9)


def test_bad_shape_error():
    with pytest.raises(ValueError, match=r"\(T, points, 3\)"):
        rigid_alignment_error(np.zeros((5, 133)))
