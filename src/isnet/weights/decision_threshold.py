"""The decision threshold a binary model file carries (``isnet calibrate --threshold-for f1``).

Stored in the safetensors metadata of one of our checkpoints under ``isnet_threshold`` as
JSON: ``{"threshold": t, "for": "f1", "f1": ..., "f1_at_0.5": ..., "split": ..., "pixels": ...}``;
the tensors are copied unchanged. ``isnet predict``, ``eval`` and ``serve`` label the
foreground where its probability exceeds t (``Predictor.with_threshold``, applied by ``load_predictor``);
``--threshold`` overrides it, and without either the threshold is 0.5 (the argmax).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from isnet.weights.model_records import file_metadata, metadata_record, store_record

THRESHOLD_METADATA_KEY = "isnet_threshold"


def threshold_from_metadata(metadata: Mapping[str, str], *, source: str | Path) -> dict[str, Any] | None:
    """The threshold record of a file's metadata (None when it has none); refused when unusable."""
    return metadata_record(metadata, THRESHOLD_METADATA_KEY, name="threshold", field="threshold",
                           valid=lambda threshold: 0 < threshold < 1, rule="between 0 and 1", source=source)


def read_threshold(path: str | Path | None) -> dict[str, Any] | None:
    """The threshold record of one of our safetensors files, or None (also for files of other kinds)."""
    return threshold_from_metadata(file_metadata(path), source=path)


def store_threshold(source: str | Path, record: Mapping[str, Any], output: str | Path | None = None) -> Path:
    """Write ``source`` with ``record`` in its metadata to ``output`` (default: ``source`` itself, atomically)."""
    return store_record(source, THRESHOLD_METADATA_KEY, record, output)
