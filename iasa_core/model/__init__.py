"""Stage 2 model: the pose-conditioned Wan2.1 I2V denoiser, presets, checkpoints, loading and the sparse patch."""
