"""The calibration record a model file carries: the fitted temperature, and what it was fitted on.

``isnet calibrate`` fits a temperature (:func:`isnet.evaluation.calibration.fit_temperature`)
and stores it in the safetensors metadata of one of our checkpoints, under
``isnet_calibration``, as JSON: ``{"temperature": T, "split": ..., "pixels": ...,
"nll_before": ..., "nll_after": ..., "ece_before": ..., "ece_after": ...}``. The tensors
are copied unchanged. :func:`isnet.deploy.load_predictor` (every command, and the Python API)
reads it back (:func:`read_calibration`): the predictor divides its logits by T.
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

CALIBRATION_METADATA_KEY = "isnet_calibration"


def calibration_from_metadata(metadata: Mapping[str, str], *, source: str | Path) -> dict[str, Any] | None:
    """The calibration record of a file's metadata (None when it has none); refused when unusable."""
    if CALIBRATION_METADATA_KEY not in metadata:
        return None
    try:
        record = load_json(metadata[CALIBRATION_METADATA_KEY])
        temperature = float(record["temperature"])
    except (ValueError, TypeError, KeyError) as error:
        raise CheckpointError(f"{source}: unreadable calibration record in the metadata: {error}") from None
    if not (math.isfinite(temperature) and temperature > 0):
        raise CheckpointError(f"{source}: its calibration record's temperature {temperature} is not a number > 0")
    return record


def read_calibration(path: str | Path) -> dict[str, Any] | None:
    """The calibration record of one of our safetensors files, or None (also for files of other kinds)."""
    if not str(path).endswith(".safetensors") or not Path(path).is_file():
        return None
    _, metadata = read_safetensors_header(path)
    return calibration_from_metadata(metadata, source=path)


def store_calibration(source: str | Path, record: Mapping[str, Any], output: str | Path | None = None) -> Path:
    """Write ``source`` with ``record`` in its metadata to ``output`` (default: ``source`` itself, atomically, sealed anew)."""
    tensors, metadata = read_safetensors(source)
    metadata = {**metadata, CALIBRATION_METADATA_KEY: json.dumps(dict(record), sort_keys=True)}
    return write_safetensors(output or source, tensors, metadata)
