"""A synthetic talking-character world: 2-D characters rendered from WholeBody-133 poses.

The renderer is the ground truth: any pose sequence (with a style) has an exact video, so a
model trained or evaluated on this world can be measured without error in the target.
"""

from .character import CharacterStyle, render_character, render_video
from .motion import character_motion, reference_pose
from .speech import espeak_available, speech_clip
from .world import WorldSample, ground_truth, load_world, make_sample, make_world, sample_ground_truth

__all__ = [
    "CharacterStyle", "WorldSample", "character_motion", "espeak_available", "ground_truth", "load_world",
    "make_sample", "make_world",
    "reference_pose", "render_character", "render_video", "sample_ground_truth", "speech_clip",
]
