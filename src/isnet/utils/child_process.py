"""Starting a child Python process that runs this very ``isnet`` (a source checkout or an install)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path


def package_root() -> Path:
    """The folder that holds the ``isnet`` package being run (``src`` of a checkout)."""
    return Path(importlib.util.find_spec("isnet").origin).resolve().parents[1]


def child_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this environment) with :func:`package_root` first on ``PYTHONPATH``."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(package_root()), env.get("PYTHONPATH")]))
    return env
