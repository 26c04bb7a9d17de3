"""Stage 2 model: the pose-conditioned Wan2.1 student and its loading (not yet built)."""
