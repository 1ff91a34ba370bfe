"""Reading PyTorch checkpoints safely, saving / loading our own (safetensors), and the
crash-safe files of a training run. (The authors' layout is mapped in :mod:`isnet.released`.)

Every loader is strict: each key of the file maps to exactly one parameter or buffer of the
model, shapes match, and nothing is left over on either side. Errors name the file.
PyTorch files are read with ``weights_only=True``, so a pickle that would run code is refused
unexecuted. Files are written with ``write_atomically``: complete or absent, whenever the
process is killed; training checkpoints also carry a sha256 checksum, verified on load.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .config import ModelConfig
from .data.info import DatasetInfo

class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: unreadable, unsafe, or not matching the model."""


def safe_torch_load(path: Path) -> Any:
    """``torch.load`` with ``weights_only=True``: tensors and plain containers, never code."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path}: refused to load: the file holds objects other than tensors and plain "
            f"containers, which could execute code when unpickled ({error})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as error:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): {error}") from None


def read_torch_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """Read a ``.pth`` file safely (``weights_only=True``) and return its state dict.

    Accepts a bare state dict or one stored under ``model`` / ``state_dict``.
    """
    path = Path(path)
    content = safe_torch_load(path)
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


CONFIG_METADATA_KEY = "isnet_config"
DATASET_METADATA_KEY = "isnet_dataset"


def model_metadata(model: nn.Module) -> dict[str, str]:
    """What every file we write carries about a model: its configuration and, when known, its
    dataset record (classes, palette, ignore index, normalisation, test protocol)."""
    metadata = {CONFIG_METADATA_KEY: model.config.to_json()}
    if getattr(model, "dataset", None) is not None:
        metadata[DATASET_METADATA_KEY] = model.dataset.to_json()
    return metadata


def dataset_from_metadata(metadata: Mapping[str, str], num_classes: int, *, source: str | Path) -> DatasetInfo | None:
    """The dataset record a file carries (None if it has none); refused if it does not fit the model."""
    if DATASET_METADATA_KEY not in metadata:
        return None
    try:
        dataset = DatasetInfo.from_json(metadata[DATASET_METADATA_KEY])
    except (ValueError, TypeError, KeyError) as error:
        raise CheckpointError(f"{source}: unreadable dataset record in the metadata: {error}") from None
    if dataset.num_classes != num_classes:
        raise CheckpointError(
            f"{source}: its dataset record names {dataset.num_classes} classes but the model has {num_classes}"
        )
    return dataset


def save_model(model: nn.Module, path: str | Path, *, extra_metadata: Mapping[str, str] | None = None) -> Path:
    """Save weights as safetensors, carrying the model's configuration and dataset record in the header."""
    from safetensors.torch import save_file

    path = Path(path)
    metadata = {**model_metadata(model), **(extra_metadata or {})}
    tensors, storages = {}, set()
    for key, value in model.state_dict().items():
        value = value.detach().contiguous()
        storage = value.untyped_storage().data_ptr()
        if storage in storages:  # a tied module (ANN's shared key/query projection): one copy per key
            value = value.clone()
        storages.add(storage)
        tensors[key] = value
    return write_atomically(path, lambda temporary: save_file(tensors, str(temporary), metadata=metadata))


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
    model.dataset = dataset_from_metadata(metadata, config.num_classes, source=path)
    return model


# ----------------------------------------------------------------------------- crash-safe files

CHECKSUM_SUFFIX = ".sha256"
TRAINING_CHECKPOINT_KEYS = ("model", "optimizer", "iteration", "rng", "config")


def checksum_path(path: Path) -> Path:
    """The sha256 sidecar of ``path``: ``<name>.sha256``, in ``sha256sum`` format."""
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    """Flush a file's (or a folder's entries') data to the disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_atomically(path: str | Path, write: Callable[[Path], Any], *, checksum: bool = False) -> Path:
    """Write ``path`` so that it is complete or absent, whenever the process is killed.

    ``write(temporary)`` fills ``<name>.tmp`` beside ``path``; it is flushed to disk and renamed
    over ``path`` (a rename within a folder is atomic). With ``checksum`` the file's sha256 is
    written to ``<name>.sha256`` and put in place *before* the rename, so every complete file
    has its checksum; a kill in between leaves a checksum without its file, which
    ``remove_unfinished_writes`` deletes along with ``.tmp`` files.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    write(temporary)
    _fsync(temporary)
    if checksum:
        sidecar = checksum_path(path)
        sidecar_temporary = sidecar.with_name(sidecar.name + ".tmp")
        sidecar_temporary.write_text(f"{file_sha256(temporary)}  {path.name}\n")
        _fsync(sidecar_temporary)
        os.replace(sidecar_temporary, sidecar)
        _fsync(path.parent)
    os.replace(temporary, path)
    _fsync(path.parent)
    return path


def verify_checksum(path: Path) -> None:
    """Raise a :class:`CheckpointError` unless ``path`` matches the sha256 in its sidecar."""
    sidecar = checksum_path(path)
    if not sidecar.is_file():
        raise CheckpointError(
            f"{path}: no checksum file {sidecar.name} beside it, so its integrity cannot be verified "
            f"(for a checkpoint known to be good: sha256sum {path.name} > {sidecar.name})"
        )
    recorded = sidecar.read_text().split()
    if not recorded:
        raise CheckpointError(f"{path}: its checksum file {sidecar.name} is empty")
    try:
        actual = file_sha256(path)
    except OSError as error:
        raise CheckpointError(f"{path}: unreadable: {error}") from None
    if actual != recorded[0]:
        raise CheckpointError(
            f"{path}: checksum mismatch: the file's sha256 is {actual[:16]}…, {sidecar.name} records "
            f"{recorded[0][:16]}…; the file is truncated or corrupt"
        )


def remove_unfinished_writes(folder: Path) -> list[Path]:
    """Delete what a killed ``write_atomically`` left in ``folder``; return the deleted paths."""
    if not folder.is_dir():
        return []
    unfinished = sorted(folder.glob("*.tmp"))
    unfinished += [
        sidecar
        for sidecar in sorted(folder.glob("*" + CHECKSUM_SUFFIX))
        if not sidecar.with_name(sidecar.name.removesuffix(CHECKSUM_SUFFIX)).exists()
    ]
    for path in unfinished:
        path.unlink(missing_ok=True)
    return unfinished


def save_training_checkpoint(path: Path, state: Mapping[str, Any]) -> Path:
    """Write a training checkpoint atomically, with its sha256 sidecar."""
    return write_atomically(path, lambda temporary: torch.save(dict(state), temporary), checksum=True)


def load_training_checkpoint(path: Path) -> dict[str, Any]:
    """Read a training checkpoint: checksum verified, ``weights_only=True``, the expected entries.

    Raises a :class:`CheckpointError` naming the file and the problem.
    """
    verify_checksum(path)
    state = safe_torch_load(path)
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: not a training checkpoint (holds a {type(state).__name__})")
    missing = [key for key in TRAINING_CHECKPOINT_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"{path}: not a training checkpoint of isnet.train: no {', '.join(missing)} entry")
    return dict(state)
