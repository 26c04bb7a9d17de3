"""Attention backends for a SparsePlan; all take and return (B, S, heads, head_dim) tensors."""
