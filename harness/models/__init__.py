"""Video backbones. This package imports no torch; the model lives in ``harness.models.video_vit``."""
from harness.models.dims import backbone_config, backbone_dims
from harness.models.presets import (DIM_NAMES, VideoSwinConfig, VideoViTConfig, backbone_registry, register_backbone,
                                    resolve_config)

__all__ = ["DIM_NAMES", "VideoSwinConfig", "VideoViTConfig", "backbone_config", "backbone_dims", "backbone_registry",
           "register_backbone", "resolve_config"]
