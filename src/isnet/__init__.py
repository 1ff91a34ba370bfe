"""ISNet: image-level and semantic-level context for semantic segmentation."""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

from isnet.weights.checkpoint import load_model, save_model
from isnet.model.config import AuxConfig, BackboneConfig, ISNetHeadConfig, ModelConfig
from isnet.data.info import DATASETS, DatasetInfo
from isnet.inference.engine import InferenceConfig, predict, predict_labels
from isnet.weights.presets import PRESETS, create_model, get_config
from isnet.weights.released import WEIGHTS, from_released_config, load_released_checkpoint
from isnet.model.segmentor import Segmentor, build_model
from isnet.inference.predictor import Predictor
from isnet.deploy.predictor import load_predictor

try:
    __version__ = _version("isnet")
except PackageNotFoundError:  # imported from a source tree that was not installed
    __version__ = "0+unknown"

__all__ = [
    "__version__",
    "AuxConfig",
    "BackboneConfig",
    "DATASETS",
    "DatasetInfo",
    "ISNetHeadConfig",
    "InferenceConfig",
    "ModelConfig",
    "PRESETS",
    "Predictor",
    "WEIGHTS",
    "Segmentor",
    "build_model",
    "create_model",
    "from_released_config",
    "get_config",
    "load_model",
    "load_predictor",
    "load_released_checkpoint",
    "predict",
    "predict_labels",
    "save_model",
]
