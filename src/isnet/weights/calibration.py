"""The calibration record a model file carries: the fitted temperature, and what it was fitted on.

``isnet calibrate`` fits a temperature (:func:`isnet.evaluation.calibration.fit_temperature`)
and stores it in the safetensors metadata of one of our checkpoints, under
``isnet_calibration``, as JSON: ``{"temperature": T, "split": ..., "pixels": ...,
"nll_before": ..., "nll_after": ..., "ece_before": ..., "ece_after": ...}``. The tensors
are copied unchanged. :func:`isnet.deploy.load_predictor` (every command, and the Python API)
reads it back (:func:`read_calibration`): the predictor divides its logits by T.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from isnet.weights.model_records import file_metadata, metadata_record, store_record

CALIBRATION_METADATA_KEY = "isnet_calibration"


def calibration_from_metadata(metadata: Mapping[str, str], *, source: str | Path) -> dict[str, Any] | None:
    """The calibration record of a file's metadata (None when it has none); refused when unusable."""
    return metadata_record(metadata, CALIBRATION_METADATA_KEY, name="calibration", field="temperature",
                           valid=lambda temperature: temperature > 0, rule="a number > 0", source=source)


def read_calibration(path: str | Path) -> dict[str, Any] | None:
    """The calibration record of one of our safetensors files, or None (also for files of other kinds)."""
    return calibration_from_metadata(file_metadata(path), source=path)


def store_calibration(source: str | Path, record: Mapping[str, Any], output: str | Path | None = None) -> Path:
    """Write ``source`` with ``record`` in its metadata to ``output`` (default: ``source`` itself, atomically, sealed anew)."""
    return store_record(source, CALIBRATION_METADATA_KEY, record, output)
