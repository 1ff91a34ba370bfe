"""Generated scenes and a tiny model whose labels follow them, for the large-image, video, calibration and Ray tests.

A randomly initialised model with BatchNorm's default statistics (mean 0, variance 1) gives
almost the same logits everywhere (one class for the whole image), which would make "labels
equal" tests pass trivially; :func:`responsive_checkpoint` measures the BatchNorm statistics
on generated scenes first, so its labels change with the image.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from serve_helpers import RECORD, TINY

from isnet.data.image import to_tensor
from isnet.model.segmentor import build_model
from isnet.weights.checkpoint import save_model


def scene(height: int, width: int, seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8: smooth colour blobs plus noise."""
    generator = np.random.RandomState(seed)
    coarse = generator.randint(0, 255, (height // 64 + 2, width // 64 + 2, 3), np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BILINEAR))
    noise = generator.randint(-20, 21, (height, width, 3))
    return np.clip(smooth.astype(int) + noise, 0, 255).astype(np.uint8)


def responsive_model(seed: int = 0) -> torch.nn.Module:
    """The tiny model of serve_helpers with BatchNorm statistics measured on four generated scenes."""
    torch.manual_seed(seed)
    model = build_model(TINY)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = None  # the plain average of what it sees
    model.train()
    with torch.no_grad():
        model(torch.stack([to_tensor(scene(256, 256, seed=s)) for s in range(4)]))
    model.dataset = RECORD
    return model.eval()


def responsive_checkpoint(path: Path, seed: int = 0, *, mean_std: tuple | None = None) -> Path:
    """The model saved; with ``mean_std``, its record normalises images with that mean and std instead of ImageNet's."""
    model = responsive_model(seed)
    if mean_std is not None:
        model.dataset = replace(model.dataset, mean=mean_std[0], std=mean_std[1])
    return save_model(model, path)
