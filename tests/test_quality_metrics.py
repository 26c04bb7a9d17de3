"""Quality metrics of `bench quality`: PSNR, SSIM, region PSNR and the lip-sync proxy, against references."""

import math

import numpy as np
import pytest

from iasa_core.bench import metrics as M
from iasa_core.pose.synthetic import synthetic_keypoints


def _frames(seed=0, t=3, h=32, w=40):
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def test_psnr_matches_the_formula_and_masks():
    a = np.zeros((2, 4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0, 0] = 10  # one error of 10 among 96 values
    assert M.psnr(a, b) == pytest.approx(10 * math.log10(255 ** 2 / (100 / 96)))
    mask = np.zeros((2, 4, 4), bool)
    mask[0, 0, 0] = True  # 3 values inside the mask, one wrong by 10
    assert M.psnr(a, b, mask) == pytest.approx(10 * math.log10(255 ** 2 / (100 / 3)))
    mask[:] = False
    mask[1] = True
    assert M.psnr(a, b, mask) == pytest.approx(10 * math.log10(255 ** 2 / 1e-10))  # error-free: the floor
    assert math.isnan(M.psnr(a, b, np.zeros((2, 4, 4), bool)))


def test_ssim_identity_symmetry_and_a_hand_computed_case():
    x = _frames(1)
    assert M.ssim(x, x) == pytest.approx(1.0)
    y = _frames(2)
    assert M.ssim(x, y) == pytest.approx(M.ssim(y, x))
    assert M.ssim(x, y) < 0.1
    # Constant images: SSIM reduces to the luminance term (2ab + c1) / (a^2 + b^2 + c1).
    a = np.full((1, 16, 16, 3), 100, np.uint8)
    b = np.full((1, 16, 16, 3), 140, np.uint8)
    c1 = (0.01 * 255) ** 2
    assert M.ssim(a, b) == pytest.approx((2 * 100 * 140 + c1) / (100 ** 2 + 140 ** 2 + c1))


def test_ssim_falls_with_noise():
    x = _frames(3, h=48, w=48)
    rng = np.random.default_rng(0)
    prev = 1.0
    for sigma in (5, 20, 60):
        noisy = np.clip(x + rng.normal(0, sigma, x.shape), 0, 255).astype(np.uint8)
        s = M.ssim(noisy, x)
        assert s < prev
        prev = s


def test_region_masks_and_mouth_boxes_follow_the_keypoints():
    kp = synthetic_keypoints(5, 128, 128, seed=0)
    masks = M.region_masks(kp, 128, 128)
    assert masks["face"].shape == (5, 128, 128) and masks["face"].any() and masks["hands"].any()
    assert not (masks["face"] & masks["hands"]).any()
    boxes = M.mouth_boxes(kp, 128, 128)
    lips = kp[:, 71:91, :2]
    assert (boxes[:, 0] <= lips[..., 0].min(1)).all() and (boxes[:, 2] >= lips[..., 0].max(1)).all()
    assert (boxes[:, 1] <= lips[..., 1].min(1)).all() and (boxes[:, 3] >= lips[..., 1].max(1)).all()
    assert (boxes[:, 2:] > boxes[:, :2]).all()


def test_lip_sync_correlates_mouth_darkness():
    kp = np.repeat(synthetic_keypoints(1, 64, 64, seed=1), 12, axis=0)  # a still head: the box stays put
    boxes = M.mouth_boxes(kp, 64, 64)
    opening = np.sin(np.linspace(0, 6, 12)) * 0.5 + 0.5
    truth = np.full((12, 64, 64, 3), 200, np.uint8)
    for t, (x0, y0, x1, y1) in enumerate(boxes):
        truth[t, y0:y1, x0:x1] = int(200 - 150 * opening[t])
    assert M.lip_sync(truth, truth, kp) == pytest.approx(1.0)
    frozen = np.repeat(truth[:1], 12, axis=0)
    assert math.isnan(M.lip_sync(frozen, truth, kp))  # a still mouth has no correlation at all
    inverted = truth.copy()
    for t, (x0, y0, x1, y1) in enumerate(boxes):
        inverted[t, y0:y1, x0:x1] = int(50 + 150 * opening[t])
    assert M.lip_sync(inverted, truth, kp) == pytest.approx(-1.0, abs=1e-3)  # uint8 rounding
    assert M.pearson([1, 2, 3], [2, 4, 6.5]) == pytest.approx(np.corrcoef([1, 2, 3], [2, 4, 6.5])[0, 1])


def test_lip_sync_takes_out_what_the_moving_box_sees_over_a_still_copy():
    # The head slides with the mouth's opening (speech moves both): the box then moves over a frozen copy
    # of frame 0 too, which the plain correlation scored as lip sync.
    base = synthetic_keypoints(1, 64, 64, seed=1)
    opening = 0.5 - 0.5 * np.cos(np.linspace(0, 9, 24))  # closed in frame 0
    kp = np.repeat(base, 24, axis=0)
    kp[:, :, 0] += np.round(6 * opening)[:, None]
    boxes = M.mouth_boxes(kp, 64, 64)
    truth = np.full((24, 64, 64, 3), 200, np.uint8)
    for t, (x0, y0, x1, y1) in enumerate(boxes):
        truth[t, y0:y1, x0:x1] = int(150 - 100 * opening[t])  # lips darker than the face even when closed
    frozen = np.repeat(truth[:1], 24, axis=0)
    assert abs(M.pearson(M.mouth_signal(frozen, boxes), M.mouth_signal(truth, boxes))) > 0.5  # the old proxy
    assert math.isnan(M.lip_sync(frozen, truth, kp))
    assert M.lip_sync(truth, truth, kp) == pytest.approx(1.0)
    noisy = np.clip(truth + np.random.default_rng(0).normal(0, 20, truth.shape), 0, 255).astype(np.uint8)
    assert 0.8 < M.lip_sync(noisy, truth, kp) < 1.0
    # partial correlation against numpy's: residuals of least-squares fits on [1, control]
    rng = np.random.default_rng(2)
    a, b, c = rng.normal(size=(3, 50))
    design = np.stack([np.ones(50), c], 1)

    def rest(v):
        return v - design @ np.linalg.lstsq(design, v, rcond=None)[0]

    assert M.partial_pearson(a, b, c) == pytest.approx(np.corrcoef(rest(a), rest(b))[0, 1])


def test_video_metrics_checks_shapes():
    x = _frames(0, t=2, h=32, w=32)
    kp = synthetic_keypoints(2, 32, 32, seed=0)
    out = M.video_metrics(x, x, kp)
    assert set(out) == {"psnr", "first_psnr", "ssim", "face_psnr", "hand_psnr", "lip_sync"}
    assert out["first_psnr"] == M.psnr(x[:1], x[:1])
    with pytest.raises(ValueError, match="same shape"):
        M.psnr(x, x[:1])
    with pytest.raises(ValueError, match="keypoint frames"):
        M.video_metrics(x, x, kp[:1])
