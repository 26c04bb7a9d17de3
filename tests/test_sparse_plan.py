"""The IASA plan: token grid, regions, top-K frames, masks, permutation and blocks."""

import numpy as np
import pytest
import torch

from iasa_core.pose import layout as L
from iasa_core.pose.sequence import PoseSequence
from iasa_core.pose.synthetic import synthetic_keypoints
from iasa_core.sparse import TokenGrid, build_plan, dense_plan
from iasa_core.sparse.plan import select_top_k


def _brute_mask(plan):
    """The paper's rule token by token, straight from the definitions (exact mode)."""
    s = plan.seq_len
    f, r, g = plan.token_frame, plan.token_region, plan.frame_allowed
    m = np.zeros((s, s), dtype=bool)
    for i in range(s):
        for j in range(s):
            if f[i] == f[j]:
                m[i, j] = True
            elif g[f[i], f[j]] and (not plan.config.local
                                    or (r[i] == r[j] and (r[i] > 0 or plan.config.background))):
                m[i, j] = True
    return m


def test_token_grid_matches_wan():
    g = TokenGrid(81, 720, 1280)
    assert (g.latent_frames, g.token_hw, g.tokens_per_frame, g.seq_len) == (21, (45, 80), 3600, 75600)
    li = g.latent_index()
    assert li[0] == 0 and list(li[1:5]) == [1, 1, 1, 1] and li[80] == 20
    assert TokenGrid(81, 512, 512).tokens_per_frame == 1024
    assert TokenGrid(81, 480, 832).token_hw == (30, 52)


@pytest.mark.parametrize("frames,size,msg", [(80, (512, 512), "4n\\+1"), (81, (500, 512), "multiples of 16")])
def test_token_grid_errors(frames, size, msg):
    with pytest.raises(ValueError, match=msg):
        TokenGrid(frames, *size)


def test_plan_mask_equals_the_paper_rule_token_by_token():
    kp = synthetic_keypoints(17, 96, 128, seed=3)
    plan = build_plan(kp, (96, 128), top_k=2, block_size=16)
    assert plan.seq_len == 5 * 6 * 8
    np.testing.assert_array_equal(plan.token_mask().numpy(), _brute_mask(plan))
    glob = build_plan(kp, (96, 128), top_k=2, block_size=16, local=False)
    np.testing.assert_array_equal(glob.token_mask().numpy(), _brute_mask(glob))
    # The plan is the intersection: strictly inside the global mask, and each frame stays dense.
    assert (plan.token_mask() <= glob.token_mask()).all()
    assert plan.token_mask().sum() < glob.token_mask().sum()
    n = plan.grid.tokens_per_frame
    for t in range(plan.grid.latent_frames):
        assert plan.token_mask()[t * n:(t + 1) * n, t * n:(t + 1) * n].all()


def test_background_tokens_never_look_across_frames():
    kp = synthetic_keypoints(13, 96, 128, seed=1)
    plan = build_plan(kp, (96, 128), top_k=3, block_size=16)
    m = plan.token_mask().numpy()
    bg = plan.token_region == 0
    other_frame = plan.token_frame[:, None] != plan.token_frame[None, :]
    assert not (m & other_frame)[bg].any()
    assert not (m & other_frame)[:, bg].any()
    cross = m & other_frame
    assert (plan.token_region[:, None] == plan.token_region[None, :])[cross].all()


def test_background_option_lets_background_see_the_background_of_top_k_frames():
    kp = synthetic_keypoints(13, 96, 128, seed=1)
    local = build_plan(kp, (96, 128), top_k=3, block_size=16)
    plan = build_plan(kp, (96, 128), top_k=3, block_size=16, background=True)
    glob = build_plan(kp, (96, 128), top_k=3, block_size=16, local=False)
    m = plan.token_mask().numpy()
    np.testing.assert_array_equal(m, _brute_mask(plan))
    assert (local.token_mask().numpy() <= m).all() and (m <= glob.token_mask().numpy()).all()
    other_frame = plan.token_frame[:, None] != plan.token_frame[None, :]
    bg = plan.token_region == 0
    cross = m & other_frame
    assert cross[bg].any() and (plan.token_region[:, None] == plan.token_region[None, :])[cross].all()
    assert plan.token_density == pytest.approx(m.mean())  # block counts follow the same rule
    assert local.token_density < plan.token_density < glob.token_density
    assert (plan.block_mask >= local.block_mask).all()


def _rigid_sequence():
    """Latent frames 3, 4, 5 are rotated and translated copies of latent frames 1, 0, 2."""
    rng = np.random.default_rng(7)
    base = synthetic_keypoints(1, 256, 256, seed=0)[0].astype(np.float64)
    poses = []
    for _ in range(3):
        p = base.copy()
        p[:, :2] += rng.normal(size=(L.NUM_KEYPOINTS, 2)) * 12
        poses.append(p)

    def moved(p, ang, t):
        q = p.copy()
        c, s = np.cos(ang), np.sin(ang)
        ctr = np.array([128.0, 128.0])
        q[:, :2] = (p[:, :2] - ctr) @ np.array([[c, -s], [s, c]]).T + ctr + t
        return q

    latent = [poses[0], poses[1], poses[2], moved(poses[1], 0.2, [10, -6]), moved(poses[0], -0.15, [-8, 4]),
              moved(poses[2], 0.1, [3, 3])]
    video = [latent[0]] + [latent[t] for t in range(1, 6) for _ in range(4)]
    return np.stack(video)


def test_top_k_finds_rigid_copies_and_never_looks_ahead():
    kp = _rigid_sequence()
    plan = build_plan(kp, (256, 256), top_k=2, block_size=64)
    assert plan.grid.latent_frames == 6
    assert plan.topk.shape == (6, 2)
    assert plan.topk[3, 0] == 1 and plan.topk[4, 0] == 0 and plan.topk[5, 0] == 2
    assert plan.similarity[3, 1] == pytest.approx(0, abs=1e-3)
    assert list(plan.topk[0]) == [-1, -1]  # no past frames
    assert plan.topk[1, 0] == 0 and plan.topk[1, 1] == -1
    for t in range(6):
        assert all(k < t for k in plan.topk[t] if k >= 0)
    m = plan.token_mask().numpy()
    future = plan.token_frame[None, :] > plan.token_frame[:, None]
    assert not m[future].any()


def test_non_causal_and_sink_first_options():
    kp = _rigid_sequence()
    nc = build_plan(kp, (256, 256), top_k=1, block_size=64, causal=False)
    assert nc.topk[1, 0] == 3  # the copy of latent frame 1 lies in its future
    assert nc.topk[0, 0] == 4
    sink = build_plan(kp, (256, 256), top_k=1, block_size=64, sink_first=True)
    assert sink.frame_allowed[:, 0].all()
    m = sink.token_mask().numpy()
    n = sink.grid.tokens_per_frame
    face = sink.token_region == L.REGION_FACE
    # a face token of the last frame sees the first frame's face tokens
    q = np.nonzero(face[5 * n:])[0][0] + 5 * n
    assert m[q, :n][face[:n]].all() and not m[q, :n][~face[:n]].any()


def test_select_top_k_ties_prefer_nearest_frames():
    sim = np.zeros((5, 5))
    assert list(select_top_k(sim, 2)[4]) == [3, 2]
    sim = np.full((4, 4), np.inf)
    assert list(select_top_k(sim, 1)[3]) == [2]


def test_regions_from_keypoints_land_on_the_right_tokens():
    kp = np.zeros((1, L.NUM_KEYPOINTS, 3))
    # face: a 40x40 square centred at (200, 100); left hand: tiny cluster at (40, 200)
    ang = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    kp[0, 23:91, 0] = 200 + 20 * np.cos(ang)
    kp[0, 23:91, 1] = 100 + 20 * np.sin(ang)
    kp[0, 23:91, 2] = 1
    kp[0, 91:112, :2] = [40, 200]
    kp[0, 91:112, 2] = 1
    plan = build_plan(kp, (256, 256), num_frames=1, top_k=0, block_size=64)
    labels = plan.token_region.reshape(16, 16)
    assert labels[100 // 16, 200 // 16] == L.REGION_FACE
    assert labels[200 // 16, 40 // 16] == L.REGION_HANDS
    assert labels[0, 0] == L.BACKGROUND and labels[15, 15] == L.BACKGROUND
    face_rows, face_cols = np.nonzero(labels == L.REGION_FACE)
    assert face_rows.min() >= (80 - 8) // 16 and face_rows.max() <= (120 + 8) // 16
    assert face_cols.min() >= (180 - 8) // 16 and face_cols.max() <= (220 + 8) // 16
    only_face = build_plan(kp, (256, 256), num_frames=1, top_k=0, block_size=64, regions=("face",))
    assert set(np.unique(only_face.token_region)) == {0, L.REGION_FACE}


@pytest.mark.parametrize("mode", ["exact", "pooled"])
@pytest.mark.parametrize("size,bs", [((96, 128), 16), ((80, 112), 16), ((64, 64), 128)])
def test_blocks_bsr_and_density_agree_with_the_token_mask(mode, size, bs):
    kp = synthetic_keypoints(13, *size, seed=5)
    plan = build_plan(kp, size, top_k=2, block_size=bs, mode=mode)
    s, nb = plan.seq_len, plan.num_blocks
    assert nb == -(-s // bs)
    # perm is a permutation that keeps every token in its frame and groups regions
    assert sorted(plan.perm.tolist()) == list(range(s))
    assert (plan.token_frame[plan.perm] == plan.token_frame).all()
    exact = torch.as_tensor(_brute_mask(plan) if mode == "exact" else plan.token_mask().numpy())
    permuted = plan.token_mask()[plan.perm][:, plan.perm]
    pad = nb * bs - s
    padded = torch.nn.functional.pad(permuted, (0, pad, 0, pad))
    blocks = padded.reshape(nb, bs, nb, bs).permute(0, 2, 1, 3)
    any_, count = blocks.any(-1).any(-1), blocks.sum((-1, -2))
    lengths = torch.as_tensor(plan.block_lengths())
    np.testing.assert_array_equal(plan.block_mask, any_.numpy())
    np.testing.assert_array_equal(plan.block_full, (count == lengths[:, None] * lengths[None, :]).numpy())
    # BSR
    assert plan.indptr[0] == 0 and plan.indptr[-1] == len(plan.indices) == plan.block_mask.sum()
    for r in range(nb):
        np.testing.assert_array_equal(plan.indices[plan.indptr[r]:plan.indptr[r + 1]],
                                      np.nonzero(plan.block_mask[r])[0])
    computed = (lengths[:, None] * lengths[None, :])[torch.as_tensor(plan.block_mask)].sum().item()
    assert plan.density == pytest.approx(computed / s**2)
    if mode == "exact":
        np.testing.assert_array_equal(plan.token_mask().numpy(), exact.numpy())
        assert plan.token_density == pytest.approx(exact.sum().item() / s**2)
    else:
        # pooled = any token pair of a block allows the whole block
        blk = plan.token_block
        np.testing.assert_array_equal(plan.token_mask().numpy(), plan.block_mask[blk][:, blk])


def test_block_token_masks_reassemble_the_token_mask():
    kp = synthetic_keypoints(9, 80, 112, seed=2)
    for mode in ("exact", "pooled"):
        plan = build_plan(kp, (80, 112), top_k=1, block_size=16, mode=mode)
        rows = np.repeat(np.arange(plan.num_blocks), plan.block_mask.sum(1))
        bm = plan.block_token_masks(rows, plan.indices)
        nb, bs, s = plan.num_blocks, plan.block_size, plan.seq_len
        dense = torch.zeros(nb, nb, bs, bs, dtype=torch.bool)
        dense[torch.as_tensor(rows), torch.as_tensor(plan.indices, dtype=torch.long)] = bm
        dense = dense.permute(0, 2, 1, 3).reshape(nb * bs, nb * bs)[:s, :s]
        np.testing.assert_array_equal(dense.numpy(), plan.token_mask()[plan.perm][:, plan.perm].numpy())


def test_permutation_lowers_density():
    kp = synthetic_keypoints(81, 256, 384, seed=0)
    on = build_plan(kp, (256, 384), top_k=2)
    off = build_plan(kp, (256, 384), top_k=2, permute=False)
    assert on.density < 0.8 * off.density
    assert on.density <= 0.25


def test_dense_plan_allows_everything():
    plan = dense_plan(TokenGrid(9, 64, 96), block_size=16)
    assert plan.token_mask().all() and plan.block_full.all() and plan.density == pytest.approx(1.0)


def test_pose_sequence_is_rescaled_to_the_video_size():
    kp = synthetic_keypoints(9, 512, 512, seed=0)
    seq = PoseSequence(kp, 512, 512)
    small = build_plan(seq, (256, 256), top_k=1, block_size=64)
    direct = build_plan(kp * np.array([0.5, 0.5, 1.0], dtype=np.float32), (256, 256), top_k=1, block_size=64)
    np.testing.assert_array_equal(small.token_region, direct.token_region)
    with pytest.raises(ValueError, match="aspect"):
        build_plan(seq, (256, 512), top_k=1)


def test_plan_input_errors():
    kp = synthetic_keypoints(9, 64, 64)
    with pytest.raises(ValueError, match="9 frames but num_frames=13"):
        build_plan(kp, (64, 64), num_frames=13)
    with pytest.raises(ValueError, match=r"\(frames, 133, 3\)"):
        build_plan(kp[:, :17], (64, 64))
    with pytest.raises(ValueError, match="mode"):
        build_plan(kp, (64, 64), mode="fast")
    with pytest.raises(ValueError, match="unknown region"):
        build_plan(kp, (64, 64), regions=("legs",))
