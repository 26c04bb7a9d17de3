"""Reference body restoration (iasa_core/body_restore.py): the reference torso, arm bones and hands moved onto each
frame's pose, the model's pixels elsewhere, and the switch through the pipeline."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from iasa_core.background_restore import clean_plate, person_mask
from iasa_core.body_restore import ARM_RADIUS, CLEAR, BodyRestorer
from iasa_core.pose import layout as L
from iasa_core.pose.regions import convex_hull, polygon_cover
from iasa_core.restoration import sample_reference

H = W = 128
LEFT_ARM = (L.L_SHOULDER, L.L_ELBOW, L.L_WRIST)
RIGHT_ARM = (L.R_SHOULDER, L.R_ELBOW, L.R_WRIST)


def _hand(wrist: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """21 hand points fanning out from the wrist along ``direction`` (about 8 px long)."""
    d = direction / np.linalg.norm(direction)
    side = np.array([-d[1], d[0]])
    pts = [wrist]
    for finger in range(5):
        spread = (finger - 2) * 1.5
        pts += [wrist + d * (2.0 + 1.6 * j) + side * spread * (1 + 0.2 * j) for j in range(4)]
    return np.array(pts)


def _body() -> np.ndarray:
    """A frontal upper body (133, 3): shoulders 40 px apart, arms hanging out to the sides, both hands, hips."""
    kp = np.zeros((L.NUM_KEYPOINTS, 3))
    points = {L.L_SHOULDER: (84, 40), L.R_SHOULDER: (44, 40), L.L_ELBOW: (96, 66), L.R_ELBOW: (32, 66),
              L.L_WRIST: (102, 92), L.R_WRIST: (26, 92), L.L_HIP: (78, 112), L.R_HIP: (50, 112)}
    for i, xy in points.items():
        kp[i] = (*xy, 0.9)
    for hand, wrist, elbow in ((L.LEFT_HAND, L.L_WRIST, L.L_ELBOW), (L.RIGHT_HAND, L.R_WRIST, L.R_ELBOW)):
        kp[list(hand), :2] = _hand(kp[wrist, :2], kp[wrist, :2] - kp[elbow, :2])
        kp[list(hand), 2] = 0.9
    return kp


def _picture(kp: np.ndarray, seed: int = 0) -> np.ndarray:
    """A person in smooth random colours (64..255) on black, where ``pose.regions`` puts them for pose ``kp``."""
    rng = np.random.default_rng(seed)
    picture = np.clip(ndimage.zoom(64 + rng.random((16, 16, 3)) * 191, (8, 8, 1), order=1), 0, 255).astype(np.uint8)
    picture[~person_mask(kp, (H, W), 0, 0.3)] = 0
    return picture


def _pixels() -> np.ndarray:
    ys, xs = np.mgrid[0:H, 0:W]
    return np.stack([xs.ravel(), ys.ravel()], -1).astype(np.float64)


def _distance_to_segment(pts: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    t = np.clip(((pts - a) @ (b - a)) / ((b - a) @ (b - a)), 0, 1)
    return np.linalg.norm(pts - a - t[:, None] * (b - a), axis=1)


def _hide(kp: np.ndarray, *parts) -> np.ndarray:
    out = kp.copy()
    for part in parts:
        out[list(part), 2] = 0.0
    return out


def test_a_still_pose_gives_back_the_reference_on_the_body_and_the_frames_elsewhere():
    kp = _body()
    ref = _picture(kp)
    frames = np.full((2, H, W, 3), 40, dtype=np.uint8)
    restorer = BodyRestorer(ref, kp)
    out = restorer.restore(frames, np.stack([kp, kp]))
    radius = ARM_RADIUS * 40
    pts = _pixels()
    bone = np.min([_distance_to_segment(pts, kp[i, :2], kp[j, :2])
                   for arm in (LEFT_ARM, RIGHT_ARM) for i, j in zip(arm[:-1], arm[1:], strict=True)], axis=0)
    on_arms = (bone <= radius - 0.5).reshape(H, W)
    for t in range(2):
        assert np.array_equal(out[t][on_arms], ref[on_arms])  # the arms: the reference's own pixels
    # the legs go on two shoulder widths below the hips (off the picture here), 0.15 of it out beyond each hip
    legs, side = np.array([0.0, 2 * 40]), np.array([0.15 * 40, 0.0])
    hull = np.array([kp[L.L_SHOULDER, :2], kp[L.R_SHOULDER, :2], kp[L.R_HIP, :2] - side,
                     kp[L.R_HIP, :2] - side + legs, kp[L.L_HIP, :2] + side + legs, kp[L.L_HIP, :2] + side])
    hull = convex_hull(hull)  # the torso and the legs are restored as one convex shape
    near_torso = np.min([_distance_to_segment(pts, a, b) for a, b in zip(hull, np.roll(hull, -1, 0),
                                                                           strict=True)], axis=0)
    torso = polygon_cover(pts, hull, 0.0).reshape(H, W)
    inside = torso & ~(bone <= radius + 1).reshape(H, W)
    assert inside.sum() > 1000 and np.array_equal(out[0][inside], ref[inside])  # the torso clear of the arms
    band = CLEAR * 40  # around the arms and hands the model's outline gives way to the clean plate
    far = ((near_torso > radius + 2) & (bone > radius + band + 2)).reshape(H, W) & ~torso
    hands = np.concatenate([kp[list(h), :2] for h in (L.LEFT_HAND, L.RIGHT_HAND)])
    far &= (np.min(np.linalg.norm(pts[:, None] - hands[None], axis=2), axis=1) > band + 6).reshape(H, W)
    assert far.sum() > 5000 and (out[:, far] == 40).all()  # away from the body: the model's frames untouched
    assert restorer.frames_restored == 2 and restorer.parts_restored == 2 * 7  # torso, 4 bones, 2 hands
    assert restorer.summary() == "body restore: 14 parts (head, torso, arm bones, hands) in 2 frames"
    assert (frames == 40).all()  # the input is not written to


def _with_face(kp: np.ndarray) -> np.ndarray:
    """The body with the synthetic pose's 68 face points, the chin 6 px above the shoulders' middle."""
    from iasa_core.face_restore import CHIN
    from iasa_core.pose.synthetic import synthetic_keypoints

    face = synthetic_keypoints(1, H, W, seed=3)[0]
    out = kp.copy()
    out[list(L.FACE)] = face[list(L.FACE)]
    out[list(L.FACE), :2] += kp[[L.L_SHOULDER, L.R_SHOULDER], :2].mean(0) - [0.0, 6.0] - face[CHIN, :2]
    return out


def test_the_head_and_its_hair_move_with_the_face_points():
    from iasa_core.face_restore import HAIR_MARGIN, head_points, head_size

    kp = _with_face(_body())
    ref = _picture(kp, 2)
    head = convex_hull(head_points(kp))
    size = head_size(kp)
    pts = _pixels()
    near = np.min([_distance_to_segment(pts, a, b) for a, b in zip(head, np.roll(head, -1, 0), strict=True)], 0)
    hair = ((near < 0.8 * HAIR_MARGIN * size) & ~polygon_cover(pts, head, 0.0)).reshape(H, W)
    hair &= (pts[:, 1] < kp[L.L_SHOULDER, 1] - 10).reshape(H, W)
    ref[hair] = (200, 150, 60)  # hair beyond the face's points, where the face restorer's mesh does not reach
    assert (clean_plate(ref, kp)[hair] == 0).all()  # the hair is the person's: the plate is the background there
    shift = np.array([5.0, 3.0])
    moved = kp.copy()
    moved[:, :2] += shift
    frames = np.full((1, H, W, 3), 40, dtype=np.uint8)
    restorer = BodyRestorer(ref, kp)
    out = restorer.restore(frames, moved[None])[0]
    shifted = np.zeros_like(ref)
    shifted[3:, 5:] = ref[:-3, :-5]
    # the head's footprint, above the torso's reach over the shoulders: the reference moved with the face
    on_head = ((near < HAIR_MARGIN * size - 1) & (pts[:, 1] < kp[L.L_SHOULDER, 1] - ARM_RADIUS * 40 - 2))
    on_head = np.roll(on_head.reshape(H, W), (3, 5), axis=(0, 1))
    assert (hair & on_head).sum() > 50 and on_head.sum() > 400
    assert np.array_equal(out[on_head], shifted[on_head])
    assert restorer.parts_restored == 8  # the head, the torso, 4 arm bones, 2 hands
    faceless = moved.copy()
    faceless[L.FACE[30], 2] = 0.0  # one face point unseen in the frame: no head
    restorer.restore(frames, faceless[None])
    assert restorer.parts_restored == 8 + 7


def test_a_forearm_turned_and_stretched_reads_the_reference_along_its_bone():
    kp = _hide(_body(), RIGHT_ARM[1:], L.LEFT_HAND, L.RIGHT_HAND)
    ref = _picture(kp, 1)
    moved = kp.copy()
    elbow, wrist = kp[L.L_ELBOW, :2], kp[L.L_WRIST, :2]
    angle, stretch = np.deg2rad(70.0), 1.4  # swung in across the shirt, and 40 % longer
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved[L.L_WRIST, :2] = elbow + stretch * rot @ (wrist - elbow)
    out = BodyRestorer(ref, kp).restore(np.zeros((1, H, W, 3), dtype=np.uint8), moved[None])[0]
    radius = ARM_RADIUS * 40
    new_wrist = moved[L.L_WRIST, :2]
    axis = (new_wrist - elbow) / np.linalg.norm(new_wrist - elbow)
    side = np.array([-axis[1], axis[0]])
    checked = 0
    for u in np.linspace(0.4, 0.9, 6):        # clear of the upper arm at the elbow
        for v in np.linspace(-(radius - 2.5), radius - 2.5, 5):  # clear of the arm's outline in the reference
            p = elbow + u * (new_wrist - elbow) + v * side
            x, y = int(round(p[0])), int(round(p[1]))
            pixel = np.array([x, y], dtype=np.float64)
            # the pixel's own position mapped back: along the bone by the stretch, across it unscaled
            rel = pixel - elbow
            q = elbow + (rel @ axis) / np.linalg.norm(new_wrist - elbow) * (wrist - elbow) + (rel @ side) * (
                rot.T @ side)
            want = sample_reference(ref.astype(np.float32), q[None])[0]
            assert np.abs(out[y, x].astype(float) - want).max() <= 0.51
            checked += 1
    assert checked == 30


def test_a_hand_moves_with_the_similarity_of_its_points():
    kp = _hide(_body(), LEFT_ARM[1:], RIGHT_ARM[1:], L.RIGHT_HAND)
    ref = _picture(_body(), 2)
    hand = list(L.LEFT_HAND)
    centre = kp[hand, :2].mean(0)
    a = 1.2 * np.exp(1j * np.deg2rad(35))
    moved = kp.copy()
    z = a * ((kp[hand, 0] - centre[0]) + 1j * (kp[hand, 1] - centre[1]))
    moved[hand, 0], moved[hand, 1] = z.real + centre[0] - 30, z.imag + centre[1] - 20  # onto the torso
    out = BodyRestorer(ref, kp).restore(np.zeros((1, H, W, 3), dtype=np.uint8), moved[None])[0]
    checked = 0
    for p in moved[hand, :2]:
        x, y = int(round(p[0])), int(round(p[1]))
        w = ((x - centre[0] + 30) + 1j * (y - centre[1] + 20)) / a
        q = np.array([w.real + centre[0], w.imag + centre[1]])
        near = ref[int(q[1]) - 1:int(q[1]) + 3, int(q[0]) - 1:int(q[0]) + 3]
        if (near == 0).all(-1).any():
            continue  # on the hand's outline in the reference: partly background, blended with what is behind
        want = sample_reference(ref.astype(np.float32), q[None])[0]
        assert np.abs(out[y, x].astype(float) - want).max() <= 0.51
        checked += 1
    assert checked >= 8


def test_an_arm_that_moves_away_leaves_the_shirt_not_its_ghost():
    kp = _body()
    kp[L.L_ELBOW, :2], kp[L.L_WRIST, :2] = (70, 70), (50, 80)  # the left forearm across the shirt
    kp[list(L.LEFT_HAND), :2] = _hand(kp[L.L_WRIST, :2], kp[L.L_WRIST, :2] - kp[L.L_ELBOW, :2])
    shirt, sleeve = (200, 30, 30), (30, 30, 200)
    ref = np.zeros((H, W, 3), dtype=np.uint8)
    pts = _pixels()
    torso = np.array([kp[L.L_SHOULDER, :2], kp[L.R_SHOULDER, :2], kp[L.R_HIP, :2], kp[L.L_HIP, :2]])
    edges = zip(torso, np.roll(torso, -1, 0), strict=True)
    inside = np.all([(b[0] - a[0]) * (pts[:, 1] - a[1]) - (b[1] - a[1]) * (pts[:, 0] - a[0]) <= 0
                     for a, b in edges], axis=0).reshape(H, W)
    ref[inside] = shirt
    arm = np.min([_distance_to_segment(pts, kp[i, :2], kp[j, :2])
                  for i, j in ((L.L_SHOULDER, L.L_ELBOW), (L.L_ELBOW, L.L_WRIST))], axis=0).reshape(H, W) <= 4
    ref[arm] = sleeve
    moved = _body()  # the arm hangs at the side again
    out = BodyRestorer(ref, kp).restore(np.zeros((1, H, W, 3), dtype=np.uint8), moved[None])[0]
    old = _distance_to_segment(pts, kp[L.L_ELBOW, :2], kp[L.L_WRIST, :2]).reshape(H, W) <= 3
    hands = np.min(np.linalg.norm(pts[:, None] - kp[list(L.LEFT_HAND), None, :2].transpose(1, 0, 2), axis=2),
                   axis=1).reshape(H, W) < 8
    ghost = old & inside & ~hands
    assert ghost.sum() > 40
    assert (out[ghost] == shirt).all()  # where the forearm was: the shirt, filled from its nearest pixels
    # a dark outline just outside the arm's capsule (4.8 px here) is not what the shirt is filled from
    reach = np.min([_distance_to_segment(pts, kp[i, :2], kp[j, :2])
                    for i, j in ((L.L_SHOULDER, L.L_ELBOW), (L.L_ELBOW, L.L_WRIST))], axis=0).reshape(H, W)
    ref[(reach > ARM_RADIUS * 40 + 0.5) & (reach <= ARM_RADIUS * 40 + 1.5) & inside] = (10, 10, 10)
    out = BodyRestorer(ref, kp).restore(np.zeros((1, H, W, 3), dtype=np.uint8), moved[None])[0]
    assert (out[ghost] == shirt).all()


def test_a_hand_leaves_the_forearm_it_rests_on_behind(monkeypatch):
    import iasa_core.body_restore as body_restore
    from iasa_core.body_restore import HAND_KEEP, HAND_MARGIN

    kp = _body()
    hand = list(L.LEFT_HAND)
    kp[hand, :2] = _hand(np.zeros(2), np.array([0.0, 1.0])) * 4.0 + (64, 60)  # a big hand, fingers down
    size = float(np.hypot(*(kp[hand[9], :2] - kp[hand[0], :2])))
    hull = convex_hull(kp[hand, :2])
    left = hull[:, 0].min()
    # the right forearm runs down beside the hand, its capsule reaching into the hand's footprint margin
    kp[L.R_ELBOW, :2], kp[L.R_WRIST, :2] = (left - ARM_RADIUS * 40 + 1.0, 50), (left - ARM_RADIUS * 40 + 1.0, 110)
    skin, sleeve = (220, 170, 130), (30, 30, 200)
    pts = _pixels()
    ref = np.zeros((H, W, 3), dtype=np.uint8)
    forearm = (_distance_to_segment(pts, kp[L.R_ELBOW, :2], kp[L.R_WRIST, :2]) <= ARM_RADIUS * 40).reshape(H, W)
    ref[forearm] = sleeve
    on_hand = polygon_cover(pts, hull, 0.5).reshape(H, W)
    ref[on_hand] = skin
    restorer = BodyRestorer(ref, kp)
    near = polygon_cover(pts, hull, HAND_MARGIN * size).reshape(H, W)
    kept = polygon_cover(pts, hull, HAND_KEEP).reshape(H, W)
    carried = forearm & near & ~kept
    assert carried.sum() >= 10  # the footprint reaches over the forearm here
    matte = restorer._hand_sources[0][..., 3]
    assert (matte[carried] == 0).all() and (matte[on_hand] == 1).all()
    moved = _hide(kp, RIGHT_ARM[1:], LEFT_ARM[1:], L.RIGHT_HAND)  # the hand alone, away from the forearm
    moved[hand, 0] += 20
    footprint = polygon_cover(pts, convex_hull(moved[hand, :2]), HAND_MARGIN * size + 1).reshape(H, W)

    def sleeve_pixels(restorer: BodyRestorer) -> int:
        out = restorer.restore(np.zeros((1, H, W, 3), dtype=np.uint8), moved[None])[0]
        assert (np.abs(out.astype(int) - skin).max(-1) <= 1).sum() >= 0.9 * on_hand.sum()
        return int((np.abs(out[footprint].astype(int) - sleeve).max(-1) < 100).sum())

    kept = sleeve_pixels(restorer)  # only the anti-aliased edge within HAND_KEEP of the hull comes along
    monkeypatch.setattr(body_restore, "HAND_KEEP", 1e9)
    carried_along = sleeve_pixels(BodyRestorer(ref, kp))
    assert carried_along >= 12 and kept * 3 <= carried_along  # 15 against 4


def test_an_arm_a_hand_rests_on_keeps_its_sleeve_when_the_hand_leaves():
    from iasa_core.body_restore import BONES, HAND_CLEAR

    kp = _hide(_body(), L.RIGHT_HAND)
    upper = (L.R_SHOULDER, L.R_ELBOW)
    kp[L.R_ELBOW, :2], kp[L.R_WRIST, :2] = (20, 95), (12, 120)  # a long upper arm
    middle = (kp[upper[0], :2] + kp[upper[1], :2]) / 2
    hand = list(L.LEFT_HAND)
    kp[hand, :2] = _hand(np.zeros(2), np.array([1.0, 0.3])) + middle - (3, 1)  # crossed arms: on the other arm
    skin, sleeve = (220, 170, 130), (30, 60, 200)
    pts = _pixels()
    ref = np.zeros((H, W, 3), dtype=np.uint8)
    arm = (_distance_to_segment(pts, kp[upper[0], :2], kp[upper[1], :2]) <= ARM_RADIUS * 40 - 1).reshape(H, W)
    ref[arm] = sleeve
    on_hand = polygon_cover(pts, convex_hull(kp[hand, :2]), 0.5).reshape(H, W)
    ref[on_hand] = skin
    restorer = BodyRestorer(ref, kp)
    source = restorer._bone_sources[BONES.index(upper)]
    hidden = on_hand & arm
    inner = hidden & (_distance_to_segment(pts, kp[upper[0], :2], kp[upper[1], :2]) <= ARM_RADIUS * 40 - 2.5
                      ).reshape(H, W)  # away from the arm's anti-aliased edge
    assert inner.sum() >= 20
    assert np.abs(source[inner, :3] - sleeve).max() <= 2  # the hand's pixels on the arm: the sleeve again
    assert np.array_equal(source[..., 3], restorer._limb_source[..., 3])  # the outline is the reference's
    changed = (source != restorer._limb_source).any(-1)
    extent = float(np.hypot(*(kp[hand, :2].max(0) - kp[hand, :2].min(0))))
    assert not (changed & ~polygon_cover(pts, convex_hull(kp[hand, :2]), HAND_CLEAR * extent).reshape(H, W)).any()
    moved = kp.copy()
    moved[hand, 0] += 25  # the hand leaves the arm, the arm stays
    out = restorer.restore(np.zeros((1, H, W, 3), dtype=np.uint8), moved[None])[0]
    still = inner & ~polygon_cover(pts, convex_hull(moved[hand, :2]), 4.0).reshape(H, W)
    assert still.sum() >= 20
    assert (np.abs(out[still].astype(int) - sleeve).max(-1) <= 2).mean() >= 0.95


def test_what_the_arms_covered_is_filled_along_the_rows():
    from iasa_core.body_restore import fill_along_rows

    image = np.zeros((6, 8, 3))
    image[:3], image[3:] = (0, 200, 0), (0, 60, 0)  # a shirt over trousers: the hem runs across
    image[:, 7] = (90, 90, 90)                      # and a grey seam down the right edge
    image[0, 4] = (100, 200, 0)                     # a fold in the top row, right of the arm
    fill = np.zeros((6, 8), dtype=bool)
    for y in range(6):
        fill[y, 1 + y // 2: 4 + y // 2] = True      # an arm lying diagonally over the hem
    fill[5] = True                                  # a row covered from end to end
    out = fill_along_rows(image, ~fill, fill)
    assert np.array_equal(out[1:5, :6], image[1:5, :6])  # the hem stays straight: each row its own colour
    assert np.allclose(out[0, 1:4], image[0, 0] + np.array([[0.25], [0.5], [0.75]]) * (image[0, 4] - image[0, 0]))
    assert np.array_equal(out[5], image[4])  # no source in the row: the nearest pixel, the row above
    assert np.array_equal(out[~fill], image[~fill])
    assert np.array_equal(fill_along_rows(image, np.zeros_like(fill), fill), image)  # nothing to fill from


def test_parts_need_their_points_in_both_poses():
    kp = _body()
    ref = _picture(kp)
    frames = np.full((1, H, W, 3), 40, dtype=np.uint8)
    no_shoulders = _hide(kp, [L.L_SHOULDER])
    restorer = BodyRestorer(ref, no_shoulders)
    assert not restorer.usable and "no shoulders" in restorer.summary()
    assert np.array_equal(restorer.restore(frames, kp[None]), frames)
    restorer = BodyRestorer(ref, kp)
    restorer.restore(frames, _hide(kp, [L.R_ELBOW], L.RIGHT_HAND)[None])  # two right bones and a hand gone
    assert restorer.parts_restored == 4
    restorer = BodyRestorer(ref, _hide(kp, [L.L_WRIST]))  # hidden in the reference: the same
    restorer.restore(frames, kp[None])
    assert restorer.parts_restored == 6


def test_bad_inputs_are_named():
    kp = _body()
    ref = _picture(kp)
    with pytest.raises(ValueError, match=r"body restore: the reference image must be"):
        BodyRestorer(ref[..., :2], kp)
    with pytest.raises(ValueError, match=r"body restore: the reference keypoints must be \(133, 3\)"):
        BodyRestorer(ref, kp[:5])
    with pytest.raises(ValueError, match=r"body restore: 1 frames need keypoints \(1, 133, 3\)"):
        BodyRestorer(ref, kp).restore(np.zeros((1, H, W, 3), dtype=np.uint8), kp)


def test_generation_restores_background_then_body_then_face():
    from iasa_core.background_restore import TIGHT, BackgroundRestorer
    from iasa_core.face_restore import FaceRestorer
    from iasa_core.model.presets import get_preset
    from iasa_core.model.system import PoseWanSystem
    from iasa_core.pipeline import GenerateOptions, fit_poses, generate_video
    from iasa_core.pose.sequence import PoseSequence
    from iasa_core.pose.synthetic import synthetic_keypoints

    system = PoseWanSystem.random(get_preset("tiny"), seed=0)
    image = _picture(_body(), 3)[32:96, 32:96].copy()
    poses = PoseSequence(synthetic_keypoints(9, 64, 64, seed=1), 64, 64, fps=25.0)
    opt = dict(window_frames=9, overlap_latents=1)
    raw = generate_video(system, image, poses, GenerateOptions(**opt))
    body = generate_video(system, image, poses, GenerateOptions(**opt, body_restore=True))
    every = generate_video(system, image, poses, GenerateOptions(**opt, background_restore=True, body_restore=True,
                                                                 face_restore=True))
    kp = fit_poses(poses, image.shape[:2], image.shape[:2])
    assert np.array_equal(body.frames, BodyRestorer(image, kp[0]).restore(raw.frames, kp))
    assert not np.array_equal(body.frames, raw.frames)
    tight = dict(zip(("grow", "feather"), TIGHT, strict=True))  # the body's outline is the reference's: tight margins
    want = BackgroundRestorer(image, kp[0], **tight).restore(raw.frames, kp)
    want = FaceRestorer(image, kp[0]).restore(BodyRestorer(image, kp[0]).restore(want, kp), kp)
    assert np.array_equal(every.frames, want)
    assert [n.split(":")[0] for n in every.restore_notes] == ["background restore", "body restore", "face restore"]
    with pytest.raises(ValueError, match="body_restore must be true, false or none"):
        generate_video(system, image, poses, GenerateOptions(body_restore="yes"))


def test_reading_the_reference_is_scipys_bilinear_with_the_edge_repeated():
    rng = np.random.default_rng(4)
    for shape in ((20, 30, 4), (1, 5, 3), (6, 1, 3)):
        image = (rng.random(shape) * 255).astype(np.float32)
        xy = np.stack([rng.uniform(-3, shape[1] + 3, 400), rng.uniform(-3, shape[0] + 3, 400)], -1)
        xy[:20] = np.round(xy[:20])  # whole pixels too
        want = np.stack([ndimage.map_coordinates(image[..., c], [xy[:, 1], xy[:, 0]], order=1, mode="nearest")
                         for c in range(shape[2])], -1)
        assert np.abs(sample_reference(image, xy) - want).max() <= 1e-3
