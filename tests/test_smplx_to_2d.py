"""SMPL-X -> 2-D: kinematics and projection on a tiny synthetic SMPL-X-like model, mapping,
alignment/retarget to a reference pose, resampling, and the missing-model message.

No real SMPL-X file is used (MPI licence): the test writes an npz with the same keys, a 55-joint
tree with the real parent table, one vertex per joint (one-hot regressor and skinning weights) and
a few extra vertices for the vertex joints and face landmarks.
"""

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from iasa_core.motion import smplx_model as S
from iasa_core.motion import smplx_to_2d as M
from iasa_core.motion.smplx_model import SmplxModel, find_smplx_file
from iasa_core.pose import layout as L
from iasa_core.pose.sequence import PoseSequence
from iasa_core.pose.synthetic import synthetic_keypoints

PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 15, 15, 15,
           20, 25, 26, 20, 28, 29, 20, 31, 32, 20, 34, 35, 20, 37, 38,
           21, 40, 41, 21, 43, 44, 21, 46, 47, 21, 49, 50, 21, 52, 53]

# smplx JOINT_NAMES 0-75 (skeleton, then the vertex joints), used to check the mapping by meaning.
_FINGERS = ("index", "middle", "pinky", "ring", "thumb")
NAMES = (["pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
          "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
          "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
          "jaw", "left_eye_smplhf", "right_eye_smplhf"]
         + [f"{side}_{f}{k}" for side in ("left", "right") for f in _FINGERS for k in (1, 2, 3)]
         + ["nose", "right_eye", "left_eye", "right_ear", "left_ear", "left_big_toe", "left_small_toe",
            "left_heel", "right_big_toe", "right_small_toe", "right_heel"]
         + [f"{side}_{f}" for side in ("left", "right") for f in ("thumb", "index", "middle", "ring", "pinky")])

N_FACE_V = 12


def _rest_joints():
    j = np.zeros((55, 3))
    body = {0: (0, 0, 0), 1: (.1, -.08, 0), 2: (-.1, -.08, 0), 3: (0, .1, 0), 4: (.1, -.5, 0), 5: (-.1, -.5, 0),
            6: (0, .25, 0), 7: (.1, -.9, 0), 8: (-.1, -.9, 0), 9: (0, .4, 0), 10: (.1, -.95, .1),
            11: (-.1, -.95, .1), 12: (0, .6, 0), 13: (.08, .55, 0), 14: (-.08, .55, 0), 15: (0, .7, 0),
            16: (.18, .55, 0), 17: (-.18, .55, 0), 18: (.45, .55, 0), 19: (-.45, .55, 0), 20: (.7, .55, 0),
            21: (-.7, .55, 0), 22: (0, .68, .05), 23: (.03, .75, .08), 24: (-.03, .75, .08)}
    for k, v in body.items():
        j[k] = v
    for side, wrist, start in ((1, 20, 25), (-1, 21, 40)):
        for f in range(5):
            for k in range(3):
                j[start + 3 * f + k] = j[wrist] + (side * (0.03 + 0.025 * k), 0.02 * (2 - f), 0.0)
    return j


def _write_model(path, *, posedirs_scale=0.0, shape_scale=0.0, random_weights=False, hand_mean=0.0, seed=0):
    rng = np.random.default_rng(seed)
    joints = _rest_joints()
    extra_attach = [15, 24, 23, 15, 15, 10, 10, 7, 11, 11, 8, 39, 27, 30, 36, 33, 54, 42, 45, 51, 48]
    extra_pos = joints[extra_attach] + rng.normal(0, 0.02, (21, 3))
    face_pos = joints[15] + np.c_[rng.uniform(-.06, .06, N_FACE_V), rng.uniform(-.08, .05, N_FACE_V),
                                  np.full(N_FACE_V, .09)]
    v = np.concatenate([joints, extra_pos, face_pos])
    V = len(v)
    weights = np.zeros((V, 55))
    weights[np.arange(55), np.arange(55)] = 1.0
    weights[55 + np.arange(21), extra_attach] = 1.0
    weights[76:, 15] = 1.0
    weights[76 + np.arange(0, N_FACE_V, 3), 15] = 0.0
    weights[76 + np.arange(0, N_FACE_V, 3), 22] = 1.0  # some face vertices follow the jaw
    if random_weights:
        weights = rng.dirichlet(np.full(55, 0.3), V)
    jreg = np.zeros((55, V))
    jreg[np.arange(55), np.arange(55)] = 1.0
    faces = np.array([[76 + i, 76 + (i + 1) % N_FACE_V, 76 + (i + 5) % N_FACE_V] for i in range(N_FACE_V)])
    bary = rng.dirichlet(np.ones(3), 51)
    dyn_bary = rng.dirichlet(np.ones(3), (79, 17))
    np.savez(path, v_template=v, shapedirs=shape_scale * rng.normal(size=(V, 3, 400)),
             posedirs=posedirs_scale * rng.normal(size=(V, 3, 54 * 9)), J_regressor=jreg, weights=weights,
             kintree_table=np.stack([np.where(np.array(PARENTS) < 0, 2**32 - 1, PARENTS), np.arange(55)]).astype(np.uint32),
             f=faces.astype(np.uint32), lmk_faces_idx=rng.integers(0, N_FACE_V, 51), lmk_bary_coords=bary,
             dynamic_lmk_faces_idx=rng.integers(0, N_FACE_V, (79, 17)), dynamic_lmk_bary_coords=dyn_bary,
             hands_meanl=np.full(45, hand_mean), hands_meanr=np.full(45, -hand_mean),
             extra_vertex_ids=np.arange(55, 76),
             joint2num=np.array({"pelvis": 0}, dtype=object))  # an object array, as official files have
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return SmplxModel.load(_write_model(tmp_path_factory.mktemp("smplx") / "SMPLX_NEUTRAL_2020.npz"))


def _naive_lbs(path, poses, coeffs, trans):
    """Independent reference: per-frame loops, scipy rotations, all vertices."""
    d = np.load(path, allow_pickle=False)
    vt, sd, pd, jr, w = d["v_template"], d["shapedirs"], d["posedirs"], d["J_regressor"], d["weights"]
    out = []
    for t in range(len(poses)):
        vs = vt + sd[:, :, : coeffs.shape[1]] @ coeffs[t]
        jrest = jr @ vs
        R = Rotation.from_rotvec(poses[t].reshape(55, 3)).as_matrix()
        vp = vs + pd @ (R[1:] - np.eye(3)).reshape(-1)
        G = np.zeros((55, 4, 4))
        for j in range(55):
            local = np.eye(4)
            local[:3, :3] = R[j]
            local[:3, 3] = jrest[j] - (jrest[PARENTS[j]] if j else 0)
            G[j] = local if j == 0 else G[PARENTS[j]] @ local
        A = G.copy()
        A[:, :3, 3] -= np.einsum("jab,jb->ja", G[:, :3, :3], jrest)
        Mv = np.einsum("vj,jab->vab", w, A)
        verts = np.einsum("vab,vb->va", Mv[:, :3, :3], vp) + Mv[:, :3, 3] + trans[t]
        out.append((G[:, :3, 3] + trans[t], verts))
    return out


# ------------------------------------------------------------------------------- kinematics


def test_zero_pose_gives_rest_joints(model):
    j = model.forward(np.zeros((2, 165)))
    assert j.shape == (2, 144, 3)
    np.testing.assert_allclose(j[:, :55], np.broadcast_to(_rest_joints(), (2, 55, 3)), atol=1e-12)
    np.testing.assert_allclose(j[0, 55:76], model.v_template[55:76], atol=1e-12)


def test_ninety_degree_elbow_moves_child_as_computed_by_hand(model):
    pose = np.zeros((1, 165))
    pose[0, 18 * 3 + 2] = np.pi / 2  # left elbow, +90 degrees about z
    j = model.forward(pose)[0]
    rest = _rest_joints()
    np.testing.assert_allclose(j[18], rest[18], atol=1e-12)       # the elbow itself stays
    # wrist offset (0.25, 0, 0) from the elbow turns into (0, 0.25, 0)
    np.testing.assert_allclose(j[20], [0.45, 0.80, 0.0], atol=1e-12)
    # a finger joint two levels down: offset (0.28, 0.04, 0) -> (-0.04, 0.28, 0)
    np.testing.assert_allclose(j[25], rest[18] + [-0.04, 0.28, 0.0], atol=1e-12)
    np.testing.assert_allclose(j[19], rest[19], atol=1e-12)       # the other arm is untouched


def test_trans_translates_everything(model):
    rng = np.random.default_rng(1)
    poses = rng.normal(0, 0.3, (3, 165))
    tr = rng.normal(size=(3, 3))
    np.testing.assert_allclose(model.forward(poses, trans=tr) - model.forward(poses), np.repeat(tr[:, None], 144, 1),
                               atol=1e-12)


def test_batched_equals_loop_and_torch_in_torch_out(model):
    rng = np.random.default_rng(2)
    poses, expr = rng.normal(0, 0.4, (6, 165)), rng.normal(size=(6, 100))
    batch = model.forward(poses, expr)
    loop = np.concatenate([model.forward(poses[t: t + 1], expr[t: t + 1]) for t in range(6)])
    np.testing.assert_allclose(batch, loop, atol=1e-12)
    tj = model.forward(torch.as_tensor(poses), torch.as_tensor(expr))
    assert isinstance(tj, torch.Tensor) and tj.dtype == torch.float64
    np.testing.assert_allclose(tj.numpy(), batch, atol=1e-12)
    assert model.forward(poses.astype(np.float32)).dtype == np.float32


def test_full_lbs_matches_independent_reference(tmp_path):
    path = _write_model(tmp_path / "m.npz", posedirs_scale=0.01, shape_scale=0.01, random_weights=True, seed=3)
    m = SmplxModel.load(path)
    assert (m.num_shape, m.num_expression) == (300, 100)
    rng = np.random.default_rng(4)
    T = 3
    poses, betas, expr, tr = (rng.normal(0, 0.5, (T, 165)), rng.normal(size=(T, 300)),
                              rng.normal(size=(T, 100)), rng.normal(size=(T, 3)))
    joints = m.forward(poses, expr, tr, betas=betas)
    verts = m.vertices(poses, expr, tr, betas=betas)
    ref = _naive_lbs(path, poses, np.concatenate([betas, expr], 1), tr)
    for t in range(T):
        np.testing.assert_allclose(joints[t, :55], ref[t][0], atol=1e-10)
        np.testing.assert_allclose(verts[t], ref[t][1], atol=1e-10)
        np.testing.assert_allclose(joints[t, 55:76], ref[t][1][55:76], atol=1e-10)  # vertex joints
    # landmarks: barycentric points of the posed triangles
    tri = verts[:, m.faces[m.lmk_faces_idx]]
    np.testing.assert_allclose(joints[:, 76:127], np.einsum("tlkc,lk->tlc", tri, m.lmk_bary_coords), atol=1e-10)


def test_expression_and_betas_blend_shapes(tmp_path):
    m = SmplxModel.load(_write_model(tmp_path / "m.npz", shape_scale=0.01, seed=5))
    z = np.zeros((1, 165))
    e = np.zeros((1, 100))
    e[0, 3] = 2.0
    moved = m.forward(z, e)[0, 55] - m.forward(z)[0, 55]          # nose vertex joint
    np.testing.assert_allclose(moved, 2.0 * m.dirs[55, :, 303], atol=1e-12)
    b = np.zeros(300)
    b[7] = -1.5
    np.testing.assert_allclose(m.forward(z, betas=b)[0, 20] - m.forward(z)[0, 20], -1.5 * m.dirs[20, :, 7],
                               atol=1e-12)


def test_hand_mean_and_dynamic_contour(tmp_path):
    m = SmplxModel.load(_write_model(tmp_path / "m.npz", hand_mean=0.1, seed=6))
    z = np.zeros((1, 165))
    mean = m.pose_mean[None]
    np.testing.assert_allclose(m.forward(z), m.forward(mean, flat_hand_mean=True), atol=1e-12)
    # head yaw of +10 degrees (about y, at the neck) selects look-up row 39 + 10 = 49; no yaw row 0
    pose = np.zeros((1, 165))
    pose[0, 12 * 3 + 1] = np.deg2rad(10.0)
    for row, p in ((49, pose), (0, z)):
        v = m.vertices(p, flat_hand_mean=True)
        tri = v[:, m.faces[m.dynamic_lmk_faces_idx[row]]]
        expect = np.einsum("tlkc,lk->tlc", tri, m.dynamic_lmk_bary_coords[row])
        np.testing.assert_allclose(m.forward(p, flat_hand_mean=True)[:, 127:144], expect, atol=1e-12)
    assert m.forward(z, use_face_contour=False).shape == (1, 127, 3)


def test_loader_reads_official_layout_without_pickle(tmp_path, model):
    assert model.parents.tolist() == PARENTS == list(S.SMPLX_PARENTS)
    path = tmp_path / "bad.npz"
    np.savez(path, v_template=np.array([{"x": 1}], dtype=object), shapedirs=0, posedirs=0, J_regressor=0,
             weights=0, kintree_table=0, f=0)
    with pytest.raises(ValueError, match="v_template.*pickled"):
        SmplxModel.load(path)
    with pytest.raises(ValueError, match="pickled SMPL-X models are not loaded"):
        SmplxModel.load(tmp_path / "SMPLX_NEUTRAL.pkl")


def test_missing_model_message_names_file_and_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("IASA_SMPLX_DIR", str(tmp_path / "envdir"))
    with pytest.raises(FileNotFoundError) as err:
        find_smplx_file([tmp_path / "models" / "smplx"])
    msg = str(err.value)
    for part in ("SMPLX_NEUTRAL_2020.npz", str(tmp_path / "models" / "smplx"), str(tmp_path / "envdir"),
                 str(tmp_path / "home" / ".cache" / "iasa" / "smplx"), "ComfyUI/models/smplx",
                 "https://smpl-x.is.tue.mpg.de", "licence", "IASA_SMPLX_DIR"):
        assert part in msg, part
    target = tmp_path / "envdir" / "smplx" / "SMPLX_NEUTRAL_2020.npz"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"")
    assert find_smplx_file() == target


# ------------------------------------------------------------------------------- projection, mapping


def test_projection_formula_exact():
    pts = np.array([[[0.1, 0.8, 0.0], [-0.2, 1.2, 4.0], [0.0, 0.8, -6.0]]])
    uv = M.project(pts, height=100, width=200)
    np.testing.assert_allclose(uv[0], [[100 + 5000 * 0.1 / 16, 50.0], [100 - 5000 * 0.2 / 20, 50 - 5000 * 0.4 / 20],
                                       [100.0, 50.0]], atol=1e-12)
    uv2 = M.project(torch.tensor(pts), 100, 200, focal=1000.0, cam_depth=10.0, y_offset=0.0)
    np.testing.assert_allclose(uv2[0, 0], [110.0, 50 - 80.0], atol=1e-12)
    with pytest.raises(ValueError, match="in front of the camera"):
        M.project(np.array([[[0, 0, -20.0]]]), 10, 10)


def test_mapping_picks_the_right_joints():
    j2 = np.stack([np.arange(144.0), -np.arange(144.0)], -1)[None]
    kp = M.to_wholebody(j2)
    src = kp[0, :, 0].astype(int)
    assert kp.shape == (1, 133, 3)
    expect = {0: 55, 1: 57, 2: 56, 3: 59, 4: 58, 5: 16, 6: 17, 7: 18, 8: 19, 9: 20, 10: 21, 11: 1, 12: 2}
    for wb, sx in expect.items():
        assert src[wb] == sx and kp[0, wb, 1] == -sx and kp[0, wb, 2] == 1.0
    # by name: body points and every hand point (WholeBody: wrist, thumb1..4, index, middle, ring, pinky)
    for wb, name in enumerate(L.BODY_NAMES[:13]):
        assert NAMES[src[wb]] == name
    for side, hand in (("left", L.LEFT_HAND), ("right", L.RIGHT_HAND)):
        assert NAMES[src[hand[0]]] == f"{side}_wrist"
        for f, finger in enumerate(("thumb", "index", "middle", "ring", "pinky")):
            names = [NAMES[src[hand[1 + 4 * f + k]]] for k in range(4)]
            assert names == [f"{side}_{finger}1", f"{side}_{finger}2", f"{side}_{finger}3", f"{side}_{finger}"]
    # face: iBUG order = 17 contour (127-143) then 51 inner (76-126)
    assert src[list(L.FACE)].tolist() == list(range(127, 144)) + list(range(76, 127))
    assert (kp[0, list(M.LEG_POINTS), 2] == 0).all()
    legs = M.to_wholebody(j2, include_legs=True)[0]
    assert legs[13, 0] == 4 and legs[17, 0] == 60 and legs[22, 0] == 65 and legs[16, 2] == 1.0
    no_contour = M.to_wholebody(j2[:, :127])[0]
    assert (no_contour[list(L.FACE_JAW), 2] == 0).all() and no_contour[40, 0] == 76


# ------------------------------------------------------------------------------- alignment


def _sim(xy, s, a, t):
    r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return s * xy @ r.T + np.asarray(t)


def _reference():
    ref = synthetic_keypoints(1, 512, 512, seed=3).astype(np.float64)[0]
    assert (ref[[5, 6, 11, 12, 0], 2] >= 0.3).all()
    return ref


def test_exact_similarity_maps_back_onto_the_reference():
    ref = _reference()
    seq = np.repeat(ref[None], 4, 0)
    seq[..., :2] = _sim(ref[:, :2], 0.6, 0.4, (40.0, -25.0))
    seq[..., 2] = np.where(ref[:, 2] > 0, 1.0, 0.0)
    out = M.align_to_reference(seq, ref)
    ok = ref[:, 2] > 0
    torso = [5, 6, 11, 12, 0]
    np.testing.assert_allclose(out[:, torso, :2], np.broadcast_to(ref[torso, :2], (4, 5, 2)), atol=1e-9)
    np.testing.assert_allclose(out[:, ok, :2], np.broadcast_to(ref[ok, :2], (4, ok.sum(), 2)), atol=1e-8)


def _bone_lengths(kp, bones):
    xy = kp[..., :2]
    neck = 0.5 * (xy[..., 5, :] + xy[..., 6, :])
    ext = np.concatenate([xy, neck[..., None, :]], -2)
    return np.stack([np.linalg.norm(ext[..., c, :] - ext[..., p, :], axis=-1) for p, c in bones], -1)


def _distorted_sequence(ref, T=5):
    """Arms with other bone lengths and per-frame forearm angles, bigger head, smaller hands."""
    kp = np.repeat(ref[None], T, 0).copy()
    kp[..., 2] = np.where(ref[:, 2] > 0, 1.0, 0.0)
    xy = kp[..., :2]
    for sho, elb, wri, hand in ((5, 7, 9, L.LEFT_HAND), (6, 8, 10, L.RIGHT_HAND)):
        hand = list(hand)
        d_up = 0.3 * (xy[:, elb] - xy[:, sho])                      # upper arm 1.3x: move elbow, wrist, hand
        xy[:, [elb, wri] + hand] += d_up[:, None]
        for t in range(T):                                          # forearm 0.8x, rotated by frame
            piv = xy[t, elb].copy()
            xy[t, [wri] + hand] = _sim(xy[t, [wri] + hand] - piv, 1.0, 0.15 * t, piv)
            d = -0.2 * (xy[t, wri] - piv)
            xy[t, [wri] + hand] += d
        xy[:, hand] = xy[:, [hand[0]]] + 0.8 * (xy[:, hand] - xy[:, [hand[0]]])
    head = list(M.HEAD_POINTS)
    xy[:, head] = xy[:, [0]] + 1.25 * (xy[:, head] - xy[:, [0]])
    xy[:] = _sim(xy, 1.4, -0.2, (-30.0, 60.0))
    return kp


@pytest.mark.parametrize("preserve", [False, True])
def test_retarget_gives_reference_bone_lengths(preserve):
    ref = _reference()
    seq = _distorted_sequence(ref)
    out = M.align_to_reference(seq, ref, preserve_foreshortening=preserve)
    bones = [b for b in M.BODY_BONES if max(b) < 133 or b[0] == 133]
    bones = [b for b in bones if (ref[[i for i in b if i < 133], 2] >= 0.3).all()]
    assert len(bones) >= 9
    np.testing.assert_allclose(_bone_lengths(out, bones), np.broadcast_to(_bone_lengths(ref, bones), (5, len(bones))),
                               rtol=1e-9)
    # directions of the (distorted, rotated) input are kept: forearm angle changes frame to frame
    d_in = seq[:, 9, :2] - seq[:, 7, :2]
    d_out = out[:, 9, :2] - out[:, 7, :2]
    ang = np.arctan2(d_out[:, 1], d_out[:, 0]) - np.arctan2(d_in[:, 1], d_in[:, 0])
    np.testing.assert_allclose(np.angle(np.exp(1j * (ang - ang[0]))), 0.0, atol=1e-9)
    # hands scaled to the reference palm, head to the reference head size, torso exact
    palm = lambda k, h: np.linalg.norm(k[..., [h[5], h[9], h[13], h[17]], :2] - k[..., [h[0]], :2], axis=-1).mean(-1)  # noqa: E731
    np.testing.assert_allclose(palm(out, L.LEFT_HAND), palm(ref, L.LEFT_HAND), rtol=1e-9)
    np.testing.assert_allclose(palm(out, L.RIGHT_HAND), palm(ref, L.RIGHT_HAND), rtol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(out[:, 3, :2] - out[:, 4, :2], axis=-1),
                               np.linalg.norm(ref[3, :2] - ref[4, :2]), rtol=1e-9)
    np.testing.assert_allclose(out[:, [5, 6], :2], np.broadcast_to(ref[[5, 6], :2], (5, 2, 2)), atol=1e-9)


def test_retarget_keeps_foreshortening_and_handles_missing_reference_points():
    ref = _reference()
    seq = _distorted_sequence(ref, T=12)
    seq[3, [9] + list(L.LEFT_HAND), :2] = seq[3, [7], :2] + 0.5 * (seq[3, [9] + list(L.LEFT_HAND), :2] - seq[3, [7], :2])
    out = M.align_to_reference(seq, ref)
    fore = np.linalg.norm(out[:, 9, :2] - out[:, 7, :2], axis=-1)
    ref_fore = np.linalg.norm(ref[9, :2] - ref[7, :2])
    np.testing.assert_allclose(fore[3], 0.5 * ref_fore, rtol=1e-9)
    np.testing.assert_allclose(np.delete(fore, 3), ref_fore, rtol=1e-9)
    # the reference lacks its left forearm: the mirror (right) ratio is used
    ref2 = ref.copy()
    ref2[9, 2] = 0.0
    out2 = M.align_to_reference(_distorted_sequence(ref), ref2)
    # (both forearms were shortened alike, so the mirror ratio restores the left one exactly;
    # keeping the similarity scale instead would leave it at 0.8x)
    np.testing.assert_allclose(np.linalg.norm(out2[:, 9, :2] - out2[:, 7, :2], axis=-1), ref_fore, rtol=1e-9)
    empty = np.zeros((133, 3))
    with pytest.raises(ValueError, match="fewer than two body points"):
        M.align_to_reference(seq, empty)


# ------------------------------------------------------------------------------- time


def test_resample_30_to_25():
    T = 30
    kp = np.zeros((T, 133, 3))
    kp[..., 0] = 10.0 * np.arange(T)[:, None]
    kp[..., 1] = 5.0
    kp[..., 2] = 1.0
    kp[7, 0, 2] = 0.5
    out = M.resample(kp, 30, 25)
    assert out.shape == (25, 133, 3)
    np.testing.assert_allclose(out[:, 1, 0], 12.0 * np.arange(25), atol=1e-9)  # output i at source frame 1.2 i
    assert out[5, 0, 2] == 1.0 and out[6, 0, 2] == 0.5  # 6.0 exact; 7.2 between frames 7 and 8
    assert M.resample(np.concatenate([kp, kp[:1]]), 30, 25).shape[0] == 26
    np.testing.assert_allclose(M.resample(kp, 30, 30), kp)


# ------------------------------------------------------------------------------- the chain


def test_smplx_motion_to_poses_end_to_end(model):
    rng = np.random.default_rng(7)
    T = 30
    poses = np.zeros((T, 165))
    poses[:, 18 * 3 + 2] = 0.3 * np.sin(np.linspace(0, 3, T))
    poses[:, 15 * 3: 15 * 3 + 3] = rng.normal(0, 0.05, (T, 3))
    ref = _reference()
    seq = M.smplx_motion_to_poses(poses, rng.normal(size=(T, 100)), np.zeros((T, 3)), model,
                                  PoseSequence(ref[None].astype(np.float32), 512, 512), 512, 512, fps=25)
    assert isinstance(seq, PoseSequence) and len(seq) == 25 and seq.fps == 25.0
    kp = seq.keypoints
    assert (kp[:, list(M.LEG_POINTS), 2] == 0).all()
    # the synthetic body is not a similarity of the reference: the neck is pinned exactly, the
    # shoulders land within a few pixels (their tilt differs), at the reference's shoulder width
    neck = kp[:, [5, 6], :2].mean(1)
    np.testing.assert_allclose(neck, np.broadcast_to(ref[[5, 6], :2].mean(0), (25, 2)), atol=1e-3)
    np.testing.assert_allclose(kp[:, [5, 6], :2], np.broadcast_to(ref[[5, 6], :2], (25, 2, 2)), atol=6.0)
    np.testing.assert_allclose(np.linalg.norm(kp[:, 5, :2] - kp[:, 6, :2], axis=-1),
                               np.linalg.norm(ref[5, :2] - ref[6, :2]), rtol=1e-4)
    raw = M.smplx_motion_to_poses(poses, None, None, model, None, 512, 512, fps=30, drop_offscreen=False)
    assert len(raw) == 30
