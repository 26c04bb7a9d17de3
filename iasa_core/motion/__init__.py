"""Stage 1 motion: procedural audio-driven motion, EMAGE, and SMPL-X -> WholeBody 2-D keypoints."""
