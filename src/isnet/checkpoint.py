"""Reading PyTorch checkpoints safely, saving / loading our own (safetensors), and the
crash-safe files of a training run. (The authors' layout is mapped in :mod:`isnet.released`.)

Every loader is strict: each key of the file maps to exactly one parameter or buffer of the
model, shapes match, and nothing is left over on either side. Errors name the file.
PyTorch files are read with ``weights_only=True``, so a pickle that would run code is refused
unexecuted. A safetensors file is checked against the model it describes before anything is
allocated: its header's dtypes, shapes and byte ranges, and the configuration in its metadata.
A file of another kind (a training checkpoint, a released ``.pth``, an ONNX model, a folder)
is named as what it is. Files are written with ``write_atomically``: complete or absent,
whenever the process is killed, and a full disk or a refused write is reported with the
path and the cause; training checkpoints also carry a sha256 checksum, verified on load.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import pickle
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .config import ModelConfig
from .errors import describe_os_error, os_error_behind

class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: unreadable, unsafe, or not matching the model."""


# ----------------------------------------------------------------------------- what a file is

SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
MAX_SAFETENSORS_HEADER = 100_000_000  # the safetensors library's own limit


def _training_checkpoint_zip(path: Path) -> bool:
    """Whether a PyTorch zip file holds an ``isnet train`` state (its pickle names optimizer and rng)."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [info for info in archive.infolist() if info.filename.endswith("/data.pkl")]
            if not pickles or pickles[0].file_size > 16_000_000:
                return False
            structure = archive.read(pickles[0])
    except (zipfile.BadZipFile, OSError, RuntimeError):
        return False
    return all(key in structure for key in (b"optimizer", b"iteration", b"rng"))


def describe_file(path: Path) -> str:
    """What kind of file ``path`` is, from its first bytes: the words for an error message.

    Told apart: a folder, a model file of ``isnet`` (safetensors), a training checkpoint of
    ``isnet train`` (``iter_*.pt``), another PyTorch file (a released ``.pth``), a
    ``torch.export`` program, an ONNX model.
    """
    if path.is_dir():
        return "a directory"
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
    except OSError as error:
        return f"unreadable ({describe_os_error(error)})"
    if not head:
        return "an empty file (0 bytes)"
    if len(head) >= 9 and 0 < int.from_bytes(head[:8], "little") <= MAX_SAFETENSORS_HEADER and head[8:9] == b"{":
        return "a safetensors file (an isnet model file)"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError):
            return "a damaged zip archive"
        if any(name.endswith("/archive_format") for name in names):
            return "a torch.export program (.pt2)"
        if _training_checkpoint_zip(path):
            return "a training checkpoint of isnet train (iter_*.pt: weights, optimizer and random state)"
        if any(name.endswith("/data.pkl") for name in names):
            return "a PyTorch file (.pth/.pt: pickled tensors, such as the authors' released weights)"
        return "a zip archive"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a pickle (a PyTorch file of the legacy format, such as the authors' released weights)"
    if head[:1] == b"\x08" and head[1] < 0x80 and head[2:3] in (b"\x12", b"\x1a", b"\x22", b"\x28", b"\x3a"):
        return "an ONNX model (written by isnet export)"
    return "not a checkpoint of any known kind"


_HOW_TO_USE = {
    "a safetensors file": "load it with load_model (isnet --checkpoint FILE)",
    "a training checkpoint": "a finished run writes its model as model.safetensors in the run folder "
                             "(isnet --checkpoint RUN/model.safetensors)",
    "a PyTorch file": "released weights are loaded with their preset (isnet --model PRESET --weights FILE)",
    "a pickle": "released weights are loaded with their preset (isnet --model PRESET --weights FILE)",
    "an ONNX model": "run it with isnet predict --runtime onnx --weights FILE",
    "a torch.export program": "load it with torch.export.load",
}


def wrong_kind(path: Path, expected: str) -> CheckpointError:
    """The error for a file that is not ``expected``: what it is, and how that kind is used."""
    if path.is_dir():
        inside = [name for name in ("model.safetensors",) if (path / name).is_file()]
        hint = f"; did you mean {path / inside[0]}?" if inside else ""
        return CheckpointError(f"{path}: is a directory, not {expected}{hint}")
    kind = describe_file(path)
    hint = next((how for prefix, how in _HOW_TO_USE.items() if kind.startswith(prefix)), None)
    return CheckpointError(f"{path}: not {expected}: it is {kind}" + (f"; {hint}" if hint else ""))


def _require_file(path: Path, expected: str) -> None:
    if path.is_dir():
        raise wrong_kind(path, expected)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if not os.access(path, os.R_OK):
        raise CheckpointError(f"{path}: permission denied (EACCES)")


def safe_torch_load(path: Path) -> Any:
    """``torch.load`` with ``weights_only=True``: tensors and plain containers, never code."""
    _require_file(path, "a PyTorch checkpoint file")
    kind = describe_file(path)
    if kind.startswith(("a safetensors file", "an ONNX model", "a torch.export program", "an empty file")):
        raise wrong_kind(path, "a PyTorch checkpoint (.pth/.pt)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights only load failed" not in str(error).lower():
            raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): {error}") from None
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


def save_model(model: nn.Module, path: str | Path, *, extra_metadata: Mapping[str, str] | None = None) -> Path:
    """Save weights as safetensors, carrying the model's configuration in the header."""
    from safetensors.torch import save_file

    path = Path(path)
    require_finite(model.state_dict(), f"{path}: not saved")
    metadata = {CONFIG_METADATA_KEY: model.config.to_json(), **(extra_metadata or {})}
    tensors, storages = {}, set()
    for key, value in model.state_dict().items():
        value = value.detach().contiguous()
        storage = value.untyped_storage().data_ptr()
        if storage in storages:  # a tied module (ANN's shared key/query projection): one copy per key
            value = value.clone()
        storages.add(storage)
        tensors[key] = value
    return write_atomically(path, lambda temporary: save_file(tensors, str(temporary), metadata=metadata))


def require_finite(tensors: Mapping[str, Any], context: str) -> None:
    """Raise a ``FloatingPointError`` (message: ``context`` and the tensors) if any value is NaN or infinite."""
    bad = nonfinite_entries(tensors)
    if bad:
        raise FloatingPointError(f"{context}: {describe_nonfinite(bad)}")


@dataclasses.dataclass(frozen=True)
class TensorEntry:
    """A tensor as a safetensors header declares it: dtype, shape and byte range in the data."""

    dtype: torch.dtype
    shape: tuple[int, ...]
    start: int
    end: int


def read_safetensors_header(path: str | Path) -> tuple[dict[str, TensorEntry], dict[str, str]]:
    """The tensors a safetensors file declares and its metadata, checked, without reading any tensor.

    Every entry must have a known dtype, a shape of non-negative integers, and a byte range
    inside the file of exactly ``numel × itemsize`` bytes. Errors name the file; a file of
    another kind (a folder, a training checkpoint, a ``.pth``, an ONNX model) is named as such.
    """
    path = Path(path)
    _require_file(path, "a safetensors model file")
    size = path.stat().st_size
    try:
        with open(path, "rb") as handle:
            header_size = int.from_bytes(handle.read(8), "little")
            if size < 9 or not 0 < header_size <= min(size - 8, MAX_SAFETENSORS_HEADER):
                raise wrong_kind(path, "a safetensors model file")
            raw = handle.read(header_size)
    except OSError as error:
        raise CheckpointError(f"{path}: unreadable: {describe_os_error(error)}") from None
    if not raw.startswith(b"{"):
        raise wrong_kind(path, "a safetensors model file")
    try:
        header = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: corrupt safetensors file: unreadable header ({error})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt safetensors file: the header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(f"{path}: corrupt safetensors file: its metadata is not a mapping of strings")
    data_size = size - 8 - header_size
    entries = {}
    for name, entry in header.items():
        entries[name] = _header_entry(path, name, entry, data_size)
    return entries, metadata


def _header_entry(path: Path, name: str, entry: Any, data_size: int) -> TensorEntry:
    """One checked entry of a safetensors header."""
    def corrupt(problem: str) -> CheckpointError:
        return CheckpointError(f"{path}: corrupt safetensors file: tensor {name!r} {problem}")

    if not isinstance(entry, dict):
        raise corrupt("has no dtype, shape and data_offsets")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in SAFETENSORS_DTYPES:
        raise corrupt(f"has an unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise corrupt(f"has an impossible shape {shape!r}")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(isinstance(n, int) for n in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= data_size):
        raise corrupt(f"has data_offsets {offsets!r} outside the file's {data_size} bytes of data")
    torch_dtype = SAFETENSORS_DTYPES[dtype]
    expected_bytes = math.prod(shape) * torch_dtype.itemsize
    if offsets[1] - offsets[0] != expected_bytes:
        raise corrupt(f"declares {dtype} {tuple(shape)} ({expected_bytes} bytes) over {offsets[1] - offsets[0]} bytes")
    return TensorEntry(torch_dtype, tuple(shape), offsets[0], offsets[1])


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
    from .segmentor import build_model

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
    from .segmentor import build_model

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

    A write that fails (a full disk, a refused permission) leaves nothing behind and raises
    an ``OSError`` naming ``path`` and the cause (``no space left on device (ENOSPC)``).
    """
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    sidecar = checksum_path(path)
    sidecar_temporary = sidecar.with_name(sidecar.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(temporary)
        _fsync(temporary)
        if checksum:
            sidecar_temporary.write_text(f"{file_sha256(temporary)}  {path.name}\n")
            _fsync(sidecar_temporary)
            os.replace(sidecar_temporary, sidecar)
            _fsync(path.parent)
        os.replace(temporary, path)
        _fsync(path.parent)
    except Exception as error:
        for leftover in (temporary, sidecar_temporary) + ((sidecar,) if checksum and not path.exists() else ()):
            try:
                leftover.unlink(missing_ok=True)
            except OSError:
                pass
        cause = os_error_behind(error)
        if cause is None:
            raise
        raise OSError(cause.errno, cause.strerror or str(cause), str(path)) from error
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
    def write(temporary: Path) -> None:
        with open(temporary, "wb") as handle:  # a Python file, so that a failed write keeps its OSError
            torch.save(dict(state), handle)

    return write_atomically(path, write, checksum=True)


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
