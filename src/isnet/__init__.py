"""ISNet: image-level and semantic-level context for semantic segmentation."""

from .checkpoint import load_model, load_released_checkpoint, save_model
from .config import AuxConfig, BackboneConfig, HeadConfig, ModelConfig, from_released_config
from .inference import InferenceConfig, predict, predict_labels
from .presets import PRESETS, create_model, get_config
from .segmentor import Segmentor, build_model

__all__ = [
    "AuxConfig",
    "BackboneConfig",
    "HeadConfig",
    "InferenceConfig",
    "ModelConfig",
    "PRESETS",
    "Segmentor",
    "build_model",
    "create_model",
    "from_released_config",
    "get_config",
    "load_model",
    "load_released_checkpoint",
    "predict",
    "predict_labels",
    "save_model",
]
