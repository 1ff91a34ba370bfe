"""ImageNet initialisation of a backbone from a local file, in the layouts people have on disk.

- open-mmlab ResNet-V1c / ResNeSt (what the released configs start from): our own names,
  possibly under ``state_dict`` and a ``backbone.`` prefix, with a classifier to drop; their
  ResNeSt files number the stride-1 average-pool shortcut without the (identity) pool.
- torchvision's ResNet: ``conv1`` / ``bn1`` stem, which only fits a backbone built with the
  plain 7×7 stem; a deep-stem backbone gets an error saying so.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from torch import Tensor

from isnet.weights.checkpoint import CheckpointError, load_state_dict_strict, read_torch_checkpoint
from isnet.model.backbones.resnet import ResNet
from isnet.weights.transfer import inflate_inputs

CLASSIFIER_PREFIXES = ("fc.", "head.", "classifier.")
TORCHVISION_STEM = {"conv1.": "stem.0.", "bn1.": "stem.1."}


def _strip_prefixes(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    cleaned = {}
    for key, value in state_dict.items():
        for prefix in ("module.", "backbone."):
            key = key.removeprefix(prefix)
        if not key.startswith(CLASSIFIER_PREFIXES):
            cleaned[key] = value
    return cleaned


def _align_downsample(state_dict: dict[str, Tensor], expected: dict[str, Tensor]) -> dict[str, Tensor]:
    """Renumber shortcut children by order where the file omits an identity pool (or adds one)."""
    pattern = re.compile(r"^(layer\d+\.\d+\.downsample)\.(\d+)\.(.+)$")

    def children(keys) -> dict[str, list[int]]:
        found: dict[str, set[int]] = {}
        for key in keys:
            match = pattern.match(key)
            if match:
                found.setdefault(match[1], set()).add(int(match[2]))
        return {block: sorted(indices) for block, indices in found.items()}

    ours, theirs = children(expected), children(state_dict)
    renumber = {
        block: dict(zip(indices, ours[block]))
        for block, indices in theirs.items()
        if block in ours and len(indices) == len(ours[block]) and indices != ours[block]
    }
    if not renumber:
        return state_dict
    aligned = {}
    for key, value in state_dict.items():
        match = pattern.match(key)
        if match and match[1] in renumber:
            key = f"{match[1]}.{renumber[match[1]][int(match[2])]}.{match[3]}"
        aligned[key] = value
    return aligned


def load_imagenet_weights(backbone: ResNet, path: str | Path) -> ResNet:
    """Initialise ``backbone`` from an ImageNet checkpoint; every backbone tensor must be covered.

    A backbone of other than 3 input channels gets the file's first convolution inflated
    (:func:`isnet.weights.transfer.inflate_input_conv`), and says so.
    """
    state_dict = _strip_prefixes(read_torch_checkpoint(path))
    expected = backbone.state_dict()
    if "conv1.weight" in state_dict:  # torchvision's layout
        if tuple(state_dict["conv1.weight"].shape[2:]) != (7, 7) or "stem.3.weight" in expected:
            raise CheckpointError(
                f"{path}: torchvision ResNet layout (a single 7×7 'conv1' stem) does not fit this backbone, "
                "which has the deep 3×3 V1c stem of the released ISNets; build the backbone with "
                "stem='plain' to use these weights, or use an open-mmlab V1c checkpoint"
            )
        for theirs, ours in TORCHVISION_STEM.items():
            state_dict = {(ours + k[len(theirs):] if k.startswith(theirs) else k): v for k, v in state_dict.items()}
    state_dict = _align_downsample(state_dict, expected)
    state_dict, notes = inflate_inputs(backbone, state_dict)
    for note in notes:
        logging.getLogger("isnet").warning(f"{path}: {note}")
    # Older files carry no BatchNorm step counters; they are bookkeeping, not weights.
    for key, value in expected.items():
        if key.endswith("num_batches_tracked") and key not in state_dict:
            state_dict[key] = value
    load_state_dict_strict(backbone, state_dict, source=path)
    return backbone
