"""``--set key=value``: replace fields of the (nested, frozen) training configuration by dotted names.

Each value is checked against the type hint of its dataclass field (``typing.get_type_hints``)
when it is given, and the new configuration is checked by the dataclasses' ``__post_init__``
(ranges: a finite positive learning rate, positive counts and sizes), so a bad value is a
:class:`~isnet.utils.errors.ConfigError` naming the key before anything runs.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import json
import math
import types
from dataclasses import fields, replace
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from isnet.utils.errors import ConfigError
from isnet.utils.json_text import load_json


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["lr=0.02", "data.crop_size=[256,256]"]`` → ``{"lr": "0.02", "data.crop_size": "[256,256]"}``.

    The values stay text here; :func:`with_overrides` reads each by the type of its field
    (numbers, booleans and lists as JSON; text as it is).
    """
    overrides = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        overrides[key.strip()] = text
    return overrides


def with_overrides(config: Any, overrides: dict[str, Any], _prefix: str = "") -> Any:
    """Replace dataclass fields by dotted names, at any depth, each value checked against its field's type.

    E.g. ``{"lr": 0.02, "data.root": "/data/ade", "model.head.dropout": "0.0"}``: a value may
    be typed already or be the text of ``--set``.
    """
    nested: dict[str, dict[str, Any]] = {}
    flat: dict[str, Any] = {}
    known = {item.name for item in fields(config)}
    hints = get_type_hints(type(config))
    for key, value in overrides.items():
        outer, dot, inner = key.partition(".")
        if outer not in known:
            close = difflib.get_close_matches(outer, sorted(known), n=1)
            maybe = f" (did you mean {_prefix}{close[0]}?)" if close else ""
            raise ConfigError(
                f"unknown key {_prefix}{key}: {type(config).__name__} has no field {outer!r}{maybe}; "
                f"its fields: {', '.join(sorted(known))}"
            )
        current = getattr(config, outer)
        if dot:
            if not dataclasses.is_dataclass(current):
                raise ConfigError(f"is {current!r}, which has no fields such as {inner!r}", field=f"{_prefix}{outer}")
            nested.setdefault(outer, {})[inner] = value
        else:
            flat[outer] = typed_value(value, hints[outer], f"{_prefix}{outer}")
    for outer, values in nested.items():
        flat[outer] = with_overrides(getattr(config, outer), values, f"{_prefix}{outer}.")
    try:
        return replace(config, **flat)
    except ConfigError as error:
        if error.field in flat:  # a value given here: name the key as the user wrote it
            raise ConfigError(error.problem, field=f"{_prefix}{error.field}") from None
        raise
    except (TypeError, ValueError) as error:  # a dataclass without validation of its own
        raise ConfigError(f"cannot be set that way: {error}", field=_prefix.rstrip(".") or None) from None


def typed_value(value: Any, hint: Any, name: str) -> Any:
    """``value`` (typed, or the text of ``--set``) as the type ``hint`` wants; a ConfigError if it is not one."""
    if dataclasses.is_dataclass(hint) and not isinstance(value, hint):
        first = fields(hint)[0].name
        raise ConfigError(f"is a group of settings; set its fields one by one, e.g. {name}.{first}=...", field=name)
    if isinstance(value, str) and not _accepts_text(hint):
        try:
            value = load_json(value)
        except json.JSONDecodeError:
            pass  # kept as text: the check below says what was expected
    elif isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
        # a field of text or a list (``class_weights=[1,2,3]``): a value written as JSON is the list
        try:
            return _coerce(load_json(value), _without_text(hint))
        except (json.JSONDecodeError, TypeError, ValueError):
            pass  # taken as text below
    try:
        return _coerce(value, hint)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"takes {_describe(hint)}, not {value!r}{_example(hint)}", field=name) from error


def _accepts_text(hint: Any) -> bool:
    """Whether the field's type is text (the value of ``--set`` is then taken as written)."""
    if hint is str or _is_text_enum(hint):
        return True
    origin = get_origin(hint)
    if origin is Literal:
        return all(isinstance(choice, str) for choice in get_args(hint))
    if origin in (Union, types.UnionType):
        return any(_accepts_text(member) for member in get_args(hint) if member is not type(None))
    return False


def _without_text(hint: Any) -> Any:
    """``str | tuple[float, ...] | None`` → ``tuple[float, ...] | None``: the members that are not text."""
    members = [member for member in get_args(hint) if member is not str and not _is_text_enum(member)]
    if get_origin(hint) not in (Union, types.UnionType) or not members:
        raise ValueError
    return Union[tuple(members)]


def _is_text_enum(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, enum.Enum) and issubclass(hint, str)


def _coerce(value: Any, hint: Any) -> Any:
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return value
    if _is_text_enum(hint):
        return hint(value)  # a ValueError for a word it does not have
    if hint is type(None):
        if value is None:
            return None
        raise ValueError
    if origin in (Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("null", "none")):
            if type(None) in args:
                return None
        for member in args:
            if member is type(None):
                continue
            try:
                return _coerce(value, member)
            except (TypeError, ValueError):
                continue
        raise ValueError
    if origin is Literal:
        if value in args:
            return value
        raise ValueError
    if hint is int and isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)  # 1e3
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(item, args[0]) for item in value)
        if len(value) != len(args):
            raise ValueError
        return tuple(_coerce(item, member) for item, member in zip(value, args))
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError
        return {_coerce(key, args[0]): _coerce(item, args[1]) for key, item in value.items()}
    if isinstance(hint, type):  # bool, int, float, str, a dataclass
        if isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
            return value
        raise ValueError
    return value


def _describe(hint: Any) -> str:
    """The type ``hint`` in words: ``two integers``, ``a number``, ``one of 'fp32', 'bf16'``."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(member) for member in args)
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    if _is_text_enum(hint):
        return "one of " + ", ".join(repr(member.value) for member in hint)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0]).removeprefix('an ').removeprefix('a ')}s"
        if len(set(args)) == 1:
            words = {int: "integers", float: "numbers"}.get(args[0], _describe(args[0]))
            return f"{len(args)} {words} as a list"
        return "a list of " + ", ".join(_describe(member) for member in args)
    if origin is dict:
        return f"a mapping of {_describe(args[0])} to {_describe(args[1])}"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a text", type(None): "null"}.get(
        hint, getattr(hint, "__name__", str(hint))
    )


def _example(hint: Any) -> str:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        args = [member for member in args if member is not type(None)]
        return _example(args[0]) if len(args) == 1 else ""
    if origin is tuple and len(args) == 2 and args[1] is not Ellipsis:
        first = {int: "512", float: "0.5"}.get(args[0], "")
        second = {int: "1024", float: "2.0"}.get(args[1], "")
        return f" (e.g. [{first},{second}])" if first and second else ""
    return ""

