"""Carrying weights to a model of other inputs or other classes: input channels and classes by name.

Two adaptations of a weights file to the model it is loaded into, both applied to the file's
tensors before they are loaded, both reported in words:

- **Input channels.** A model for C ≠ 3 image channels (RGB + near infrared, a 16-bit stack)
  starts from RGB weights by *inflating* the first convolution: its 3 input channels are
  repeated cyclically over the C channels and scaled by 3/C, so that the activations keep their
  scale when every channel has the statistics of a normalised RGB channel (for C < 3 the RGB
  channels are summed onto the C, which for one grey channel is exactly the RGB network on a
  grey image).
- **Classes by name.** Fine-tuning to another class list keeps the classifier rows (weights and
  biases of every class-indexed convolution: the stage-1, stage-2 and auxiliary classifiers)
  of the classes both lists name, and leaves the others freshly initialised. Names match after
  folding case, ``_`` and ``-`` into spaces; a name of several synonyms (``"road, route"``)
  matches any of them; and :data:`SYNONYMS` equates a few names that datasets spell
  differently for the same thing (CamVid's "Pedestrian" is ADE20K's "person").
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from isnet.model.config import ModelConfig
from isnet.model.layers import Classifier, ConvClassifier
from isnet.weights.checkpoint import CONFIG_METADATA_KEY, dataset_from_metadata, read_safetensors_header
from isnet.weights.released import WEIGHTS

# Names that datasets use for the same class (normalised spelling → the spelling it equals).
SYNONYMS = {"pedestrian": "person", "pavement": "sidewalk"}


def inflate_input_conv(weight: Tensor, in_channels: int) -> Tensor:
    """A first convolution's weight ``(out, 3, k, k)`` for ``in_channels`` input channels.

    C ≥ 3: channel c takes RGB channel ``c mod 3``, all scaled by 3/C; C < 3: the RGB channels
    are summed onto ``s mod C``. Either way a network fed C copies of one normalised channel
    computes what the RGB network computes on three (exactly when C is a multiple of 3 or < 3).
    """
    source = weight.shape[1]
    if in_channels >= source:
        index = torch.arange(in_channels) % source
        return weight[:, index] * (source / in_channels)
    folded = weight.new_zeros(weight.shape[0], in_channels, *weight.shape[2:])
    for channel in range(source):
        folded[:, channel % in_channels] += weight[:, channel]
    return folded


def inflate_inputs(model: nn.Module, state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """``state`` with every convolution weight that differs from the model's only in its input
    channels (3 in the file, C in the model: the stem's first convolution) inflated; and the lines saying so."""
    expected = model.state_dict()
    adapted, notes = dict(state), []
    for key, value in state.items():
        target = expected.get(key)
        if (target is None or value.ndim != 4 or value.shape == target.shape or value.shape[1] != 3
                or value.shape[0] != target.shape[0] or value.shape[2:] != target.shape[2:]):
            continue
        adapted[key] = inflate_input_conv(value, target.shape[1]).to(value.dtype)
        notes.append(f"{key}: inflated from 3 to {target.shape[1]} input channels (repeated, scaled by 3/C)")
    return adapted, notes


def class_indexed_keys(model: nn.Module) -> list[str]:
    """The tensors whose first dimension is the class: weight and bias of every classifier convolution."""
    keys = []
    for name, module in model.named_modules():
        if isinstance(module, Classifier):
            conv = f"{name}.1"
        elif isinstance(module, ConvClassifier):
            conv = f"{name}.4"
        else:
            continue
        keys += [f"{conv}.weight", f"{conv}.bias"]
    return keys


def normalised_names(name: str) -> set[str]:
    """The spellings a class name matches: ``"Road, route"`` → ``{"road", "route"}``; ``"traffic_light"`` → ``{"traffic light"}``."""
    names = set()
    for part in re.split(r"[,;]", name):
        part = " ".join(part.replace("_", " ").replace("-", " ").lower().split())
        if part:
            names |= {part, SYNONYMS.get(part, part)}
    return names


def match_classes(source: Sequence[str], target: Sequence[str]) -> dict[int, int]:
    """Target class index → the source class of the same name (the first, if several match)."""
    spellings = [normalised_names(name) for name in source]
    matches = {}
    for index, name in enumerate(target):
        wanted = normalised_names(name)
        found = next((k for k, names in enumerate(spellings) if names & wanted), None)
        if found is not None:
            matches[index] = found
    return matches


@dataclass
class ClassTransfer:
    """Which classes kept their classifier rows from the source weights (in which classifier
    tensors), and which were re-initialised."""

    kept: list[tuple[str, str]] = field(default_factory=list)  # (target name, source name)
    reinitialised: list[str] = field(default_factory=list)
    tensors: list[str] = field(default_factory=list)  # the classifier tensors whose rows were carried over
    whole: list[str] = field(default_factory=list)  # classifier tensors of another shape: every row re-initialised

    def summary(self) -> str:
        if not self.tensors:
            return (f"  no classifier row kept: the file's classifiers do not fit the model's "
                    f"({len(self.whole)} classifier tensor(s) re-initialised whole)")
        kept = ", ".join(target if target == source else f"{target} ← {source}" for target, source in self.kept)
        where = (f", in {len(self.tensors)} of {len(self.tensors) + len(self.whole)} classifier tensors (kept in "
                 f"{', '.join(self.tensors)}; re-initialised whole, of another shape: {', '.join(self.whole)})"
                 if self.whole else "")
        lines = [f"  classes kept from the source weights ({len(self.kept)}){where}: {kept or 'none'}",
                 f"  classes re-initialised ({len(self.reinitialised)}): {', '.join(self.reinitialised) or 'none'}"]
        return "\n".join(lines)


def transfer_classes(
    model: nn.Module, state: Mapping[str, Tensor], source: Sequence[str], target: Sequence[str]
) -> tuple[dict[str, Tensor], ClassTransfer]:
    """``state`` with its class-indexed tensors rebuilt in ``target``'s class order.

    Row k of each classifier is the source row of the class of the same name, or the model's
    own freshly initialised row where the source has no such class. A classifier whose weight or
    bias does not fit is left out of the result whole (both re-initialised: a bias row without its
    weights keeps no class). Other tensors are unchanged.
    """
    matches = match_classes(source, target)
    expected = model.state_dict()
    adapted = dict(state)
    transfer = ClassTransfer()
    keys = class_indexed_keys(model)
    for pair in zip(keys[0::2], keys[1::2]):  # (weight, bias) of one classifier convolution
        if not all(key in state and state[key].shape[0] == len(source)
                   and state[key].shape[1:] == expected[key].shape[1:] for key in pair):
            transfer.whole += pair
            for key in pair:
                adapted.pop(key, None)
            continue
        for key in pair:
            rows = expected[key].detach().clone()
            for new, old in matches.items():
                rows[new] = state[key][old].to(rows.dtype)
            adapted[key] = rows
        transfer.tensors += pair
    carried = bool(transfer.tensors)  # rows are kept only where a classifier tensor fitted
    transfer.kept = [(target[new], source[old]) for new, old in sorted(matches.items())] if carried else []
    transfer.reinitialised = [name for index, name in enumerate(target) if not carried or index not in matches]
    return adapted, transfer


def describe_architecture(config: ModelConfig) -> str:
    """``"resnet-50 backbone (64 base channels), isnet head of 512 channels, 150 classes"``."""
    backbone, head = config.backbone, config.head
    return (f"{backbone.type}-{backbone.depth} backbone ({backbone.base_channels} base channels), {head.kind} head "
            f"of {head.channels} channels, {config.num_classes} classes")


def weights_architecture(path: Path) -> str | None:
    """The architecture a weights file was made for, in words: from our safetensors' configuration,
    or the preset of released weights; None when the file does not say."""
    if path.suffix == ".safetensors":
        try:
            return describe_architecture(ModelConfig.from_json(read_safetensors_header(path)[1][CONFIG_METADATA_KEY]))
        except (KeyError, ValueError, TypeError):
            return None
    release = next((release for release in WEIGHTS.values() if path.name == release.file_name), None)
    return f"the released {release.preset} ({release.backbone})" if release is not None else None


FOREIGN_SHOWN = 5  # mismatched tensors named in a refusal


def foreign_weights_problem(path: Path, model: nn.Module, state: Mapping[str, Tensor], fitting: int) -> str | None:
    """Why ``path`` is not a starting point for ``model`` when most of the model's tensors (``fitting``
    of them fit) would be re-initialised: counts, the first mismatched keys with their shapes, and
    both architectures; None when most fit."""
    expected = model.state_dict()
    if fitting * 2 > len(expected):
        return None
    mismatched = [f"{key} (file {tuple(state[key].shape) if key in state else 'none'}, model {tuple(value.shape)})"
                  for key, value in expected.items() if key not in state or state[key].shape != value.shape]
    source = weights_architecture(path) or "an architecture the file does not name"
    config = getattr(model, "config", None)
    target = describe_architecture(config) if isinstance(config, ModelConfig) else type(model).__name__
    return (f"{path}: only {fitting} of the model's {len(expected)} tensors fit these weights; "
            f"{len(expected) - fitting} would be re-initialised, e.g. {'; '.join(mismatched[:FOREIGN_SHOWN])}. "
            f"The file is for {source}; the model is {target}. Start from weights of the same backbone and head, "
            "or force a partial start (isnet train --init-from-partial; init_from_partial=True)")


def weights_classes(path: Path, metadata: Mapping[str, str] | None = None) -> tuple[str, ...] | None:
    """The class names of a weights file: the dataset record of our safetensors files (from ``metadata``
    when it was read already), or the dataset of released weights (known by their file name); None
    when the file does not say."""
    if path.suffix == ".safetensors":
        if metadata is None:
            _, metadata = read_safetensors_header(path)
        try:
            num_classes = ModelConfig.from_json(metadata[CONFIG_METADATA_KEY]).num_classes
            record = dataset_from_metadata(metadata, num_classes, source=path)
        except (KeyError, ValueError, TypeError):
            return None
        return record.classes if record is not None else None
    for release in WEIGHTS.values():
        if path.name == release.file_name:
            return release.dataset.classes
    return None
