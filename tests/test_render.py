"""Pose rendering: limb/edge colours, thresholds, face switch, canvas scaling, tensor form, CLI."""

import argparse
import time

import av
import numpy as np
import pytest
import torch
from PIL import Image

from iasa_core.pose import layout as L
from iasa_core.pose.render import (
    BODY_COLORS,
    BODY_LIMB_COLORS,
    BODY_LIMBS,
    FACE_POINT_COLOR,
    HAND_EDGE_COLORS,
    HAND_EDGES,
    HAND_POINT_COLOR,
    MOUTH_CLOSED_COLOR,
    MOUTH_FULL_OPEN,
    MOUTH_OPEN_COLOR,
    RenderStyle,
    mouth_opening,
    render_pose_frame,
    render_poses,
    render_poses_tensor,
)
from iasa_core.pose.render_cli import add_parser
from iasa_core.pose.sequence import PoseSequence
from iasa_core.pose.synthetic import synthetic_keypoints

L_SHO_ELB = BODY_LIMBS.index((5, 6))  # OpenPose l_shoulder -> l_elbow


def _kp(points: dict) -> np.ndarray:
    kp = np.zeros((133, 3), dtype=np.float32)
    for i, (x, y, s) in points.items():
        kp[i] = (x, y, s)
    return kp


def _arm(score=1.0):
    return _kp({L.L_SHOULDER: (100.0, 200.0, score), L.L_ELBOW: (300.0, 200.0, score)})


def test_limb_has_its_colour_along_the_segment_and_swaps_with_bgr():
    img = render_pose_frame(_arm(), 400, 512)  # limb half width 4 * 400 / 512 = 3.1 px
    colour = np.array(BODY_LIMB_COLORS[L_SHO_ELB], dtype=np.uint8)
    assert tuple(colour) == (102, 153, 0)  # (170, 255, 0) at 60 %
    for x in range(110, 291, 10):
        assert tuple(img[200, x]) == tuple(colour), x
    for x in range(160, 241, 10):  # an ellipse: widest in the middle
        for y in (198, 202):
            assert tuple(img[y, x]) == tuple(colour), (x, y)
    assert not img[204:, 150:250].any() and not img[:196, 150:250].any()
    # joints in full colour of their OpenPose point (5 l_shoulder, 6 l_elbow)
    assert tuple(img[200, 100]) == BODY_COLORS[5] and tuple(img[200, 300]) == BODY_COLORS[6]
    assert not img[215:].any() and not img[:185].any()  # black away from the limb
    assert not img[:, :90].any() and not img[:, 310:].any()
    assert not render_pose_frame(_arm(), 400, 400, RenderStyle(body=False)).any()
    lit = img.any(-1)
    assert set(map(tuple, img[lit])) == {tuple(colour), BODY_COLORS[5], BODY_COLORS[6]}

    bgr = render_pose_frame(_arm(), 400, 512, RenderStyle(bgr=True))
    assert tuple(bgr[200, 200]) == tuple(colour[::-1])
    assert np.array_equal(bgr, img[..., ::-1])


def test_points_below_min_score_draw_nothing():
    assert not render_pose_frame(_arm(0.2), 400, 400, RenderStyle(min_score=0.3)).any()
    assert render_pose_frame(_arm(0.2), 400, 400, RenderStyle(min_score=0.1)).any()
    # one end missing: no limb, the other joint only
    kp = _arm()
    kp[L.L_ELBOW, 2] = 0.1
    img = render_pose_frame(kp, 400, 400)
    assert tuple(img[200, 100]) == BODY_COLORS[5]
    assert not img[:, 120:].any()


def test_neck_is_the_shoulder_midpoint():
    kp = _kp({L.L_SHOULDER: (300.0, 100.0, 1.0), L.R_SHOULDER: (100.0, 100.0, 1.0), L.NOSE: (200.0, 20.0, 1.0)})
    img = render_pose_frame(kp, 200, 400)
    assert tuple(img[100, 200]) == BODY_COLORS[1]                                  # neck joint
    assert tuple(img[100, 150]) == BODY_LIMB_COLORS[BODY_LIMBS.index((1, 2))]      # neck -> r_shoulder
    assert tuple(img[100, 250]) == BODY_LIMB_COLORS[BODY_LIMBS.index((1, 5))]      # neck -> l_shoulder
    assert tuple(img[60, 200]) == BODY_LIMB_COLORS[BODY_LIMBS.index((1, 0))]       # neck -> nose


def test_hand_edges_use_the_hue_wheel_and_blue_joints():
    base = L.LEFT_HAND[0]
    kp = _kp({base + 0: (50.0, 100.0, 1.0), base + 1: (250.0, 100.0, 1.0)})     # wrist -> thumb 1
    img = render_pose_frame(kp, 200, 300, RenderStyle(body=False))
    assert HAND_EDGES[0] == (0, 1) and HAND_EDGE_COLORS[0] == (255, 0, 0)
    assert tuple(img[100, 150]) == HAND_EDGE_COLORS[0]
    assert tuple(img[100, 50]) == HAND_POINT_COLOR and tuple(img[100, 250]) == HAND_POINT_COLOR
    assert img[95:106, 60:241].any(-1).any(0).all()   # the line is continuous
    assert not img[:90].any() and not img[111:].any()
    assert len(set(HAND_EDGE_COLORS)) == 20
    assert not render_pose_frame(kp, 200, 300, RenderStyle(body=False, hands=False)).any()


def test_face_dots_only_with_face():
    pts = {i: (20.0 + 8 * (i - 23), 50.0, 1.0) for i in L.FACE}
    kp = _kp(pts)
    assert not render_pose_frame(kp, 100, 600).any()
    img = render_pose_frame(kp, 100, 600, RenderStyle(face=True))
    for i in (23, 50, 90):
        assert tuple(img[50, int(pts[i][0])]) == FACE_POINT_COLOR
    assert not img[60:].any()


def _mouth_points(gap: float) -> dict:
    """Lips of a 20 px wide mouth centred at (50, 50) whose inner lips are ``gap`` px apart."""
    pts = {}
    outer = [(40, 50), (44, 47), (47, 46), (50, 47), (53, 46), (56, 47), (60, 50), (56, 54), (53, 55), (50, 55),
             (47, 55), (44, 54)]
    for i, (x, y) in zip(L.OUTER_LIPS, outer, strict=True):
        pts[i] = (float(x), float(y), 1.0)
    inner = [(42, 50), (46, 50 - gap / 2), (50, 50 - gap / 2), (54, 50 - gap / 2), (58, 50), (54, 50 + gap / 2),
             (50, 50 + gap / 2), (46, 50 + gap / 2)]
    for i, (x, y) in zip(L.INNER_LIPS, inner, strict=True):
        pts[i] = (float(x), float(y), 1.0)
    return pts


def test_mouth_patch_brightens_as_the_mouth_opens():
    # inner corners 16 px apart: opening = gap / 16
    closed, half, wide = (_kp(_mouth_points(g)) for g in (0.0, 0.5 * MOUTH_FULL_OPEN * 16, 16.0))
    assert mouth_opening(closed) == 0.0 and mouth_opening(wide) == pytest.approx(1.0)
    assert mouth_opening(half) == pytest.approx(0.5 * MOUTH_FULL_OPEN)
    style = RenderStyle(body=False, hands=False, mouth=True)
    assert tuple(render_pose_frame(closed, 100, 100, style)[50, 50]) == MOUTH_CLOSED_COLOR
    assert tuple(render_pose_frame(wide, 100, 100, style)[50, 50]) == MOUTH_OPEN_COLOR
    mid = render_pose_frame(half, 100, 100, style)[50, 50].astype(int)
    expected = [round(a + 0.5 * (b - a)) for a, b in zip(MOUTH_CLOSED_COLOR, MOUTH_OPEN_COLOR, strict=True)]
    assert np.abs(mid - expected).max() <= 1  # half way (up to rounding)
    img = render_pose_frame(wide, 100, 100, style)
    ys, xs = np.nonzero(img.any(-1))
    assert 40 <= xs.min() <= 42 and 58 <= xs.max() <= 60 and 46 <= ys.min() <= 47 and 54 <= ys.max() <= 55  # the lips
    assert not render_pose_frame(wide, 100, 100, RenderStyle(body=False, hands=False)).any()  # off by default
    hidden = wide.copy()
    hidden[L.INNER_LIPS[2], 2] = 0.0
    assert not render_pose_frame(hidden, 100, 100, style).any()  # a lip point missing: no patch


def test_canvas_scaling_puts_the_joint_at_twice_the_coordinates():
    kp = _kp({L.NOSE: (50.0, 60.0, 1.0)})
    img = render_pose_frame(kp, 512, 512, src_size=(256, 256))
    ys, xs = np.nonzero(img.any(-1))
    assert abs(xs.mean() - 100) < 0.5 and abs(ys.mean() - 120) < 0.5
    assert tuple(img[120, 100]) == BODY_COLORS[0]
    seq = PoseSequence(kp[None], 256, 256)
    assert np.array_equal(render_poses(seq, 512, 512)[0], img)
    assert np.array_equal(render_poses(seq)[0], render_pose_frame(kp, 256, 256))


def test_render_poses_and_tensor():
    seq = PoseSequence(synthetic_keypoints(5, 96, 128, seed=1), 96, 128, fps=30)
    calls = []
    frames = render_poses(seq, style=RenderStyle(face=True), progress=lambda d, t: calls.append((d, t)))
    assert frames.shape == (5, 96, 128, 3) and frames.dtype == np.uint8
    assert calls[-1] == (5, 5) and len(calls) == 5
    assert frames.any() and not frames[:, :, :3].any()  # top rows stay black
    for t in range(5):
        assert np.array_equal(frames[t], render_pose_frame(seq.keypoints[t], 96, 128, RenderStyle(face=True)))
    ten = render_poses_tensor(seq, 64, 64)
    assert ten.shape == (3, 5, 64, 64) and ten.dtype == torch.float32
    assert float(ten.min()) == 0.0 and float(ten.max()) == 255.0
    assert torch.equal(ten, torch.from_numpy(render_poses(seq, 64, 64)).permute(3, 0, 1, 2).float())
    with pytest.raises(ValueError, match="height"):
        render_poses(seq.keypoints)
    with pytest.raises(ValueError, match="133"):
        render_pose_frame(np.zeros((18, 3)), 64, 64)


def test_speed_81_frames_512():
    seq = PoseSequence(synthetic_keypoints(81, 512, 512, seed=0), 512, 512)
    t0 = time.perf_counter()
    render_poses(seq)
    assert time.perf_counter() - t0 < 3.0  # about 0.15 s here; the budget is 1.5 s


def _run(argv):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_writes_mp4_and_pngs(tmp_path, capsys):
    seq = PoseSequence(synthetic_keypoints(7, 128, 96, seed=2), 128, 96, fps=24)
    poses = tmp_path / "poses.json"
    seq.save_json(poses)
    mp4 = tmp_path / "out" / "poses.mp4"
    assert _run(["render-poses", str(poses), "--out", str(mp4), "--size", "64x48", "--bgr"]) == 0
    with av.open(str(mp4)) as c:
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(decoded) == 7 and decoded[0].shape == (64, 48, 3)
    assert "7 pose frames at 64x48 (BGR)" in capsys.readouterr().out

    folder = tmp_path / "pngs"
    assert _run(["render-poses", str(poses), "--out", str(folder), "--face", "--mouth", "--no-hands",
                 "--min-score", "0.5"]) == 0
    files = sorted(folder.glob("*.png"))
    assert len(files) == 7 and files[0].name == "frame_00000.png"
    want = render_poses(PoseSequence.load_json(poses),
                        style=RenderStyle(face=True, mouth=True, hands=False, min_score=0.5))
    assert np.array_equal(np.asarray(Image.open(files[3])), want[3])


def test_cli_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        _run(["render-poses", str(tmp_path / "nope.json"), "--out", str(tmp_path / "a.mp4")])
    seq = PoseSequence(synthetic_keypoints(2, 64, 64, seed=0), 64, 64)
    poses = tmp_path / "p.json"
    seq.save_json(poses)
    for bad in ("12xab", "0x64", "64"):
        with pytest.raises(ValueError, match="--size"):
            _run(["render-poses", str(poses), "--out", str(tmp_path / "a.mp4"), "--size", bad])
    with pytest.raises(ValueError, match="--out"):
        _run(["render-poses", str(poses), "--out", str(tmp_path / "a.gif")])


def test_hand_edges_drawn_together_equal_one_by_one():
    """``_capsules`` (all of a hand's edges in one pass) paints exactly what ``_capsule`` in order paints."""
    from iasa_core.pose import render as R

    rng = np.random.default_rng(0)
    for _ in range(300):
        h, w = (int(v) for v in rng.integers(8, 160, 2))
        one, together = np.zeros((h, w, 3), np.uint8), np.zeros((h, w, 3), np.uint8)
        n = int(rng.integers(0, 22))
        centre = rng.uniform(-20, max(h, w) + 20, 2)
        starts = centre + rng.normal(0, rng.uniform(0.1, 30), (n, 2))
        ends = starts + rng.normal(0, rng.uniform(0, 15), (n, 2))
        if n:
            ends[0] = starts[0]  # a zero-length edge is a disc
        half = float(rng.uniform(0.3, 4))
        colors = rng.integers(0, 256, (n, 3)).astype(np.uint8)
        for k in range(n):
            R._capsule(one, starts[k], ends[k], half, tuple(int(v) for v in colors[k]))
        R._capsules(together, starts, ends, half, colors)
        assert np.array_equal(one, together)
