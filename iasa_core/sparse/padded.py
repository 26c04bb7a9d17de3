"""A sparse plan inside a longer sequence: dense extra tokens before and after the video tokens.

Some Wan variants put tokens that are not video frames into self-attention (a reference frame before the
video, concatenated frames or context after it). Those tokens see everything and are seen by every token;
the video tokens keep the plan's pattern among themselves. ``PaddedPlan`` answers the two questions the
dense and gather backends ask of a plan (``token_mask`` and ``groups``), so both run it unchanged and
exactly; the BSR backends (flex, FlashInfer) only know block grids of the plan itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .plan import AttentionGroup, SparsePlan

# Backends that read only token_mask() / groups(), and so accept a PaddedPlan.
PADDED_BACKENDS = ("dense", "gather")


@dataclass
class PaddedPlan:
    """``plan`` over tokens [prefix, prefix + plan.seq_len); ``prefix`` tokens before and ``suffix`` after are dense."""

    plan: SparsePlan
    prefix: int = 0
    suffix: int = 0
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.prefix < 0 or self.suffix < 0:
            raise ValueError(f"prefix and suffix must be >= 0; got {self.prefix}, {self.suffix}")

    @property
    def seq_len(self) -> int:
        """All tokens: prefix + video + suffix."""
        return self.prefix + self.plan.seq_len + self.suffix

    @property
    def grid(self):
        """The video's token grid (for messages)."""
        return self.plan.grid

    @property
    def mode(self) -> str:
        """The inner plan's mode."""
        return self.plan.mode

    def extra_index(self, device: torch.device | str) -> torch.Tensor:
        """Indices of the dense extra tokens (prefix, then suffix)."""
        p, n = self.prefix, self.plan.seq_len
        return torch.cat([torch.arange(p, device=device), torch.arange(p + n, self.seq_len, device=device)])

    def token_mask(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """(S, S) bool: the plan's mask on the video block, True on every row and column of an extra token."""
        p, n = self.prefix, self.plan.seq_len
        mask = torch.ones(self.seq_len, self.seq_len, dtype=torch.bool, device=device)
        mask[p:p + n, p:p + n] = self.plan.token_mask(device)
        return mask

    def groups(self, device: torch.device | str = "cpu") -> list[AttentionGroup]:
        """The plan's groups shifted by ``prefix`` with the extra keys added, plus one group of extra queries."""
        device = torch.device(device)
        key = ("groups", str(device))
        if key not in self._cache:
            self._cache[key] = self._build_groups(device)
        return self._cache[key]

    def _build_groups(self, device: torch.device) -> list[AttentionGroup]:
        extra = self.extra_index(device)
        out = []
        for g in self.plan.groups(device):
            kv = torch.cat([g.kv_idx + self.prefix, extra])
            mask = g.mask
            if mask is not None and len(extra):
                # extra keys are visible to every video query
                mask = torch.cat([mask, mask.new_ones(len(g.q_idx), len(extra))], dim=1)
            out.append(AttentionGroup(g.q_idx + self.prefix, kv, mask))
        if len(extra):
            out.append(AttentionGroup(extra, torch.arange(self.seq_len, device=device), None))
        return out
