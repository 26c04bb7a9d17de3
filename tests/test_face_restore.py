"""Reference face restoration (iasa_core/face_restore.py): the warp is exact, the blend stays on the head, and the
switch reaches the pipeline, the command line, the node and the embedded models' defaults."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from iasa_core.face_restore import FACE, FaceRestorer, head_points
from iasa_core.pose import layout as L
from iasa_core.pose.synthetic import synthetic_keypoints
from iasa_core.restoration import restore_setting

H = W = 96


def _reference(seed: int = 0) -> np.ndarray:
    """A smooth random picture (bilinear sampling of it is close to its pixels)."""
    rng = np.random.default_rng(seed)
    return np.clip(ndimage.zoom(rng.random((12, 12, 3)) * 255, (8, 8, 1), order=1), 0, 255).astype(np.uint8)


def _pose() -> np.ndarray:
    kp = synthetic_keypoints(1, H, W, seed=3)[0].astype(np.float64)
    assert (kp[FACE, 2] > 0.3).all()
    return kp


def _moved(kp: np.ndarray, a: complex, shift: tuple[float, float]) -> np.ndarray:
    """Every point moved by the similarity z -> a (z - c) + c + shift, c the face centre."""
    out = kp.copy()
    c = kp[FACE, :2].mean(0)
    z = a * ((kp[:, 0] - c[0]) + 1j * (kp[:, 1] - c[1]))
    out[:, 0], out[:, 1] = z.real + c[0] + shift[0], z.imag + c[1] + shift[1]
    return out


def _core(kp: np.ndarray, margin: float = 2.5) -> np.ndarray:
    """Pixels well inside the head mesh (the feather does not reach them)."""
    from scipy.spatial import Delaunay

    pts = head_points(kp)
    ys, xs = np.mgrid[0:H, 0:W]
    inside = Delaunay(pts).find_simplex(np.stack([xs.ravel(), ys.ravel()], -1)) >= 0
    inside = inside.reshape(H, W)
    return ndimage.binary_erosion(inside, iterations=int(np.ceil(margin))) if margin > 0 else inside


def test_a_still_face_is_the_reference_itself():
    ref, kp = _reference(), _pose()
    restorer = FaceRestorer(ref, kp)
    frames = np.zeros((2, H, W, 3), dtype=np.uint8)
    out = restorer.restore(frames, np.stack([kp, kp]))
    core = _core(kp)
    assert core.sum() > 150
    assert np.array_equal(out[:, core], np.broadcast_to(ref[core], out[:, core].shape))
    # far from the head nothing changes
    far = ~ndimage.binary_dilation(_core(kp, 0), iterations=6)
    assert np.array_equal(out[:, far], frames[:, far])
    assert (restorer.frames_restored, restorer.frames_skipped) == (2, 0)
    assert not frames.any()  # the input is not written to


def test_a_moved_head_carries_the_reference_along():
    ref, kp = _reference(1), _pose()
    restorer = FaceRestorer(ref, kp)
    a = 1.15 * np.exp(1j * np.deg2rad(12.0))
    moved = _moved(kp, a, (4.0, -3.0))
    out = restorer.restore(np.zeros((1, H, W, 3), dtype=np.uint8), moved[None])[0]
    # the expected picture: each pixel reads the reference through the inverse similarity, bilinearly
    c = kp[FACE, :2].mean(0)
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    z = ((xs - c[0] - 4.0) + 1j * (ys - c[1] + 3.0)) / a
    want = np.stack([ndimage.map_coordinates(ref[..., k].astype(np.float32), [z.imag + c[1], z.real + c[0]],
                                             order=1, mode="nearest") for k in range(3)], -1)
    core = _core(moved)
    diff = np.abs(out[core].astype(np.int32) - np.rint(want[core]).astype(np.int32))
    assert core.sum() > 150 and diff.max() <= 1


def test_the_mouth_opens_with_the_lips():
    # lower lip and jaw lowered: the pixels between the lips stretch, those above the mouth stay
    ref, kp = _reference(2), _pose()
    opened = kp.copy()
    lower = [i for i in L.FACE_JAW[5:12]] + [L.OUTER_LIPS[j] for j in range(7, 12)] + [88, 89, 90]
    opened[lower, 1] += 3.0
    out = FaceRestorer(ref, kp).restore(np.zeros((1, H, W, 3), dtype=np.uint8), opened[None])[0]
    eyes = kp[L.FACE[36]:L.FACE[48], :2]
    y0, y1 = int(eyes[:, 1].min()) - 1, int(eyes[:, 1].max()) + 2
    x0, x1 = int(eyes[:, 0].min()), int(eyes[:, 0].max()) + 1
    assert np.array_equal(out[y0:y1, x0:x1], ref[y0:y1, x0:x1])  # the eyes did not move
    chin = kp[L.FACE[8], :2]
    x, y = int(round(chin[0])), int(round(chin[1])) - 2
    assert np.abs(out[y + 3].astype(int) - ref[y].astype(int))[x].max() <= 2  # the chin moved down 3 pixels


def _shut_and_opened(gap: float) -> tuple[np.ndarray, np.ndarray]:
    """A face three times the synthetic one with its lips shut, and the same face with the lower lip and jaw
    lowered by ``gap`` pixels."""
    kp = _moved(_pose(), 3.0, (0.0, -10.0))
    kp[[84, 85, 86, 88, 89, 90], 1] = kp[[83, 87], 1].mean()  # the inner lips meet
    opened = kp.copy()
    lower = [i for i in L.FACE_JAW[5:12]] + [L.OUTER_LIPS[j] for j in range(7, 12)] + [88, 89, 90]
    opened[lower, 1] += gap
    return kp, opened


def test_an_opened_mouth_shows_a_dark_inside_and_upper_teeth(monkeypatch):
    import iasa_core.face_restore as fr
    from iasa_core.pose.render import mouth_opening

    ref = _reference(4)
    shut, opened = _shut_and_opened(6.0)
    assert mouth_opening(shut) == 0.0 and mouth_opening(opened) > 0.4
    restorer = FaceRestorer(ref, shut)
    out = restorer.restore(np.zeros((2, H, W, 3), dtype=np.uint8), np.stack([shut, opened]))
    core = _core(shut, margin=7)  # beyond the feather of a face this size
    assert core.sum() > 500 and np.array_equal(out[0, core], ref[core])  # lips still shut: the reference
    # the photo's lip colour: bilinear reads halfway between the outer and inner points of each lip's middle
    mids = 0.5 * (shut[[73, 74, 75, 81, 80, 79], :2] + shut[[84, 85, 86, 90, 89, 88], :2])
    lips = np.stack([ndimage.map_coordinates(ref[..., c].astype(np.float64), [mids[:, 1], mids[:, 0]], order=1)
                     for c in range(3)], -1).mean(0)
    x, top = int(round(opened[85, 0])), opened[85, 1]
    assert np.array_equal(out[1, int(round(top + 1)), x], [240, 240, 235])  # 1 px under the upper lip: teeth
    assert np.abs(out[1, int(round(top + 4)), x] - fr.CAVITY_SHADE * lips).max() <= 1.0  # deeper: the inside
    # an open mouth in the photo brings its own inside along the mesh: nothing is drawn over it
    open_ref = FaceRestorer(ref, _moved(_pose(), 3.0, (0.0, -10.0)))
    wider = _moved(_pose(), 3.0, (0.0, -10.0))
    wider[[88, 89, 90], 1] += 4.0
    drawn = open_ref.restore(np.zeros((1, H, W, 3), dtype=np.uint8), wider[None])
    monkeypatch.setattr(fr, "MOUTH_OPEN", np.inf)  # lips never count as apart: never drawn
    assert np.array_equal(drawn, FaceRestorer(ref, _moved(_pose(), 3.0, (0.0, -10.0))).restore(
        np.zeros((1, H, W, 3), dtype=np.uint8), wider[None]))
    assert not np.array_equal(out, FaceRestorer(ref, shut).restore(np.zeros((2, H, W, 3), dtype=np.uint8),
                                                                  np.stack([shut, opened])))


def test_the_drawn_mouth_covers_the_grown_gap():
    from iasa_core.face_restore import MOUTH_GROW, mouth_cover
    from iasa_core.pose.regions import convex_hull

    shut, opened = _shut_and_opened(6.0)
    ys, xs = np.mgrid[0:H, 0:W]
    pts = np.stack([xs.ravel(), ys.ravel()], -1).astype(np.float64)
    cavity, teeth = mouth_cover(opened[FACE, :2], pts)
    hull = convex_hull(opened[list(L.INNER_LIPS), :2])
    edges = np.roll(hull, -1, 0) - hull
    area = 0.5 * abs((hull[:, 0] * np.roll(hull[:, 1], -1) - np.roll(hull[:, 0], -1) * hull[:, 1]).sum())
    m = MOUTH_GROW * np.hypot(*(opened[87, :2] - opened[83, :2]))
    grown = area + np.hypot(edges[:, 0], edges[:, 1]).sum() * m + np.pi * m * m  # the hull's Minkowski sum
    assert abs((cavity + teeth).sum() / grown - 1) < 0.02
    assert ((cavity >= 0) & (teeth >= 0) & (cavity + teeth <= 1 + 1e-9)).all()
    w_t, w_c = teeth / teeth.sum(), cavity / cavity.sum()
    assert (pts[:, 1] @ w_c) - (pts[:, 1] @ w_t) > 2.0  # the teeth hang under the upper lip, above the inside
    assert not np.concatenate(mouth_cover(shut[FACE, :2], pts)).any()  # shut lips: nothing


def _with_eyes(kp: np.ndarray, height: float) -> np.ndarray:
    """The pose with both eyes redrawn in the 68-point order (corner, upper lid, upper lid, corner, lower lid,
    lower lid) at their centres, 9 px wide and ``height`` px open."""
    import iasa_core.face_restore as fr

    out = kp.copy()
    shape = np.array([[-4.5, 0.0], [-1.5, -0.5], [1.5, -0.5], [4.5, 0.0], [1.5, 0.5], [-1.5, 0.5]])
    for eye in fr.EYES:
        idx = FACE[eye]
        out[idx, :2] = kp[idx, :2].mean(0) + shape * [1.0, height]
    return out


def test_a_closing_eye_keeps_its_size_under_the_lid(monkeypatch):
    import iasa_core.face_restore as fr

    ref = _reference(6)
    kp = _with_eyes(_moved(_pose(), 3.0, (0.0, 20.0)), 4.0)
    restorer = FaceRestorer(ref, kp)
    shut, half = _with_eyes(kp, 0.0), _with_eyes(kp, 2.4)  # shut, and 60 % of the photo's opening
    frames = np.zeros((2, H, W, 3), dtype=np.uint8)
    out = restorer.restore(frames, np.stack([shut, half]))
    monkeypatch.setattr(fr, "LID_CLOSED", 0.0)  # never closing: the mesh alone
    squeezed = FaceRestorer(ref, kp).restore(frames, np.stack([shut, half]))
    assert np.array_equal(out[1], squeezed[1])  # 60 % open: the mesh, as before
    face = kp[FACE, :2]
    for eye, brow in zip(fr.EYES, fr.BROWS_ABOVE, strict=True):
        mids = 0.5 * (face[eye[[1, 2]]] + face[list(brow)])
        skin = np.stack([ndimage.map_coordinates(ref[..., c].astype(np.float64), [mids[:, 1], mids[:, 0]], order=1)
                         for c in range(3)], -1).mean(0)
        cx, cy = (int(round(v)) for v in face[eye].mean(0))
        lid = out[0, cy - 2, cx - 1:cx + 2].astype(np.float64)  # where the photo's open eye was: the lid's skin
        assert np.abs(lid - skin).max() <= 1.0 and np.abs(squeezed[0, cy - 2, cx - 1:cx + 2] - skin).max() > 5
        edge = out[0, cy, cx].astype(np.float64)  # on the shut lids: their edge, the photo's darkest upper-lid colours
        top = np.stack([ndimage.map_coordinates(ref[..., c].astype(np.float64), [face[eye[[1, 2]], 1],
                                                                                  face[eye[[1, 2]], 0]], order=1)
                        for c in range(3)], -1).min(0)
        assert np.abs(edge - top).max() <= 1.0


def test_frames_without_a_face_are_left_alone():
    ref, kp = _reference(), _pose()
    hidden = kp.copy()
    hidden[FACE[10], 2] = 0.1  # one face point below the score
    frames = np.full((2, H, W, 3), 77, dtype=np.uint8)
    restorer = FaceRestorer(ref, kp)
    out = restorer.restore(frames, np.stack([hidden, kp]))
    assert np.array_equal(out[0], frames[0]) and not np.array_equal(out[1], frames[1])
    assert (restorer.frames_restored, restorer.frames_skipped) == (1, 1)
    assert restorer.summary() == "face restore: 1 of 2 frames (1 without a visible face left as generated)"
    point = kp.copy()
    point[FACE, :2] = point[FACE[0], :2]  # a face shrunk to one point: nothing to warp onto
    assert np.array_equal(restorer.restore(frames[:1], point[None]), frames[:1])
    faceless = FaceRestorer(ref, hidden)
    assert not faceless.usable
    assert "the reference pose has no whole face (all 68 face points at score >= 0.3)" in faceless.summary()
    assert np.array_equal(faceless.restore(frames, np.stack([kp, kp])), frames)


def test_a_folded_face_falls_back_to_the_similarity():
    ref, kp = _reference(), _pose()
    folded = kp.copy()
    c = kp[FACE, :2].mean(0)
    folded[FACE, 0] = c[0] - 0.3 * (kp[FACE, 0] - c[0])  # mirrored and squeezed: a head turned past profile
    restorer = FaceRestorer(ref, kp)
    out = restorer.restore(np.zeros((1, H, W, 3), dtype=np.uint8), folded[None])
    assert restorer.frames_restored == 1 and out.any()


def test_bad_inputs_are_named():
    ref, kp = _reference(), _pose()
    with pytest.raises(ValueError, match=r"reference image must be \(height, width, 3\) uint8"):
        FaceRestorer(ref.astype(np.float32), kp)
    with pytest.raises(ValueError, match=r"reference keypoints must be \(133, 3\)"):
        FaceRestorer(ref, kp[:17])
    restorer = FaceRestorer(ref, kp)
    with pytest.raises(ValueError, match=r"frames must be \(T, 96, 96, 3\) uint8"):
        restorer.restore(np.zeros((1, H, W + 1, 3), dtype=np.uint8), kp[None])
    with pytest.raises(ValueError, match=r"2 frames need keypoints \(2, 133, 3\)"):
        restorer.restore(np.zeros((2, H, W, 3), dtype=np.uint8), kp[None])
    assert [restore_setting(v, "face_restore") for v in ("auto", "on", "off")] == [None, True, False]
    with pytest.raises(ValueError, match=r"--face-restore must be one of auto, on, off; got 'yes'"):
        restore_setting("yes", "--face-restore")


@pytest.fixture(scope="module")
def tiny_system():
    from iasa_core.model.presets import get_preset
    from iasa_core.model.system import PoseWanSystem

    return PoseWanSystem.random(get_preset("tiny"), seed=0)


def _gen_inputs(frames: int = 13):
    from iasa_core.pose.sequence import PoseSequence

    return _reference(5)[:64, :64].copy(), PoseSequence(synthetic_keypoints(frames, 64, 64, seed=1), 64, 64, fps=25.0)


def test_generation_restores_the_face_only_when_asked(tiny_system):
    from iasa_core.pipeline import GenerateOptions, fit_poses, generate_video, stream_video

    image, poses = _gen_inputs()
    raw = generate_video(tiny_system, image, poses, GenerateOptions(window_frames=9, overlap_latents=1))
    assert raw.timings["restore_s"] == 0.0 and raw.restore_notes == []  # the tiny preset stores none: off
    on = generate_video(tiny_system, image, poses, GenerateOptions(window_frames=9, overlap_latents=1,
                                                                   face_restore=True))
    kp = fit_poses(poses, image.shape[:2], image.shape[:2])
    want = FaceRestorer(image, kp[0]).restore(raw.frames, kp)
    assert np.array_equal(on.frames, want) and not np.array_equal(on.frames, raw.frames)
    assert on.restore_notes == ["face restore: 13 of 13 frames"]
    t = on.timings
    assert t["restore_s"] > 0
    assert abs(t["conditioning_s"] + t["sampling_s"] + t["decode_s"] + t["restore_s"] - t["frames_s"]) < 1e-6
    # streamed chunk by chunk: the same frames
    stream = stream_video(tiny_system, image, poses, GenerateOptions(window_frames=9, overlap_latents=1,
                                                                     face_restore=True))
    assert np.array_equal(np.concatenate(list(stream.chunks())), on.frames)
    tiny_system.schedule["face_restore"] = True  # a model that stores the setting: on unless turned off
    try:
        stored = generate_video(tiny_system, image, poses, GenerateOptions(window_frames=9, overlap_latents=1))
        off = generate_video(tiny_system, image, poses, GenerateOptions(window_frames=9, overlap_latents=1,
                                                                        face_restore=False))
    finally:
        del tiny_system.schedule["face_restore"]
    assert np.array_equal(stored.frames, on.frames) and np.array_equal(off.frames, raw.frames)
    with pytest.raises(ValueError, match="face_restore must be true, false or none"):
        generate_video(tiny_system, image, poses, GenerateOptions(face_restore="on"))


def test_embedded_models_restore_faces_by_default():
    from iasa_core.model.checkpoint import load_student
    from iasa_core.model.embedded import EMBEDDED_MODELS, embedded_path
    from iasa_core.model.loading import load_model

    for name in EMBEDDED_MODELS:
        schedule = load_model(name).schedule
        assert schedule["face_restore"] is True and schedule["background_restore"] is True
        assert schedule["body_restore"] is True
    assert "face_restore" not in load_student(embedded_path("embedded")).schedule  # the files do not store it


def test_command_line_and_node_pass_the_switch(tiny_system, monkeypatch):
    from iasa_core import generate_cli
    from iasa_core.__main__ import build_parser
    from nodes.nodes_sampler import IASASampler

    args = build_parser().parse_args(["generate", "--poses", "p.json", "--image", "i.png", "--out", "o.mp4",
                                      "--face-restore", "off"])
    assert generate_cli._options(args)["face_restore"] is False
    assert generate_cli._options(args)["background_restore"] is None
    assert generate_cli._options(args)["body_restore"] is None
    assert build_parser().parse_args(["demo", "--body-restore", "off"]).body_restore == "off"
    assert generate_cli._options(build_parser().parse_args(
        ["generate", "--poses", "p.json", "--image", "i.png", "--out", "o.mp4"]))["face_restore"] is None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--face-restore", "maybe"])
    assert build_parser().parse_args(["demo", "--face-restore", "on"]).face_restore == "on"
    # the node: its choices are the library's, and it hands the switch to GenerateOptions
    from iasa_core.restoration import RESTORE_CHOICES, RESTORE_KEYS

    assert RESTORE_KEYS == ("face_restore", "background_restore", "body_restore")
    for name in RESTORE_KEYS:
        choices, spec = IASASampler.INPUT_TYPES()["optional"][name]
        assert choices == list(RESTORE_CHOICES) and spec["default"] == "auto" and spec["tooltip"]
    import iasa_core.pipeline as pipeline

    seen = []
    real = pipeline.generate_video
    monkeypatch.setattr(pipeline, "generate_video", lambda *a, **k: seen.append(a[3]) or real(*a, **k))
    image, poses = _gen_inputs(5)
    import torch

    pk = poses.to_pose_keypoint()
    ref = torch.from_numpy(image).float()[None] / 255.0
    IASASampler().sample({"system": tiny_system}, ref, pk, face_restore="on", background_restore="off",
                         body_restore="on")
    assert (seen[-1].face_restore, seen[-1].background_restore, seen[-1].body_restore) == (True, False, True)
    with pytest.raises(ValueError, match="face_restore must be one of auto, on, off"):
        IASASampler().sample({"system": tiny_system}, ref, pk, face_restore="yes")


def test_a_hand_in_front_of_the_face_stays_the_models():
    ref, kp = _reference(), _pose()
    hand = kp.copy()
    nose = kp[L.FACE[30], :2]
    hand[list(L.RIGHT_HAND), :2] = nose + np.random.default_rng(0).normal(size=(21, 2)) * 1.0  # over the nose
    hand[list(L.RIGHT_HAND), 2] = 0.9
    frames = np.full((1, H, W, 3), 9, dtype=np.uint8)
    out = FaceRestorer(ref, kp).restore(frames, hand[None])[0]
    x, y = (int(round(v)) for v in nose)
    assert (out[y, x] == 9).all()  # under the hand: the generated frame
    ys, xs = np.mgrid[0:H, 0:W]
    rest = _core(kp) & (np.hypot(xs - nose[0], ys - nose[1]) > 7)  # the hand lies within ~4 px of it
    assert rest.sum() > 20 and np.array_equal(out[rest], ref[rest])  # the rest of the face: the reference
