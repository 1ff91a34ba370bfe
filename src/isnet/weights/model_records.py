"""Records a model file carries in its safetensors metadata beside the weights: JSON objects under
one key each (``isnet_calibration``: the temperature; ``isnet_threshold``: a binary model's
decision threshold). One reader and one writer for all of them; each record's module says what
it holds and which of its numbers must be valid.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from isnet.utils.errors import CheckpointError
from isnet.utils.json_text import load_json
from isnet.weights.checkpoint import read_safetensors, write_safetensors
from isnet.weights.inspection import read_safetensors_header


def file_metadata(path: str | Path | None) -> Mapping[str, str]:
    """The metadata of one of our safetensors files (its header only); empty for files of other kinds."""
    if path is None or not str(path).endswith(".safetensors") or not Path(path).is_file():
        return {}
    return read_safetensors_header(path)[1]


def metadata_record(metadata: Mapping[str, str], key: str, *, name: str, field: str,
                    valid: Callable[[float], bool], rule: str, source: str | Path) -> dict[str, Any] | None:
    """The JSON record under ``key`` (None when there is none), refused in one line naming ``source``
    when it does not parse or its number ``field`` is not finite and ``valid`` (``rule`` says how)."""
    if key not in metadata:
        return None
    try:
        record = load_json(metadata[key])
        value = float(record[field])
    except (ValueError, TypeError, KeyError) as error:
        raise CheckpointError(f"{source}: unreadable {name} record in the metadata: {error}") from None
    if not (math.isfinite(value) and valid(value)):
        raise CheckpointError(f"{source}: its {name} record's {field} {value} is not {rule}")
    return record


def store_record(source: str | Path, key: str, record: Mapping[str, Any], output: str | Path | None = None) -> Path:
    """Write ``source`` with ``record`` under ``key`` in its metadata to ``output`` (default: ``source`` itself;
    atomically, sealed anew, the tensors unchanged)."""
    tensors, metadata = read_safetensors(source)
    return write_safetensors(output or source, tensors, {**metadata, key: json.dumps(dict(record), sort_keys=True)})
