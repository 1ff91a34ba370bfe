"""Loading the authors' released checkpoints and saving / loading our own (safetensors).

Every loader is strict: each key of the file maps to exactly one parameter or buffer of the
model, shapes match, and nothing is left over on either side. Errors name the file.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from .config import ModelConfig

# Released names (sssegmentation's ISNet) → ours, by prefix. The first matching prefix wins.
RELEASED_PREFIXES: tuple[tuple[str, str], ...] = (
    ("backbone_net.", "backbone."),
    ("bottleneck.", "head.bottleneck."),
    ("ilc_net.correlate_net.", "head.image_context.attention."),
    ("ilc_net.bottleneck.", "head.image_context.fuse."),
    ("slc_net.correlate_net.", "head.semantic_context.attention."),
    ("slc_net.bottleneck.", "head.semantic_context.fuse."),
    ("decoder_stage1.", "head.classifier_stage1."),
    ("shortcut.", "head.decoder.shortcut."),
    ("decoder_stage2.", "head.decoder.classifier."),
    ("auxiliary_decoder.", "aux_head."),
)


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: unreadable, unsafe, or not matching the model."""


def released_to_ours(key: str) -> str:
    """Our name for a key of a released ISNet checkpoint (unknown prefixes are returned as is)."""
    key = key.removeprefix("module.")  # saved from a DistributedDataParallel wrapper
    for released, ours in RELEASED_PREFIXES:
        if key.startswith(released):
            return ours + key[len(released) :]
    return key


def read_torch_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """Read a ``.pth`` file safely (``weights_only=True``) and return its state dict.

    Accepts a bare state dict or one stored under ``model`` / ``state_dict``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path}: refused to load: the file holds objects other than tensors and plain "
            f"containers, which could execute code when unpickled ({error})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as error:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): {error}") from None
    if isinstance(content, Mapping):
        for wrapper in ("model", "state_dict"):
            if isinstance(content.get(wrapper), Mapping):
                content = content[wrapper]
                break
    if not isinstance(content, Mapping) or not all(isinstance(v, Tensor) for v in content.values()):
        raise CheckpointError(f"{path}: no state dict found (expected tensors, or a dict with 'model' or 'state_dict')")
    return dict(content)


def load_state_dict_strict(model: nn.Module, state_dict: Mapping[str, Tensor], *, source: str | Path) -> None:
    """Copy ``state_dict`` into ``model`` after checking keys and shapes both ways.

    Raises a :class:`CheckpointError` naming ``source`` and listing the missing, unexpected
    and misshapen keys.
    """
    expected = model.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    misshapen = [
        f"{key}: file {tuple(state_dict[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in expected
        if key in state_dict and state_dict[key].shape != expected[key].shape
    ]
    if missing or unexpected or misshapen:
        problems = []
        for title, keys in (("missing", missing), ("unexpected", unexpected), ("misshapen", misshapen)):
            if keys:
                shown = "\n    ".join(keys[:20]) + (f"\n    ... and {len(keys) - 20} more" if len(keys) > 20 else "")
                problems.append(f"  {len(keys)} {title} key(s):\n    {shown}")
        raise CheckpointError(f"{source}: checkpoint does not match the model\n" + "\n".join(problems))
    model.load_state_dict(state_dict, strict=True)


def load_released_checkpoint(model: nn.Module, path: str | Path) -> nn.Module:
    """Load one of the authors' released ISNet checkpoints (sssegmentation layout) into ``model``."""
    state_dict = {released_to_ours(key): value for key, value in read_torch_checkpoint(path).items()}
    load_state_dict_strict(model, state_dict, source=path)
    return model


CONFIG_METADATA_KEY = "isnet_config"


def save_model(model: nn.Module, path: str | Path, *, extra_metadata: Mapping[str, str] | None = None) -> Path:
    """Save weights as safetensors, carrying the model's configuration in the header."""
    from safetensors.torch import save_file

    path = Path(path)
    metadata = {CONFIG_METADATA_KEY: model.config.to_json(), **(extra_metadata or {})}
    tensors = {key: value.detach().contiguous() for key, value in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    save_file(tensors, str(temporary), metadata=metadata)
    temporary.replace(path)
    return path


def read_safetensors(path: str | Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Read a safetensors file: tensors and header metadata, with errors naming the file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with open(path, "rb") as handle:
            header_size = int.from_bytes(handle.read(8), "little")
            if header_size <= 0 or header_size > path.stat().st_size - 8:
                raise CheckpointError(f"{path}: not a safetensors file (header size {header_size} is impossible)")
            metadata = json.loads(handle.read(header_size)).get("__metadata__") or {}
        tensors = load_file(str(path))
    except (SafetensorError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: corrupt safetensors file: {error}") from None
    return tensors, metadata


def load_model(path: str | Path) -> nn.Module:
    """Build the model described by one of our safetensors checkpoints and load its weights."""
    from .segmentor import build_model

    tensors, metadata = read_safetensors(path)
    if CONFIG_METADATA_KEY not in metadata:
        raise CheckpointError(f"{path}: safetensors file without an '{CONFIG_METADATA_KEY}' entry in its metadata")
    try:
        config = ModelConfig.from_json(metadata[CONFIG_METADATA_KEY])
    except (ValueError, TypeError, KeyError) as error:
        raise CheckpointError(f"{path}: unreadable model configuration in the metadata: {error}") from None
    model = build_model(config)
    load_state_dict_strict(model, tensors, source=path)
    return model
