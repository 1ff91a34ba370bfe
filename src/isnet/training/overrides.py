"""``--set key=value``: replace fields of the (nested, frozen) training configuration by dotted names."""

from __future__ import annotations

import json
from dataclasses import fields, replace
from typing import Any


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["lr=0.02", "data.crop_size=[256,256]"]`` → ``{"lr": 0.02, "data.crop_size": (256, 256)}``.

    Values are read as JSON where they parse (numbers, booleans, lists become tuples) and kept
    as strings otherwise.
    """
    overrides = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects key=value, got {item!r}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        overrides[key] = tuple(value) if isinstance(value, list) else value
    return overrides


def with_overrides(config: Any, overrides: dict[str, Any]) -> Any:
    """Replace dataclass fields by dotted names, at any depth.

    E.g. ``{"lr": 0.02, "data.root": "/data/ade", "model.head.dropout": 0.0}``.
    """
    nested: dict[str, dict[str, Any]] = {}
    flat: dict[str, Any] = {}
    for key, value in overrides.items():
        outer, dot, inner = key.partition(".")
        if dot:
            nested.setdefault(outer, {})[inner] = value
        else:
            flat[key] = value
    known = {item.name for item in fields(config)}
    unknown = sorted((set(flat) | set(nested)) - known)
    if unknown:
        raise ValueError(
            f"{type(config).__name__} has no field {', '.join(map(repr, unknown))}; its fields: {', '.join(sorted(known))}"
        )
    for outer, values in nested.items():
        flat[outer] = with_overrides(getattr(config, outer), values)
    return replace(config, **flat)
