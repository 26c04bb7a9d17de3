"""Input-aware sparse attention: the plan (masks, permutation, blocks) and its backends."""

from .grid import TokenGrid, parse_size
from .plan import PlanConfig, SparsePlan, build_plan, dense_plan

__all__ = ["PlanConfig", "SparsePlan", "TokenGrid", "build_plan", "dense_plan", "parse_size"]
