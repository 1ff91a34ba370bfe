"""Named model configurations: the 12 released ISNets, ISNet‡ and the Table 1 ablations.

A preset is a plain function returning a :class:`ModelConfig`; :func:`create_model` builds
one by name, optionally loading weights from a local file.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from torch import nn

from .config import AuxConfig, BackboneConfig, HeadConfig, ModelConfig

NUM_CLASSES = {"ade20k": 150, "cityscapes": 19, "cocostuff10k": 182, "lip": 20, "camvid": 11}

BACKBONES = {
    "resnet50": BackboneConfig(type="resnet", depth=50),
    "resnet101": BackboneConfig(type="resnet", depth=101),
    "resnest101": BackboneConfig(type="resnest", depth=101, stem_channels=128),
}

# Where the authors published the 12 checkpoints (sssegmentation model zoo). Fetching needs
# a network; :func:`create_model` with ``weights=<local path>`` is the tested way to load.
RELEASED_URL = "https://github.com/SegmentationBLWX/modelstore/releases/download/ssseg_isnet/{name}.pth"


def isnet(num_classes: int, backbone: str = "resnet50", *, shortcut: bool = False, **head: Any) -> ModelConfig:
    """ISNet (ILCM + SLCM) on a dilated backbone at output stride 8."""
    return ModelConfig(
        num_classes=num_classes,
        backbone=BACKBONES[backbone],
        head=HeadConfig(shortcut=shortcut, **head),
        aux=AuxConfig(),
    )


PRESETS: dict[str, Callable[[], ModelConfig]] = {}

for _backbone in BACKBONES:
    for _dataset in ("ade20k", "cityscapes", "cocostuff10k", "lip"):
        # The released LIP models carry the layer1 shortcut; the others do not.
        _shortcut = _dataset == "lip"
        PRESETS[f"isnet_{_backbone}os8_{_dataset}"] = partial(
            isnet, NUM_CLASSES[_dataset], _backbone, shortcut=_shortcut
        )
        if _dataset in ("cityscapes", "lip"):
            # ISNet‡: ASPP as the image-level module (the paper's best LIP and Cityscapes models).
            PRESETS[f"isnet_dagger_{_backbone}os8_{_dataset}"] = partial(
                isnet, NUM_CLASSES[_dataset], _backbone, shortcut=_shortcut, image_context="aspp"
            )

# Table 1 ablations (ADE20K, ResNet-50-D8).
ABLATIONS = {
    "baseline": dict(image_context="none", semantic_context=False),
    "ilcm": dict(image_context="ilcm", semantic_context=False),
    "slcm": dict(image_context="none", semantic_context=True),
    "isnet": dict(image_context="ilcm", semantic_context=True),
}
for _name, _head in ABLATIONS.items():
    PRESETS[f"ablation_{_name}_resnet50os8_ade20k"] = partial(isnet, 150, "resnet50", **_head)

# Table 3 peers: the same R50-D8 segmentor with another context head (ADE20K).
PEERS = ("ppm", "aspp", "ocr", "ccnet", "danet", "ann", "nonlocal", "dnl", "apcnet")
for _peer in PEERS:
    PRESETS[f"{_peer}_resnet50os8_ade20k"] = partial(isnet, 150, "resnet50", type=_peer)

RELEASED = tuple(name for name in PRESETS if name.startswith("isnet_") and "dagger" not in name)


def download_released(name: str, directory: str | Path = "~/.cache/isnet") -> Path:
    """Fetch a released checkpoint once (needs a network) and return its local path.

    Pass the path to :func:`create_model` (``weights=``); loading reads it with
    ``weights_only=True`` and checks every key.
    """
    if name not in RELEASED:
        raise KeyError(f"{name!r} is not a released model; released: {', '.join(RELEASED)}")
    path = Path(directory).expanduser() / f"{name}.pth"
    if not path.exists():
        import torch.hub

        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(RELEASED_URL.format(name=name), str(path), progress=True)
    return path


def get_config(name: str, **overrides: Any) -> ModelConfig:
    """The configuration of a preset; ``overrides`` replace top-level fields (e.g. num_classes)."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; available: {', '.join(sorted(PRESETS))}")
    return PRESETS[name]().replace(**overrides) if overrides else PRESETS[name]()


def create_model(
    name: str,
    *,
    weights: str | Path | None = None,
    weights_backbone: str | Path | None = None,
    **overrides: Any,
) -> nn.Module:
    """Build a preset by name.

    ``weights``: a released ``.pth`` or one of our ``.safetensors`` for the whole model;
    ``weights_backbone``: an ImageNet checkpoint for the backbone (open-mmlab or torchvision
    layout, see :mod:`isnet.backbones.pretrained`), the start of training.
    """
    from .backbones.pretrained import load_imagenet_weights
    from .checkpoint import load_released_checkpoint, load_state_dict_strict, read_safetensors
    from .segmentor import build_model

    model = build_model(get_config(name, **overrides))
    if weights_backbone is not None:
        load_imagenet_weights(model.backbone, weights_backbone)
    if weights is not None:
        if str(weights).endswith(".safetensors"):
            tensors, _ = read_safetensors(weights)
            load_state_dict_strict(model, tensors, source=weights)
        else:
            load_released_checkpoint(model, weights)
    return model
