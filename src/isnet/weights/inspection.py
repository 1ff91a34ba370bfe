"""Looking at a checkpoint file before loading it: what kind of file it is, and what its
safetensors header declares.

A model file of ``isnet`` (safetensors), a training checkpoint of ``isnet train``
(``iter_*.pt``), another PyTorch file (the authors' released ``.pth``), a ``torch.export``
program, an ONNX model or a folder: each is named as what it is, with how that kind is used.
A safetensors header is checked entry by entry (dtype, shape, byte range) without reading any
tensor, so that the loader can compare it with the model before allocating anything.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from isnet.utils.errors import CheckpointError, describe_os_error
from isnet.utils.json_text import load_json
from isnet.utils.seal import SealBroken, check_seal

MAX_SAFETENSORS_HEADER = 100_000_000  # the safetensors library's own limit
# The version of what our model files carry (safetensors metadata, ONNX metadata_props, OpenVINO rt_info,
# .pt2 extra files): bumped when a reader of the previous version would misread a file. Files written
# before versions (without the key) are version 0 and read as they always were.
FORMAT_METADATA_KEY = "isnet_format"
FILE_FORMAT = 1


def require_known_format(metadata: Mapping[str, str], source: str | Path) -> int:
    """The format version of a file's metadata (0 when it has none); a :class:`CheckpointError` when a
    newer isnet wrote it, or the entry is not a version number."""
    text = metadata.get(FORMAT_METADATA_KEY, "0")
    if not (isinstance(text, str) and text.isdigit()):
        raise CheckpointError(f"{source}: its {FORMAT_METADATA_KEY} entry {text!r} is not a format version number")
    if int(text) > FILE_FORMAT:
        raise CheckpointError(f"{source}: written in file format {int(text)} by a newer isnet; this version reads "
                              f"formats up to {FILE_FORMAT}: upgrade isnet to read it")
    return int(text)


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


def zip_damage(path: Path) -> str | None:
    """What is damaged in the zip archive ``path`` (None: every member passes its CRC-32).

    PyTorch files (``torch.save``, ``torch.export.save``) are zip archives whose members carry
    a CRC-32, which ``torch.load`` does not check: a flipped bit in a tensor would be loaded.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError) as error:
        return f"not a readable zip archive, truncated or corrupt? ({error})"
    return None if bad is None else f"its member {bad} fails its CRC-32 check (changed after it was written)"


def require_intact_zip(path: Path, kind: str) -> None:
    """A :class:`CheckpointError` naming the file unless :func:`zip_damage` finds nothing."""
    problem = zip_damage(path)
    if problem is not None:
        raise CheckpointError(f"{path}: damaged {kind}: {problem}")


class FileKind(enum.Enum):
    """What a file is, from its first bytes (:func:`file_kind`). The value names the kind in a
    message (``not an ONNX model``); :attr:`description` says more, :attr:`how_to_use` how it is used."""

    DIRECTORY = "a directory"
    UNREADABLE = "an unreadable file"
    EMPTY = "an empty file (0 bytes)"
    TOO_SHORT = "a file too short for any model file (truncated?)"
    SAFETENSORS = "a safetensors model file"
    DAMAGED_ZIP = "a damaged zip archive"
    TORCH_EXPORT = "a torch.export program (.pt2)"
    TRAINING_CHECKPOINT = "a training checkpoint of isnet train"
    PYTORCH = "a PyTorch file"
    ZIP = "a zip archive"
    PICKLE = "a pickle"
    ONNX = "an ONNX model"
    OPENVINO_IR = "an OpenVINO IR (.xml)"
    UNKNOWN = "not a model file of any known kind (damaged at its start?)"

    @property
    def description(self) -> str:
        return _DESCRIPTIONS.get(self, self.value)

    @property
    def how_to_use(self) -> str | None:
        return _HOW_TO_USE.get(self)


_DESCRIPTIONS = {
    FileKind.SAFETENSORS: "a safetensors file (an isnet model file)",
    FileKind.TRAINING_CHECKPOINT: "a training checkpoint of isnet train (iter_*.pt: weights, optimizer and random state)",
    FileKind.PYTORCH: "a PyTorch file (.pth/.pt: pickled tensors, such as the authors' released weights)",
    FileKind.PICKLE: "a pickle (a PyTorch file of the legacy format, such as the authors' released weights)",
    FileKind.ONNX: "an ONNX model (written by isnet export)",
    FileKind.OPENVINO_IR: "an OpenVINO IR (.xml, its weights in the .bin beside it)",
}
_RELEASED = "released weights are loaded with their preset (isnet --model PRESET --weights FILE)"
_HOW_TO_USE = {
    FileKind.SAFETENSORS: "load it with load_model (isnet --checkpoint FILE)",
    FileKind.TRAINING_CHECKPOINT: "a finished run writes its model as model.safetensors in the run folder "
                                  "(isnet --checkpoint RUN/model.safetensors)",
    FileKind.PYTORCH: _RELEASED,
    FileKind.PICKLE: _RELEASED,
    FileKind.ONNX: "run it with isnet predict --runtime onnx --weights FILE",
    FileKind.TORCH_EXPORT: "load it with torch.export.load",
    FileKind.OPENVINO_IR: "run it with isnet predict --runtime openvino --weights FILE.xml",
}


def _identify(path: Path) -> tuple[FileKind, str]:
    """The kind of ``path`` from its first bytes, and the words for it (with details where a kind has them)."""
    if path.is_dir():
        return FileKind.DIRECTORY, FileKind.DIRECTORY.description
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
    except OSError as error:
        return FileKind.UNREADABLE, f"unreadable ({describe_os_error(error)})"
    if not head:
        return FileKind.EMPTY, FileKind.EMPTY.description
    if len(head) < 9:
        return FileKind.TOO_SHORT, f"a file of only {len(head)} byte(s), too short for any model file (truncated?)"
    if 0 < int.from_bytes(head[:8], "little") <= MAX_SAFETENSORS_HEADER and head[8:9] == b"{":
        kind = FileKind.SAFETENSORS
    elif head.startswith(b"PK\x03\x04"):
        kind = _zip_kind(path)
    elif head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        kind = FileKind.PICKLE
    elif head[:1] == b"\x08" and head[1] < 0x80 and head[2:3] in (b"\x12", b"\x1a", b"\x22", b"\x28", b"\x3a"):
        kind = FileKind.ONNX
    elif head.lstrip().startswith(b"<?xml") and (b"<net" in head or len(head) < 64):  # (or an IR cut short)
        kind = FileKind.OPENVINO_IR
    else:
        kind = FileKind.UNKNOWN
    return kind, kind.description


def _zip_kind(path: Path) -> FileKind:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return FileKind.DAMAGED_ZIP
    if any(name.endswith("/archive_format") for name in names):
        return FileKind.TORCH_EXPORT
    if _training_checkpoint_zip(path):
        return FileKind.TRAINING_CHECKPOINT
    if any(name.endswith("/data.pkl") for name in names):
        return FileKind.PYTORCH
    return FileKind.ZIP


def file_kind(path: Path) -> FileKind:
    """What kind of file ``path`` is, from its first bytes: a folder, a model file of ``isnet``
    (safetensors), a training checkpoint of ``isnet train`` (``iter_*.pt``), another PyTorch file
    (a released ``.pth``), a ``torch.export`` program, an ONNX model, an OpenVINO IR..."""
    return _identify(path)[0]


def describe_file(path: Path) -> str:
    """What kind of file ``path`` is (:func:`file_kind`), in the words of an error message."""
    return _identify(path)[1]


def not_the_expected_kind(path: Path, expected: FileKind | str) -> str:
    """The message for a file that is not ``expected``: what it is, and how that kind is used."""
    expected = expected.value if isinstance(expected, FileKind) else expected
    if path.is_dir():
        inside = [name for name in ("model.safetensors",) if (path / name).is_file()]
        hint = f"; did you mean {path / inside[0]}?" if inside else ""
        return f"{path}: is a directory, not {expected}{hint}"
    kind, words = _identify(path)
    hint = kind.how_to_use
    return f"{path}: not {expected}: it is {words}" + (f"; {hint}" if hint else "")


def require_file(path: Path, expected: FileKind | str) -> None:
    """Raise a :class:`CheckpointError` unless ``path`` is a readable file (a folder is named as one)."""
    if path.is_dir():
        raise CheckpointError(not_the_expected_kind(path, expected))
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if not os.access(path, os.R_OK):
        raise CheckpointError(f"{path}: permission denied (EACCES)")


def require_kind(path: Path, kind: FileKind, companions: tuple[Path, ...] = (),
                 section: tuple[bytes, bytes] | None = None) -> None:
    """A :class:`CheckpointError` unless ``path`` is a readable file of ``kind`` that matches its seal,
    when it has one (in ``section``: :func:`isnet.utils.seal.check_seal`)."""
    require_file(path, kind)
    if file_kind(path) is not kind:
        raise CheckpointError(not_the_expected_kind(path, kind))
    _require_intact(path, kind.value.removeprefix("an ").removeprefix("a "), companions, section)


SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}


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
    require_file(path, FileKind.SAFETENSORS)
    size = path.stat().st_size
    try:
        with open(path, "rb") as handle:
            header_size = int.from_bytes(handle.read(8), "little")
            if size < 9 or not 0 < header_size <= min(size - 8, MAX_SAFETENSORS_HEADER):
                if file_kind(path) is FileKind.SAFETENSORS:  # its header's start, not its end
                    raise CheckpointError(f"{path}: truncated safetensors file: its header declares {header_size:,} "
                                          f"bytes, the file holds {size - 8:,} after the size field")
                raise CheckpointError(not_the_expected_kind(path, FileKind.SAFETENSORS))
            raw = handle.read(header_size)
    except OSError as error:
        raise CheckpointError(f"{path}: unreadable: {describe_os_error(error)}") from None
    if not raw.startswith(b"{"):
        raise CheckpointError(not_the_expected_kind(path, FileKind.SAFETENSORS))
    try:
        header = load_json(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: corrupt safetensors file: unreadable header ({error})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt safetensors file: the header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(f"{path}: corrupt safetensors file: its metadata is not a mapping of strings")
    require_known_format(metadata, path)
    data_size = size - 8 - header_size
    declared = _tiled_data_size(header)
    if declared is not None and declared > data_size:
        raise CheckpointError(f"{path}: truncated safetensors file: its header declares {declared:,} bytes of "
                              f"tensor data, the file holds {data_size:,}")
    entries = {}
    for name, entry in header.items():
        entries[name] = _header_entry(path, name, entry, data_size)
    _require_intact(path, "safetensors model file")
    return entries, metadata


def _tiled_data_size(header: dict[str, Any]) -> int | None:
    """The data size of a header whose byte ranges follow each other from 0 (as writers lay them out), else None."""
    try:
        spans = sorted((int(entry["data_offsets"][0]), int(entry["data_offsets"][1])) for entry in header.values())
    except (TypeError, KeyError, IndexError, ValueError):
        return None
    end = 0
    for start, stop in spans:
        if start != end or stop < start:
            return None
        end = stop
    return end


def _require_intact(path: Path, kind: str, companions: tuple[Path, ...] = (),
                    section: tuple[bytes, bytes] | None = None) -> None:
    """A :class:`CheckpointError` unless ``path`` matches its seal (:mod:`isnet.utils.seal`), when it has one."""
    try:
        check_seal(path, companions, section)
    except SealBroken as error:
        raise CheckpointError(f"{path}: damaged {kind}: {error}") from None


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
