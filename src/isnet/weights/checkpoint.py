"""Reading PyTorch checkpoints safely, saving / loading our own (safetensors), and the
crash-safe files of a training run. (The authors' layout is mapped in :mod:`isnet.weights.released`.)

Every loader is strict: each key of the file maps to exactly one parameter or buffer of the
model, shapes match, and nothing is left over on either side. Errors name the file.
PyTorch files are read with ``weights_only=True``, so a pickle that would run code is refused
unexecuted. A safetensors file is checked against the model it describes before anything is
allocated: its header's dtypes, shapes and byte ranges, and the configuration in its metadata.
A file of another kind (a training checkpoint, a released ``.pth``, an ONNX model, a folder)
is named as what it is (:mod:`isnet.file_kinds`). Files are written with
``write_atomically`` (:mod:`isnet.utils.atomic_files`): complete or absent, whenever the process is
killed, and a full disk or a refused write is reported with the path and the cause;
training checkpoints also carry a sha256 checksum, verified on load.
"""

from __future__ import annotations

import dataclasses
import math
import pickle
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from isnet.utils.atomic_files import write_atomically
from isnet.weights.checksums import verify_checksum
from isnet.weights.inspection import (
    FILE_FORMAT,
    FORMAT_METADATA_KEY,
    FileKind,
    TensorEntry,
    file_kind,
    not_the_expected_kind,
    read_safetensors_header,
    require_file,
    require_intact_zip,
    require_known_format,
)
from isnet.model.config import ModelConfig
from isnet.data.info import DatasetInfo
from isnet.utils.errors import CheckpointError
from isnet.utils.seal import PLACEHOLDER, SEAL_KEY, seal


def safe_torch_load(path: Path) -> Any:
    """``torch.load`` with ``weights_only=True``: tensors and plain containers, never code.

    Only a PyTorch zip archive whose members pass their CRC-32, or a legacy pickle, reaches
    ``torch.load``; anything it raises on such a file is a :class:`CheckpointError` naming it.
    """
    require_file(path, "a PyTorch checkpoint file")
    kind = file_kind(path)
    if kind not in (FileKind.DAMAGED_ZIP, FileKind.TRAINING_CHECKPOINT, FileKind.PYTORCH, FileKind.ZIP, FileKind.PICKLE):
        raise CheckpointError(not_the_expected_kind(path, "a PyTorch checkpoint (.pth/.pt)"))
    if kind is not FileKind.PICKLE:
        require_intact_zip(path, "PyTorch file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
        if "weights only load failed" not in lines[0].lower():
            raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): {lines[0]}") from None
        why = next((line for line in lines if "WeightsUnpickler error" in line), lines[-1])
        raise CheckpointError(
            f"{path}: refused to load: the file holds objects other than tensors and plain "
            f"containers, which could execute code when unpickled ({why})"
        ) from None
    except Exception as error:  # the unpickler of a malformed file raises many types (IndexError, KeyError, ...)
        words = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): {words}") from None


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


def _dtype_kind(dtype: torch.dtype) -> str:
    if dtype.is_floating_point:
        return "floating-point"
    return "boolean" if dtype == torch.bool else "integer"


def mismatches(
    expected: Mapping[str, tuple[tuple[int, ...], torch.dtype]], found: Mapping[str, tuple[tuple[int, ...], torch.dtype]]
) -> list[str]:
    """What differs between a model's tensors and a file's, each given as ``{key: (shape, dtype)}``.

    Lines of missing, unexpected and misshapen keys, and of keys whose kind of number differs
    (integer data declared for a floating-point parameter: the bits would be read as other
    values). Floating-point widths may differ: loading converts them.
    """
    missing = [key for key in expected if key not in found]
    unexpected = [key for key in found if key not in expected]
    misshapen = [
        f"{key}: file {tuple(found[key][0])} vs model {tuple(expected[key][0])}"
        for key in expected
        if key in found and tuple(found[key][0]) != tuple(expected[key][0])
    ]
    mistyped = [
        f"{key}: file {found[key][1]} vs model {expected[key][1]}"
        for key in expected
        if key in found and _dtype_kind(found[key][1]) != _dtype_kind(expected[key][1])
    ]
    problems = []
    for title, keys in (("missing", missing), ("unexpected", unexpected), ("misshapen", misshapen),
                        ("mistyped", mistyped)):
        if keys:
            shown = "\n    ".join(keys[:20]) + (f"\n    ... and {len(keys) - 20} more" if len(keys) > 20 else "")
            problems.append(f"  {len(keys)} {title} key(s):\n    {shown}")
    return problems


def _specs(tensors: Mapping[str, Tensor]) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    return {key: (tuple(value.shape), value.dtype) for key, value in tensors.items()}


def load_state_dict_strict(model: nn.Module, state_dict: Mapping[str, Tensor], *, source: str | Path) -> None:
    """Copy ``state_dict`` into ``model`` after checking keys, shapes and kinds of number both ways.

    Raises a :class:`CheckpointError` naming ``source`` and listing the missing, unexpected,
    misshapen and mistyped keys.
    """
    if not isinstance(state_dict, Mapping) or not all(isinstance(value, Tensor) for value in state_dict.values()):
        raise CheckpointError(f"{source}: the weights are not a mapping of names to tensors")
    problems = mismatches(_specs(model.state_dict()), _specs(state_dict))
    if problems:
        raise CheckpointError(f"{source}: checkpoint does not match the model\n" + "\n".join(problems))
    model.load_state_dict(state_dict, strict=True)


def nonfinite_entries(tensors: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Names of the floating-point tensors holding NaN or infinity, at any depth of ``tensors``."""
    found = []
    for key, value in tensors.items():
        name = f"{prefix}{key}"
        if isinstance(value, Tensor):
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                found.append(name)
        elif isinstance(value, Mapping):
            found += nonfinite_entries(value, f"{name}.")
        elif isinstance(value, (list, tuple)):
            found += nonfinite_entries(dict(enumerate(value)), f"{name}.")
    return found


def describe_nonfinite(names: list[str]) -> str:
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return f"non-finite values (NaN or infinity) in {len(names)} tensor(s): {shown}"


CONFIG_METADATA_KEY = "isnet_config"
DATASET_METADATA_KEY = "isnet_dataset"


def model_metadata(model: nn.Module) -> dict[str, str]:
    """What every file we write carries about a model: the file format's version, its configuration
    and, when known, its dataset record (classes, palette, ignore index, normalisation, test protocol)."""
    metadata = {FORMAT_METADATA_KEY: str(FILE_FORMAT), CONFIG_METADATA_KEY: model.config.to_json()}
    if getattr(model, "dataset", None) is not None:
        metadata[DATASET_METADATA_KEY] = model.dataset.to_json()
    return metadata


def dataset_from_metadata(metadata: Mapping[str, str], num_classes: int, *, source: str | Path) -> DatasetInfo | None:
    """The dataset record a file carries (None if it has none); refused if it does not fit the model."""
    if DATASET_METADATA_KEY not in metadata:
        return None
    try:
        dataset = DatasetInfo.from_json(metadata[DATASET_METADATA_KEY])
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise CheckpointError(f"{source}: unusable dataset record in the metadata: {error}") from None
    if dataset.num_classes != num_classes:
        raise CheckpointError(
            f"{source}: its dataset record names {dataset.num_classes} classes but the model has {num_classes}"
        )
    return dataset


def save_model(model: nn.Module, path: str | Path, *, extra_metadata: Mapping[str, str] | None = None) -> Path:
    """Save weights as safetensors, carrying the model's configuration and dataset record in the header,
    sealed with the file's sha256 (:mod:`isnet.utils.seal`)."""
    path = Path(path)
    require_finite(model.state_dict(), f"{path}: not saved")
    tensors, storages = {}, set()
    for key, value in model.state_dict().items():
        value = value.detach().contiguous()
        storage = value.untyped_storage().data_ptr()
        if storage in storages:  # a tied module (ANN's shared key/query projection): one copy per key
            value = value.clone()
        storages.add(storage)
        tensors[key] = value
    return write_safetensors(path, tensors, {**model_metadata(model), **(extra_metadata or {})})


def write_safetensors(path: str | Path, tensors: Mapping[str, Tensor], metadata: Mapping[str, str]) -> Path:
    """``tensors`` and ``metadata`` as one of our safetensors files: written atomically, then sealed
    (:mod:`isnet.utils.seal`), so that a flipped bit anywhere in the file is found when it is loaded."""
    from safetensors.torch import save_file

    metadata = {**metadata, SEAL_KEY: PLACEHOLDER}

    def write(temporary: Path) -> None:
        save_file(dict(tensors), str(temporary), metadata=metadata)
        seal(temporary)

    return write_atomically(Path(path), write)


def require_finite(tensors: Mapping[str, Any], context: str) -> None:
    """Raise a ``FloatingPointError`` (message: ``context`` and the tensors) if any value is NaN or infinite."""
    bad = nonfinite_entries(tensors)
    if bad:
        raise FloatingPointError(f"{context}: {describe_nonfinite(bad)}")


def read_safetensors(path: str | Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Read a safetensors file: tensors and header metadata, with errors naming the file.

    The header is checked (:func:`read_safetensors_header`) before any tensor is read.
    """
    path = Path(path)
    entries, metadata = read_safetensors_header(path)
    return _read_tensors(path, entries), metadata


def _read_tensors(path: Path, names: Iterable[str]) -> dict[str, Tensor]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return {name: handle.get_tensor(name) for name in names}
    except (SafetensorError, OSError, RuntimeError) as error:
        raise CheckpointError(f"{path}: corrupt safetensors file: {error}") from None


# Bounds on the model configuration a file's metadata describes, checked before anything is built.
MAX_NUM_CLASSES = 65_536
MAX_CONFIG_INTEGER = 65_536  # channels, depths, dilations, pooling bins
MAX_CONFIG_SEQUENCE = 64


def config_bounds_problems(config: Any, prefix: str = "") -> list[str]:
    """Values of a (nested) model configuration outside sane bounds: ``["num_classes: 10**12 is outside 1..65536"]``.

    Integers (classes, channels, depths, dilations, bins) must be within 1..65 536 (1..65 536
    classes), sequences at most 64 long, numbers finite, dropouts within [0, 1].
    """
    problems = []
    for item in dataclasses.fields(config):
        value, name = getattr(config, item.name), f"{prefix}{item.name}"
        if dataclasses.is_dataclass(value):
            problems += config_bounds_problems(value, f"{name}.")
            continue
        values = value if isinstance(value, tuple) else (value,)
        if len(values) > MAX_CONFIG_SEQUENCE:
            problems.append(f"{name}: {len(values)} values (at most {MAX_CONFIG_SEQUENCE})")
            continue
        limit = MAX_NUM_CLASSES if item.name == "num_classes" else MAX_CONFIG_INTEGER
        for number in values:
            if isinstance(number, bool) or not isinstance(number, (int, float)):
                continue
            if isinstance(number, int) and not 1 <= number <= limit:
                problems.append(f"{name}: {number} is outside 1..{limit}")
            elif isinstance(number, float) and not math.isfinite(number):
                problems.append(f"{name}: {number} is not finite")
            elif item.name == "dropout" and not 0 <= number <= 1:
                problems.append(f"{name}: {number} is outside [0, 1]")
    return problems


def _expected_tensors(config: ModelConfig) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """The shapes and dtypes of the model ``config`` builds, built on the meta device (nothing allocated)."""
    from isnet.model.segmentor import build_model

    with torch.device("meta"):
        return _specs(build_model(config).state_dict())


def check_model_file(path: Path, config: ModelConfig, entries: Mapping[str, TensorEntry]) -> None:
    """Raise a :class:`CheckpointError` unless the file's tensors are exactly those of ``config``'s model.

    Checked from the header and a model built on the meta device, so a file that declares
    other dtypes or shapes, or a configuration of absurd size, is refused before allocating.
    """
    problems = config_bounds_problems(config)
    if problems:
        raise CheckpointError(f"{path}: impossible model configuration in the metadata: " + "; ".join(problems))
    try:
        expected = _expected_tensors(config)
    except (ValueError, TypeError, KeyError, RuntimeError, AssertionError) as error:
        raise CheckpointError(f"{path}: the model configuration in the metadata cannot be built: {error}") from None
    problems = mismatches(expected, {name: (entry.shape, entry.dtype) for name, entry in entries.items()})
    if problems:
        raise CheckpointError(f"{path}: checkpoint does not match the model its metadata describes\n" + "\n".join(problems))


def load_model(path: str | Path) -> nn.Module:
    """Build the model described by one of our safetensors checkpoints and load its weights.

    The header and the configuration are checked before the model is built (:func:`check_model_file`).
    """
    from isnet.model.segmentor import build_model

    entries, metadata = read_safetensors_header(path)
    if CONFIG_METADATA_KEY not in metadata:
        raise CheckpointError(f"{path}: safetensors file without an '{CONFIG_METADATA_KEY}' entry in its metadata")
    try:
        config = ModelConfig.from_json(metadata[CONFIG_METADATA_KEY])
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise CheckpointError(f"{path}: unreadable model configuration in the metadata: {error}") from None
    check_model_file(Path(path), config, entries)
    tensors = _read_tensors(Path(path), entries)
    bad = nonfinite_entries(tensors)
    if bad:
        raise CheckpointError(f"{path}: {describe_nonfinite(bad)}; the model would predict nothing useful")
    model = build_model(config)
    load_state_dict_strict(model, tensors, source=path)
    model.dataset = dataset_from_metadata(metadata, config.num_classes, source=path)
    return model


# ----------------------------------------------------------------------------- training checkpoints

TRAINING_CHECKPOINT_KEYS = ("model", "optimizer", "iteration", "rng", "config")


def save_training_checkpoint(path: Path, state: Mapping[str, Any]) -> Path:
    """Write a training checkpoint atomically, with its sha256 sidecar and its format version."""
    def write(temporary: Path) -> None:
        with open(temporary, "wb") as handle:  # a Python file, so that a failed write keeps its OSError
            torch.save({FORMAT_METADATA_KEY: str(FILE_FORMAT), **state}, handle)

    return write_atomically(path, write, checksum=True)


def load_training_checkpoint(path: Path) -> dict[str, Any]:
    """Read a training checkpoint: checksum verified, ``weights_only=True``, the expected entries.

    Raises a :class:`CheckpointError` naming the file and the problem.
    """
    verify_checksum(path)
    state = safe_torch_load(path)
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: not a training checkpoint (holds a {type(state).__name__})")
    require_known_format(state, path)  # one written before format versions has none: version 0
    missing = [key for key in TRAINING_CHECKPOINT_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"{path}: not a training checkpoint of isnet.training.loop: no {', '.join(missing)} entry")
    malformed = [key for key, fits in (
        ("model", isinstance(state["model"], Mapping) and all(isinstance(v, Tensor) for v in state["model"].values())),
        ("optimizer", isinstance(state["optimizer"], Mapping)),
        ("iteration", isinstance(state["iteration"], int) and not isinstance(state["iteration"], bool) and state["iteration"] >= 0),
        ("rng", isinstance(state["rng"], (list, tuple)) and len(state["rng"]) > 0
         and all(isinstance(v, Tensor) and v.dtype == torch.uint8 for v in state["rng"])),
        ("config", isinstance(state["config"], str)),
    ) if not fits]
    if malformed:
        raise CheckpointError(f"{path}: not a training checkpoint of isnet.training.loop: malformed {', '.join(malformed)} entry")
    return dict(state)
