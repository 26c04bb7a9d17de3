"""The input-aware sparse attention plan: global top-K frames x local regions, permuted and blocked."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..pose import layout as L
from ..pose.regions import DEFAULT_MIN_SCORE, check_regions, frame_region_masks, label_map
from ..pose.sequence import PoseSequence
from ..pose.similarity import rigid_alignment_error
from .grid import SPATIAL_STRIDE, TokenGrid

MODES = ("exact", "pooled")
# Within a frame, tokens are grouped by region in this order (background last), so that a
# region becomes a few contiguous runs of tokens instead of scattered raster rows.
_PERMUTE_ORDER = (L.REGION_FACE, L.REGION_HANDS, L.REGION_ARMS, L.REGION_BODY, L.BACKGROUND)


def pair_rule(fq: torch.Tensor, fk: torch.Tensor, rq: torch.Tensor, rk: torch.Tensor,
              frame_allowed: torch.Tensor, local: bool, background: bool = False) -> torch.Tensor:
    """The IASA token rule on broadcastable frame/region tensors of queries and keys.

    Same frame: always (dense within a frame). Other frame: only a global-mask frame, and with
    the local mask only between tokens of the same non-background region (paper Eq. 2-3, M =
    M_global + M_local, i.e. their intersection); ``background`` counts the background as a region too.
    """
    cross = frame_allowed[fq, fk]
    if local:
        cross = cross & (rq == rk)
        if not background:
            cross = cross & (rq > 0)
    return (fq == fk) | cross


@dataclass(frozen=True)
class PlanConfig:
    """Options of the sparse pattern; every field is a user-facing knob."""

    top_k: int = 2  # past latent frames each frame may look at (global mask)
    block_size: int = 128  # kernel tile, tokens (paper: 128 x 128)
    mode: str = "exact"  # "exact": token mask inside partial blocks; "pooled": whole blocks
    regions: tuple[str, ...] = L.ALL_REGIONS  # regions that may attend across frames
    local: bool = True  # intersect with the same-region (local) mask
    background: bool = False  # with local: background tokens also see the background of the top-K frames
    sink_first: bool = False  # the first (reference) latent frame is always visible
    causal: bool = True  # only past frames are candidates (paper); False: any other frame
    permute: bool = True  # group each frame's tokens by region before blocking
    min_score: float = DEFAULT_MIN_SCORE  # keypoints below this score are ignored

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}; got {self.mode!r}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0; got {self.top_k}")
        if self.block_size < 1:
            raise ValueError(f"block_size must be >= 1; got {self.block_size}")
        object.__setattr__(self, "regions", check_regions(self.regions))


@dataclass
class AttentionGroup:
    """Query tokens that share one set of key blocks (original token indices)."""

    q_idx: torch.Tensor
    kv_idx: torch.Tensor
    mask: torch.Tensor | None  # (len(q_idx), len(kv_idx)) bool, None when all pairs are allowed


@dataclass
class SparsePlan:
    """A sparse attention pattern over Wan tokens, built once and reused by every layer and step.

    Token order is the DiT's: latent frame major, then raster (row, col). ``perm`` lists the
    original token index at each permuted position; blocks are ``block_size`` consecutive
    permuted positions (the last one may be short: no padding lives in the plan).
    """

    grid: TokenGrid
    config: PlanConfig
    topk: np.ndarray  # (T, K) latent frame indices, most similar first, -1 = none
    similarity: np.ndarray  # (T, T) rigid alignment error between latent frames
    frame_allowed: np.ndarray  # (T, T) bool global mask [query frame, key frame]
    token_frame: np.ndarray  # (S,) latent frame of each token
    token_region: np.ndarray  # (S,) region label, 0 = background
    perm: np.ndarray  # (S,) original index at each permuted position
    block_mask: np.ndarray  # (nb, nb) bool: block computed at all
    block_full: np.ndarray  # (nb, nb) bool: every token pair of the block allowed
    build_seconds: float = 0.0
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    # ---- sizes -------------------------------------------------------------------------
    @property
    def seq_len(self) -> int:
        """Tokens S."""
        return int(self.token_frame.shape[0])

    @property
    def block_size(self) -> int:
        """Tokens per block."""
        return self.config.block_size

    @property
    def num_blocks(self) -> int:
        """Blocks per side nb = ceil(S / block_size)."""
        return int(self.block_mask.shape[0])

    @property
    def mode(self) -> str:
        """'exact' or 'pooled'."""
        return self.config.mode

    def block_lengths(self) -> np.ndarray:
        """(nb,) tokens in each block (the last may be short)."""
        n = np.full(self.num_blocks, self.block_size, dtype=np.int64)
        n[-1] = self.seq_len - self.block_size * (self.num_blocks - 1)
        return n

    @property
    def inv_perm(self) -> np.ndarray:
        """(S,) permuted position of each original token."""
        if "inv_perm" not in self._cache:
            inv = np.empty_like(self.perm)
            inv[self.perm] = np.arange(self.seq_len)
            self._cache["inv_perm"] = inv
        return self._cache["inv_perm"]

    @property
    def token_block(self) -> np.ndarray:
        """(S,) block of each original token."""
        return self.inv_perm // self.block_size

    # ---- BSR -----------------------------------------------------------------------------
    @property
    def indptr(self) -> np.ndarray:
        """BSR row pointer (nb + 1,) int32 over block rows (scipy convention)."""
        return np.concatenate([[0], np.cumsum(self.block_mask.sum(1))]).astype(np.int32)

    @property
    def indices(self) -> np.ndarray:
        """BSR column indices (nnz,) int32, ascending within each block row."""
        return np.nonzero(self.block_mask)[1].astype(np.int32)

    @property
    def density(self) -> float:
        """Fraction of the S x S query-key pairs computed at block level."""
        n = self.block_lengths().astype(np.float64)
        computed = (n[:, None] * n[None, :])[self.block_mask].sum()
        return float(computed / float(self.seq_len) ** 2)

    @property
    def token_density(self) -> float:
        """Fraction of query-key pairs allowed by the token mask in the plan's mode."""
        if self.mode == "pooled":
            return self.density
        return float(self._allowed_counts().sum() / float(self.seq_len) ** 2)

    # ---- masks -----------------------------------------------------------------------------
    def allowed(self, q_idx: torch.Tensor, k_idx: torch.Tensor) -> torch.Tensor:
        """Exact token rule for original indices: same frame, or a top-K frame and same region."""
        fr = self.as_tensor("token_frame", q_idx.device)
        rg = self.as_tensor("token_region", q_idx.device)
        ga = self.as_tensor("frame_allowed", q_idx.device)
        return pair_rule(fr[q_idx][:, None], fr[k_idx][None, :], rg[q_idx][:, None], rg[k_idx][None, :], ga,
                         self.config.local, self.config.background)

    def token_mask(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """(S, S) bool in original token order: the semantics every backend reproduces."""
        if self.mode == "exact":
            idx = torch.arange(self.seq_len, device=device)
            return self.allowed(idx, idx)
        blk = torch.as_tensor(self.token_block, device=device)
        bm = torch.as_tensor(self.block_mask, device=device)
        return bm[blk][:, blk]

    def block_token_masks(self, rows: np.ndarray, cols: np.ndarray,
                          device: torch.device | str = "cpu") -> torch.Tensor:
        """(n, bs, bs) token masks of blocks (rows[i], cols[i]) in permuted order, in the plan's mode.

        Positions past the end of the sequence (the last block's padding) are False.
        """
        device = torch.device(device)
        bs, s = self.block_size, self.seq_len
        ar = torch.arange(bs, device=device)
        qpos = torch.as_tensor(rows, device=device, dtype=torch.long)[:, None] * bs + ar
        kpos = torch.as_tensor(cols, device=device, dtype=torch.long)[:, None] * bs + ar
        qin, kin = qpos < s, kpos < s
        inside = qin[:, :, None] & kin[:, None, :]
        if self.mode == "pooled":
            return inside
        perm = self.as_tensor("perm", device)
        qi, ki = perm[qpos.clamp(max=s - 1)], perm[kpos.clamp(max=s - 1)]
        fr = self.as_tensor("token_frame", device)
        rg = self.as_tensor("token_region", device)
        ga = self.as_tensor("frame_allowed", device)
        rule = pair_rule(fr[qi][:, :, None], fr[ki][:, None, :], rg[qi][:, :, None], rg[ki][:, None, :], ga,
                         self.config.local, self.config.background)
        return inside & rule

    def groups(self, device: torch.device | str = "cpu") -> list[AttentionGroup]:
        """Query blocks grouped by identical key-block sets, with their gathered indices."""
        device = torch.device(device)
        key = ("groups", str(device))
        if key not in self._cache:
            self._cache[key] = self._build_groups(device)
        return self._cache[key]

    def to_summary(self) -> dict:
        """JSON-friendly description (sizes, options, density, top-K)."""
        return {
            "video_frames": self.grid.num_frames, "height": self.grid.height, "width": self.grid.width,
            "latent_frames": self.grid.latent_frames, "tokens_per_frame": self.grid.tokens_per_frame,
            "seq_len": self.seq_len, "block_size": self.block_size, "num_blocks": self.num_blocks,
            "nnz_blocks": int(self.block_mask.sum()), "partial_blocks": int(
                (self.block_mask & ~self.block_full).sum()),
            "density": self.density, "token_density": self.token_density,
            "mode": self.mode, "top_k": self.config.top_k, "regions": list(self.config.regions),
            "local": self.config.local, "sink_first": self.config.sink_first,
            "causal": self.config.causal, "permute": self.config.permute,
            "topk": self.topk.tolist(), "build_seconds": self.build_seconds,
        }

    # ---- internals -------------------------------------------------------------------------
    def as_tensor(self, name: str, device: torch.device | str) -> torch.Tensor:
        """A plan array (perm, inv_perm, token_frame, ...) as a tensor on ``device``, cached."""
        key = (name, str(device))
        if key not in self._cache:
            self._cache[key] = torch.as_tensor(getattr(self, name), device=device)
        return self._cache[key]

    def block_histogram(self) -> np.ndarray:
        """(nb, T, R) count of tokens per block, frame and region label."""
        nb, t, r = self.num_blocks, self.grid.latent_frames, L.NUM_REGION_LABELS
        flat = (self.token_block * t + self.token_frame) * r + self.token_region
        return np.bincount(flat, minlength=nb * t * r).reshape(nb, t, r).astype(np.float64)

    def _allowed_counts(self) -> np.ndarray:
        """(nb, nb) number of allowed token pairs per block under the exact rule (computed once)."""
        if "allowed_counts" not in self._cache:
            self._cache["allowed_counts"] = self._count_allowed()
        return self._cache["allowed_counts"]

    def _count_allowed(self) -> np.ndarray:
        h = self.block_histogram()
        hf = h.sum(2)
        cross_frames = (self.frame_allowed & ~np.eye(len(self.frame_allowed), dtype=bool)).astype(np.float64)
        counts = hf @ hf.T
        if self.config.local:
            h1 = h if self.config.background else h[:, :, 1:]
            x = np.einsum("afr,fg->agr", h1, cross_frames)
            counts += x.reshape(len(h), -1) @ h1.reshape(len(h), -1).T
        else:
            counts += hf @ cross_frames @ hf.T
        return np.rint(counts).astype(np.int64)

    def _build_groups(self, device: torch.device) -> list[AttentionGroup]:
        perm = torch.as_tensor(self.perm, device=device)
        bs = self.block_size
        rows = np.ascontiguousarray(self.block_mask)
        _, first, inverse = np.unique(rows.view(np.uint8), axis=0, return_index=True, return_inverse=True)
        groups = []
        for g in np.argsort(first):  # keep the groups in sequence order
            qb = np.nonzero(inverse.ravel() == g)[0]
            kb = np.nonzero(rows[qb[0]])[0]
            q_idx = torch.cat([perm[b * bs:(b + 1) * bs] for b in qb])
            kv_idx = torch.cat([perm[b * bs:(b + 1) * bs] for b in kb])
            mask = None
            if self.mode == "exact" and not self.block_full[np.ix_(qb, kb)].all():
                mask = self.allowed(q_idx, kv_idx)
            groups.append(AttentionGroup(q_idx, kv_idx, mask))
        return groups


def _latent_keypoints(kp: np.ndarray, grid: TokenGrid, min_score: float) -> np.ndarray:
    """Average each latent frame's video-frame keypoints (a point must be seen in all of them)."""
    li = grid.latent_index()
    out = np.zeros((grid.latent_frames,) + kp.shape[1:], dtype=np.float64)
    for t in range(grid.latent_frames):
        group = kp[li == t]
        w = (group[..., 2] >= min_score).astype(np.float64)
        out[t, :, :2] = (group[..., :2] * w[..., None]).sum(0) / np.maximum(w.sum(0), 1.0)[:, None]
        out[t, :, 2] = group[..., 2].min(0)
    return out


def select_top_k(similarity: np.ndarray, top_k: int, causal: bool = True) -> np.ndarray:
    """(T, K) most similar candidate frames per frame (smallest error first, ties: nearest)."""
    t = len(similarity)
    out = np.full((t, top_k), -1, dtype=np.int64)
    for q in range(t):
        cand = np.arange(q) if causal else np.delete(np.arange(t), q)
        if len(cand) == 0 or top_k == 0:
            continue
        order = np.lexsort((np.abs(cand - q), similarity[q, cand]))
        chosen = cand[order[:top_k]]
        out[q, : len(chosen)] = chosen
    return out


def token_regions(kp: np.ndarray, grid: TokenGrid, regions: tuple[str, ...],
                  min_score: float = DEFAULT_MIN_SCORE) -> np.ndarray:
    """(T, N) region label of every token, from the union of each latent frame's video frames."""
    centers = grid.token_centers()
    li = grid.latent_index()
    n = grid.tokens_per_frame
    union = {rid: np.zeros((grid.latent_frames, n), dtype=bool) for rid in L.REGION_PRIORITY}
    for f in range(grid.num_frames):
        for rid, m in frame_region_masks(kp[f], centers, float(SPATIAL_STRIDE), min_score).items():
            union[rid][li[f]] |= m
    return np.stack([label_map({r: union[r][t] for r in union}, regions) for t in range(grid.latent_frames)])


def _as_keypoints(keypoints, video_size: tuple[int, int]) -> np.ndarray:
    """Accept a PoseSequence or a (F, 133, 3) array; rescale a sequence to the video size."""
    if isinstance(keypoints, PoseSequence):
        kp = np.array(keypoints.keypoints, dtype=np.float64)
        h0, w0 = keypoints.height, keypoints.width
        h, w = video_size
        if (h0, w0) != (h, w):
            if abs(h0 / w0 - h / w) > 0.01 * (h / w):
                raise ValueError(
                    f"the poses' canvas {w0}x{h0} and the video size {w}x{h} (width x height) have different aspect "
                    f"ratios; "
                    f"crop or pad the reference image (and its poses) to the video's aspect first")
            kp[..., 0] *= w / w0
            kp[..., 1] *= h / h0
        return kp
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.ndim != 3 or kp.shape[1:] != (L.NUM_KEYPOINTS, 3):
        raise ValueError(f"keypoints must be (frames, {L.NUM_KEYPOINTS}, 3) = x, y, score in video pixels "
                         f"(COCO-WholeBody); got shape {kp.shape}")
    return kp


def _permutation(token_region: np.ndarray, n: int, permute: bool) -> np.ndarray:
    if not permute:
        return np.arange(token_region.size)
    rank = np.empty(L.NUM_REGION_LABELS, dtype=np.int64)
    rank[list(_PERMUTE_ORDER)] = np.arange(len(_PERMUTE_ORDER))
    t = token_region.reshape(-1, n)
    order = np.argsort(rank[t], axis=1, kind="stable")
    return (order + (np.arange(len(t)) * n)[:, None]).ravel()


def assemble_plan(grid: TokenGrid, config: PlanConfig, token_region: np.ndarray, frame_allowed: np.ndarray,
                  topk: np.ndarray, similarity: np.ndarray, t0: float | None = None) -> SparsePlan:
    """Permute, block and count a pattern given per-token regions and the frame-level mask."""
    t0 = time.perf_counter() if t0 is None else t0
    n = grid.tokens_per_frame
    token_region = np.asarray(token_region, dtype=np.int64).reshape(-1)
    token_frame = np.repeat(np.arange(grid.latent_frames), n)
    nb = -(-token_region.size // config.block_size)
    plan = SparsePlan(
        grid=grid, config=config, topk=topk, similarity=similarity, frame_allowed=frame_allowed,
        token_frame=token_frame, token_region=token_region,
        perm=_permutation(token_region, n, config.permute),
        block_mask=np.zeros((nb, nb), dtype=bool), block_full=np.zeros((nb, nb), dtype=bool))
    counts = plan._allowed_counts()
    lengths = plan.block_lengths()
    plan.block_mask = counts > 0
    plan.block_full = counts == lengths[:, None] * lengths[None, :]
    if config.mode == "pooled":
        plan.block_full = plan.block_mask.copy()
    plan.build_seconds = time.perf_counter() - t0
    return plan


def build_plan(keypoints, video_size: tuple[int, int], num_frames: int | None = None, top_k: int = 2,
               block_size: int = 128, mode: str = "exact", **options) -> SparsePlan:
    """Build the IASA plan for a pose sequence (F, 133, 3) at ``video_size`` = (H, W) pixels.

    ``options`` are the remaining ``PlanConfig`` fields: regions, local, background, sink_first, causal,
    permute, min_score.
    """
    t0 = time.perf_counter()
    config = PlanConfig(top_k=top_k, block_size=block_size, mode=mode, **options)
    kp = _as_keypoints(keypoints, video_size)
    if num_frames is None:
        num_frames = len(kp)
    if len(kp) != num_frames:
        raise ValueError(f"the poses have {len(kp)} frames but num_frames={num_frames}: give one pose per "
                         f"video frame (resample or trim the poses)")
    grid = TokenGrid(num_frames, *video_size)
    latent_kp = _latent_keypoints(kp, grid, config.min_score)
    similarity = rigid_alignment_error(latent_kp, min_score=config.min_score)
    topk = select_top_k(similarity, config.top_k, config.causal)
    t = grid.latent_frames
    allowed = np.eye(t, dtype=bool)
    rows = np.repeat(np.arange(t), config.top_k)
    cols = topk.ravel()
    allowed[rows[cols >= 0], cols[cols >= 0]] = True
    if config.sink_first:
        allowed[:, 0] = True
    regions = token_regions(kp, grid, config.regions, config.min_score)
    return assemble_plan(grid, config, regions, allowed, topk, similarity, t0)


def dense_plan(grid: TokenGrid, block_size: int = 128) -> SparsePlan:
    """A plan where every token sees every token (for equivalence tests and the dense teacher)."""
    t = grid.latent_frames
    config = PlanConfig(top_k=max(t - 1, 0), block_size=block_size, local=False, causal=False,
                        permute=False)
    topk = select_top_k(np.zeros((t, t)), config.top_k, causal=False)
    return assemble_plan(grid, config, np.zeros(grid.seq_len, dtype=np.int64), np.ones((t, t), dtype=bool),
                         topk, np.zeros((t, t)))
