"""Stage 1 motion: EMAGE, SMPL-X -> 2-D keypoints, procedural audio-driven motion (not yet built)."""
