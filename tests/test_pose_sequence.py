"""PoseSequence <-> ComfyUI POSE_KEYPOINT conversion and JSON files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from iasa_core.pose import layout as L
from iasa_core.pose.sequence import PoseSequence

H, W = 480, 640


def random_keypoints(T: int = 5, seed: int = 0, missing: float = 0.2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    kp = np.zeros((T, L.NUM_KEYPOINTS, 3), dtype=np.float32)
    kp[..., 0] = rng.uniform(0, W, (T, L.NUM_KEYPOINTS))
    kp[..., 1] = rng.uniform(0, H, (T, L.NUM_KEYPOINTS))
    kp[..., 2] = rng.uniform(0.05, 1.0, (T, L.NUM_KEYPOINTS))
    kp[rng.random((T, L.NUM_KEYPOINTS)) < missing] = 0.0
    return kp


def f32(values) -> list[float]:
    """Python floats that survive a float32 round trip exactly."""
    return [float(v) for v in np.asarray(values, dtype=np.float32)]


def openpose_person(seed: int = 1, normalized: bool = False) -> dict:
    """An 18-body / 68-face OpenPose person whose neck is consistent with the shoulders."""
    rng = np.random.default_rng(seed)

    def pts(n):
        a = np.stack([rng.uniform(0, W, n), rng.uniform(0, H, n), rng.uniform(0.1, 1, n)], -1)
        if normalized:
            a[:, 0] /= W
            a[:, 1] /= H
        return a.astype(np.float32).astype(np.float64)

    body = pts(18)
    rs, ls = body[2], body[5]
    body[1] = [(ls[0] + rs[0]) / 2, (ls[1] + rs[1]) / 2, min(ls[2], rs[2])]
    return {
        "pose_keypoints_2d": body.reshape(-1).tolist(),
        "face_keypoints_2d": pts(68).reshape(-1).tolist(),
        "hand_left_keypoints_2d": pts(21).reshape(-1).tolist(),
        "hand_right_keypoints_2d": pts(21).reshape(-1).tolist(),
        "foot_keypoints_2d": pts(6).reshape(-1).tolist(),
    }


def frame(*people: dict) -> dict:
    return {"people": list(people), "canvas_width": W, "canvas_height": H}


# ---------------------------------------------------------------------- dataclass


def test_construct_and_validate():
    seq = PoseSequence(random_keypoints(4), height=H, width=W, fps=30)
    assert len(seq) == 4
    assert seq.keypoints.dtype == np.float32 and seq.fps == 30.0
    with pytest.raises(ValueError, match=r"expected shape \(T, 133, 3\), got \(4, 17, 3\)"):
        PoseSequence(np.zeros((4, 17, 3)), height=H, width=W)
    bad = random_keypoints(2)
    bad[1, 7, 0] = np.nan
    with pytest.raises(ValueError, match="finite.*frame 1, point 7"):
        PoseSequence(bad, height=H, width=W)
    with pytest.raises(ValueError, match="height.*positive.*got 0"):
        PoseSequence(random_keypoints(1), height=0, width=W)
    with pytest.raises(ValueError, match="fps.*positive.*got -1"):
        PoseSequence(random_keypoints(1), height=H, width=W, fps=-1)


def test_missing_points_are_canonical_zeros():
    kp = random_keypoints(1)
    kp[0, 3] = [12.0, 34.0, 0.0]
    seq = PoseSequence(kp, height=H, width=W)
    np.testing.assert_array_equal(seq.keypoints[0, 3], [0, 0, 0])


# ---------------------------------------------------------------------- PoseSequence -> POSE_KEYPOINT


def test_to_pose_keypoint_layout_and_neck():
    kp = random_keypoints(1, missing=0.0)
    kp[0, L.L_SHOULDER] = [100.0, 200.0, 0.9]
    kp[0, L.R_SHOULDER] = [300.0, 250.0, 0.6]
    out = PoseSequence(kp, height=H, width=W).to_pose_keypoint()
    assert len(out) == 1 and out[0]["canvas_width"] == W and out[0]["canvas_height"] == H
    p = out[0]["people"][0]
    lengths = {k: len(v) for k, v in p.items()}
    assert lengths == {"pose_keypoints_2d": 54, "face_keypoints_2d": 204, "hand_left_keypoints_2d": 63,
                       "hand_right_keypoints_2d": 63, "foot_keypoints_2d": 18}
    body = np.array(p["pose_keypoints_2d"]).reshape(18, 3)
    np.testing.assert_allclose(body[1], [200.0, 225.0, np.float32(0.6)])
    np.testing.assert_array_equal(body[2], kp[0, L.R_SHOULDER])
    np.testing.assert_array_equal(body[5], kp[0, L.L_SHOULDER])
    np.testing.assert_array_equal(body[14], kp[0, L.R_EYE])
    np.testing.assert_array_equal(body[17], kp[0, L.L_EAR])
    face = np.array(p["face_keypoints_2d"]).reshape(68, 3)
    np.testing.assert_array_equal(face, kp[0, 23:91])
    right = np.array(p["hand_right_keypoints_2d"]).reshape(21, 3)
    np.testing.assert_array_equal(right, kp[0, 112:133])

    out_n = PoseSequence(kp, height=H, width=W).to_pose_keypoint(normalized=True)
    body_n = np.array(out_n[0]["people"][0]["pose_keypoints_2d"]).reshape(18, 3)
    np.testing.assert_allclose(body_n[1], [200.0 / W, 225.0 / H, np.float32(0.6)])


def test_neck_missing_when_a_shoulder_is_missing():
    kp = random_keypoints(1, missing=0.0)
    kp[0, L.R_SHOULDER] = 0.0
    body = PoseSequence(kp, height=H, width=W).to_pose_keypoint()[0]["people"][0]["pose_keypoints_2d"]
    assert body[3:6] == [0.0, 0.0, 0.0]
    assert body[6:9] == [0.0, 0.0, 0.0]  # the missing right shoulder itself


def test_empty_frame_has_no_people():
    kp = random_keypoints(3)
    kp[1] = 0.0
    out = PoseSequence(kp, height=H, width=W).to_pose_keypoint()
    assert out[1]["people"] == []
    assert len(out[0]["people"]) == 1 and len(out[2]["people"]) == 1


# ---------------------------------------------------------------------- round-trips


@pytest.mark.parametrize("normalized", [False, True])
def test_sequence_round_trip_exact(normalized):
    kp = random_keypoints(6, seed=3)
    kp[2] = 0.0  # a frame with nobody
    seq = PoseSequence(kp, height=H, width=W, fps=24)
    pk = seq.to_pose_keypoint(normalized=normalized)
    if normalized:
        assert max(max(p["pose_keypoints_2d"][0::3]) for f in pk for p in f["people"]) <= 1.0
    back = PoseSequence.from_pose_keypoint(pk, fps=24)
    assert back.keypoints.dtype == np.float32
    np.testing.assert_array_equal(back.keypoints, seq.keypoints)
    assert (back.height, back.width, back.fps) == (H, W, 24.0)


@pytest.mark.parametrize("normalized", [False, True])
def test_pose_keypoint_round_trip(normalized):
    frames = [frame(openpose_person(seed=s, normalized=normalized)) for s in range(4)]
    frames.insert(2, frame())
    out = PoseSequence.from_pose_keypoint(frames).to_pose_keypoint(normalized=normalized)
    assert len(out) == len(frames)
    for got, want in zip(out, frames, strict=True):
        assert got["canvas_width"] == W and got["canvas_height"] == H
        assert len(got["people"]) == len(want["people"])
        for gp, wp in zip(got["people"], want["people"], strict=True):
            assert set(gp) == set(wp)
            for key in wp:
                if normalized:
                    np.testing.assert_allclose(gp[key], wp[key], atol=1e-4, rtol=0)
                else:
                    assert gp[key] == wp[key], key


# ---------------------------------------------------------------------- from POSE_KEYPOINT variants


def test_single_dict_is_one_frame():
    seq = PoseSequence.from_pose_keypoint(frame(openpose_person()))
    assert len(seq) == 1 and (seq.height, seq.width) == (H, W)


def test_missing_people():
    p = openpose_person()
    frames = [frame(p), {"canvas_width": W, "canvas_height": H}, frame(), {"people": None}]
    seq = PoseSequence.from_pose_keypoint(frames)
    assert len(seq) == 4
    assert (seq.keypoints[0, :, 2] > 0).sum() == 133
    for t in (1, 2, 3):
        assert not seq.keypoints[t].any()


@pytest.mark.parametrize("how", ["none", "absent", "empty"])
def test_missing_face_hands_feet(how):
    p = openpose_person()
    for key in ("face_keypoints_2d", "hand_left_keypoints_2d", "hand_right_keypoints_2d",
                "foot_keypoints_2d"):
        if how == "none":
            p[key] = None
        elif how == "absent":
            del p[key]
        else:
            p[key] = []
    seq = PoseSequence.from_pose_keypoint([frame(p)])
    assert not seq.keypoints[0, 17:].any()
    body = np.array(p["pose_keypoints_2d"]).reshape(18, 3)
    np.testing.assert_array_equal(seq.keypoints[0, L.NOSE], body[0].astype(np.float32))
    np.testing.assert_array_equal(seq.keypoints[0, L.L_WRIST], body[7].astype(np.float32))
    out = seq.to_pose_keypoint()[0]["people"][0]
    assert out["face_keypoints_2d"] == [0.0] * 204
    assert out["hand_left_keypoints_2d"] == [0.0] * 63


def test_seventy_point_face_keeps_first_68():
    p = openpose_person()
    pupils = [10.0, 20.0, 0.5, 30.0, 40.0, 0.5]
    p["face_keypoints_2d"] = p["face_keypoints_2d"] + pupils
    seq = PoseSequence.from_pose_keypoint([frame(p)])
    want = np.array(p["face_keypoints_2d"][:204]).reshape(68, 3).astype(np.float32)
    np.testing.assert_array_equal(seq.keypoints[0, 23:91], want)
    assert len(seq.to_pose_keypoint()[0]["people"][0]["face_keypoints_2d"]) == 204


def test_coco17_body():
    rng = np.random.default_rng(7)
    body = np.stack([rng.uniform(0, W, 17), rng.uniform(0, H, 17), rng.uniform(0.1, 1, 17)], -1)
    body = body.astype(np.float32)
    seq = PoseSequence.from_pose_keypoint([frame({"pose_keypoints_2d": body.reshape(-1).tolist()})])
    np.testing.assert_array_equal(seq.keypoints[0, :17], body)
    assert not seq.keypoints[0, 17:].any()
    op = np.array(seq.to_pose_keypoint()[0]["people"][0]["pose_keypoints_2d"]).reshape(18, 3)
    np.testing.assert_array_equal(op[2], body[L.R_SHOULDER])
    np.testing.assert_allclose(op[1, :2], (body[5, :2].astype(np.float64) + body[6, :2]) / 2)


def test_person_selection():
    a, b = openpose_person(seed=1), openpose_person(seed=2)
    frames = [frame(a, b), frame(a)]
    s0 = PoseSequence.from_pose_keypoint(frames, person=0)
    s1 = PoseSequence.from_pose_keypoint(frames, person=1)
    nose_a = np.float32(a["pose_keypoints_2d"][:3])
    nose_b = np.float32(b["pose_keypoints_2d"][:3])
    np.testing.assert_array_equal(s0.keypoints[0, L.NOSE], nose_a)
    np.testing.assert_array_equal(s1.keypoints[0, L.NOSE], nose_b)
    # person 1 is absent from frame 1: a gap, not an error
    assert not s1.keypoints[1].any()
    with pytest.raises(ValueError, match="person"):
        PoseSequence.from_pose_keypoint(frames, person=-1)


def test_canvas_from_arguments_and_missing_canvas_error():
    p = openpose_person()
    frames = [{"people": [p]}, {"people": [p]}]
    with pytest.raises(ValueError, match="canvas_height/canvas_width.*height=.*width="):
        PoseSequence.from_pose_keypoint(frames)
    seq = PoseSequence.from_pose_keypoint(frames, height=H, width=W)
    assert (seq.height, seq.width) == (H, W)
    # the first frame that states a canvas wins over the arguments
    frames2 = [{"people": [p]}, {"people": [p], "canvas_width": 1000, "canvas_height": 800}]
    seq2 = PoseSequence.from_pose_keypoint(frames2, height=H, width=W)
    assert (seq2.height, seq2.width) == (800, 1000)


def test_normalised_detected_per_frame():
    pix = openpose_person(seed=4)
    norm = openpose_person(seed=4, normalized=True)
    seq = PoseSequence.from_pose_keypoint([frame(pix), frame(norm)])
    np.testing.assert_allclose(seq.keypoints[1], seq.keypoints[0], atol=1e-3)
    assert seq.keypoints[1, :, 0].max() > 1.0


def test_wrong_length_error_names_frame_key_lengths():
    p = openpose_person()
    p["hand_left_keypoints_2d"] = p["hand_left_keypoints_2d"][:60]
    with pytest.raises(ValueError) as err:
        PoseSequence.from_pose_keypoint([frame(openpose_person()), frame(p)])
    msg = str(err.value)
    assert "frame 1" in msg and "hand_left_keypoints_2d" in msg and "63" in msg and "got 60" in msg

    q = openpose_person()
    q["pose_keypoints_2d"] = q["pose_keypoints_2d"][:50]
    with pytest.raises(ValueError, match=r"frame 0, 'pose_keypoints_2d'.*54.*51.*got 50"):
        PoseSequence.from_pose_keypoint([frame(q)])
    r = openpose_person()
    r["face_keypoints_2d"] = r["face_keypoints_2d"][:201]
    with pytest.raises(ValueError, match=r"'face_keypoints_2d'.*204.*210.*got 201"):
        PoseSequence.from_pose_keypoint([frame(r)])


# ---------------------------------------------------------------------- JSON files


def test_save_load_round_trip(tmp_path):
    seq = PoseSequence(random_keypoints(5, seed=9), height=H, width=W, fps=12.5)
    path = tmp_path / "pose.json"
    seq.save_json(path)
    raw = json.loads(path.read_text())
    assert isinstance(raw, list) and len(raw) == 5
    assert all(f["fps"] == 12.5 and f["canvas_width"] == W for f in raw)
    back = PoseSequence.load_json(path)
    np.testing.assert_array_equal(back.keypoints, seq.keypoints)
    assert (back.height, back.width, back.fps) == (H, W, 12.5)
    assert PoseSequence.load_json(path, fps=30).fps == 30.0


def test_load_plain_list_and_frames_dict(tmp_path):
    frames = [frame(openpose_person(seed=s)) for s in range(3)]
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(frames))
    seq = PoseSequence.load_json(plain)
    assert len(seq) == 3 and seq.fps == 25.0
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"frames": frames, "fps": 50}))
    seq2 = PoseSequence.load_json(wrapped)
    assert seq2.fps == 50.0
    np.testing.assert_array_equal(seq2.keypoints, seq.keypoints)


def test_load_errors(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(FileNotFoundError, match=r"nope\.json.*POSE_KEYPOINT list"):
        PoseSequence.load_json(missing)
    broken = tmp_path / "broken.json"
    broken.write_text("[{")
    with pytest.raises(ValueError, match=r"broken\.json.*not valid JSON.*POSE_KEYPOINT list"):
        PoseSequence.load_json(broken)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError, match=r"wrong\.json.*one \{people: \[\.\.\.\], canvas_width"):
        PoseSequence.load_json(wrong)
    numbers = tmp_path / "numbers.json"
    numbers.write_text(json.dumps([1, 2, 3]))
    with pytest.raises(ValueError, match=r"numbers\.json.*POSE_KEYPOINT list"):
        PoseSequence.load_json(numbers)
    short = tmp_path / "short.json"
    p = openpose_person()
    p["pose_keypoints_2d"] = p["pose_keypoints_2d"][:9]
    short.write_text(json.dumps([frame(p)]))
    with pytest.raises(ValueError, match=r"short\.json.*frame 0.*pose_keypoints_2d.*got 9"):
        PoseSequence.load_json(short)
