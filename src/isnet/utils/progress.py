"""Progress bars that stay readable in logs: frequent on a terminal, every 30 s otherwise."""

from __future__ import annotations

import sys
from typing import Any


def progress_bar(iterable: Any = None, **kwargs: Any):
    from tqdm import tqdm

    kwargs.setdefault("dynamic_ncols", True)
    if not sys.stderr.isatty():
        kwargs.setdefault("mininterval", 30.0)
    return tqdm(iterable, **kwargs)
