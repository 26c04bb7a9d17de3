"""Keypoint layout, regions, similarity and conversion for WholeBody-133 pose sequences."""
