"""The decision threshold a binary model file carries (``isnet calibrate --threshold-for f1``).

Stored in the safetensors metadata of one of our checkpoints under ``isnet_threshold`` as
JSON: ``{"threshold": t, "for": "f1", "f1": ..., "f1_at_0.5": ..., "split": ..., "pixels": ...}``;
the tensors are copied unchanged. ``isnet predict``, ``eval`` and ``serve`` label the
foreground where its probability exceeds t (``Predictor.with_threshold``, applied by ``load_predictor``);
``--threshold`` overrides it, and without either the threshold is 0.5 (the argmax).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from isnet.utils.errors import CheckpointError
from isnet.utils.json_text import load_json
from isnet.weights.checkpoint import read_safetensors, write_safetensors
from isnet.weights.inspection import read_safetensors_header

THRESHOLD_METADATA_KEY = "isnet_threshold"


def read_threshold(path: str | Path | None) -> dict[str, Any] | None:
    """The threshold record of one of our safetensors files, or None (also for files of other kinds)."""
    if path is None or not str(path).endswith(".safetensors") or not Path(path).is_file():
        return None
    _, metadata = read_safetensors_header(path)
    if THRESHOLD_METADATA_KEY not in metadata:
        return None
    try:
        record = load_json(metadata[THRESHOLD_METADATA_KEY])
        threshold = float(record["threshold"])
    except (ValueError, TypeError, KeyError) as error:
        raise CheckpointError(f"{path}: unreadable threshold record in the metadata: {error}") from None
    if not (math.isfinite(threshold) and 0 < threshold < 1):
        raise CheckpointError(f"{path}: its threshold record's threshold {threshold} is not between 0 and 1")
    return record


def store_threshold(source: str | Path, record: Mapping[str, Any], output: str | Path | None = None) -> Path:
    """Write ``source`` with ``record`` in its metadata to ``output`` (default: ``source`` itself, atomically)."""
    tensors, metadata = read_safetensors(source)
    metadata = {**metadata, THRESHOLD_METADATA_KEY: json.dumps(dict(record), sort_keys=True)}
    return write_safetensors(output or source, tensors, metadata)
