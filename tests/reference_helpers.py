"""Reading the reference fixtures' settings (format: shared/reference/README.md)."""

from __future__ import annotations

from typing import Any

from isnet.inference.engine import InferenceConfig


def msflip_config(meta: dict[str, Any]) -> InferenceConfig:
    """The multi-scale + flip protocol a fixture's ``seg_logit_msflip`` was computed with."""
    settings = meta["msflip"]
    return InferenceConfig(
        mode="whole",
        scales=tuple(settings["scales"]),
        flip=settings["flip"],
        flip_pairs=tuple(tuple(pair) for pair in meta.get("flip_pairs") or ()),
        probs_before_resize=settings["probs_before_resize"],
    )
