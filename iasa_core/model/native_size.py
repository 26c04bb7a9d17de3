"""The video size a model was made for: `generate` defaults to it, as `demo` does, instead of the image's size.

A phone photo (4000x3000) or a scan (8000x8000) taken at its own size needs tens of GB and gives a video the model
was never trained at; the model's own short side with the image's aspect ratio is what it draws well.
"""

from __future__ import annotations

from .presets import PoseWanConfig

# Short side in pixels per configuration. cpu-small (the embedded models) was trained at 128x128; tiny and
# bench-cpu have random weights and no trained size, so they take small CPU-friendly sizes.
TRAINED_SIDE = {"cpu-small": 128, "tiny": 64, "bench-cpu": 128}
WAN_SIDE = 480  # Wan2.1 I2V 480p and UniAnimate-DiT were trained at 832x480
WAN_720P_SIDE = 720  # the Wan2.1 I2V 720p release, named so in its files (e.g. wan2.1_i2v_720p_14B)


def native_side(config: PoseWanConfig) -> int:
    """The short side (pixels) of the videos the model was trained on."""
    if config.name in TRAINED_SIDE:
        return TRAINED_SIDE[config.name]
    return WAN_720P_SIDE if "720p" in config.name.lower() else WAN_SIDE


def native_size(config: PoseWanConfig, image_hw: tuple[int, int]) -> tuple[int, int]:
    """(H, W): the model's short side, the image's aspect ratio, multiples of 16."""
    from ..demo import demo_size

    return demo_size(image_hw, native_side(config))
