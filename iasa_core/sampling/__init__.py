"""Samplers: flow-matching schedules, teacher and few-step student, long-video windows."""
