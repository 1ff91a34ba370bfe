"""JSON read from files and requests, with its nesting bounded.

``json.loads`` of text nested 100,000 deep raises ``RecursionError`` (a traceback, not an
answer), and a structure a few thousand deep overflows whatever walks it next. Every JSON we
read is a record a few levels deep, so :func:`load_json` refuses anything deeper than
:data:`MAX_JSON_DEPTH` as malformed JSON.
"""

from __future__ import annotations

import json
from typing import Any

MAX_JSON_DEPTH = 64  # our records nest 4 deep; a model configuration 3


def load_json(text: str | bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads(text)``; a ``json.JSONDecodeError`` (a ``ValueError``) for text that does not parse
    or nests lists and objects deeper than ``max_depth``."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise _too_deep(text, max_depth) from None
    if json_depth(value) > max_depth:
        raise _too_deep(text, max_depth)
    return value


def json_depth(value: Any) -> int:
    """How deep lists and dicts nest in ``value`` (0 for a number or a text), without recursion."""
    deepest = 0
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        pending.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def _too_deep(text: str | bytes, max_depth: int) -> json.JSONDecodeError:
    shown = text if isinstance(text, str) else text[:200].decode("utf-8", "replace")
    return json.JSONDecodeError(f"nested deeper than {max_depth} levels", shown, 0)
