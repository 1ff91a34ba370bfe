"""What makes a dataset record usable: the one place its values are checked.

:class:`isnet.data.info.DatasetInfo` runs :func:`record_problems` when it is made, so a record
from Python, a folder's ``dataset.json`` or ``classes.txt``, or a checkpoint's metadata is
checked the same way; the readers of those files put the file's name in front of the words.

A record is refused for class names that are empty or repeated (a report would have two rows
of one name, a prediction two colours of one name), colours that are not three integers in
0..255, an ignore index that is one of the classes (its pixels would be ignored *and* trained
on) or that no mask can store (outside 0..255), no classes at all, left/right pairs outside the classes, a normalisation that is not
one finite number per image channel (standard deviations above 0), and a test protocol of impossible sizes.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _size_problem(name: str, value: Any) -> list[str]:
    """``name`` must be None or two positive integers."""
    if value is None or (isinstance(value, tuple) and len(value) == 2 and all(_integer(n) and n > 0 for n in value)):
        return []
    return [f"{name} must be two positive integers, not {value!r}"]


def _numbers_problem(name: str, value: Any, *, positive: bool) -> list[str]:
    """``name`` must be one finite number per image channel (above 0 when ``positive``)."""
    if (isinstance(value, tuple) and value and all(isinstance(n, (int, float)) and not isinstance(n, bool)
                                                   and math.isfinite(n) and (n > 0 or not positive) for n in value)):
        return []
    return [f"{name} must be finite numbers{' above 0' if positive else ''}, one per image channel, not {value!r}"]


def _protocol_problems(protocol: Any) -> list[str]:
    """The test protocol: its resize sizes, and its multi-scale windows, strides and scales."""
    problems = _size_problem("test.fit_size", protocol.fit_size) + _size_problem("test.resize_to", protocol.resize_to)
    multi = protocol.multi_scale
    if multi is not None:
        if multi.mode not in ("whole", "slide"):
            problems.append(f"test.multi_scale.mode must be 'whole' or 'slide', not {multi.mode!r}")
        problems += _size_problem("test.multi_scale.crop", multi.crop) + _size_problem("test.multi_scale.stride", multi.stride)
        scales = multi.scales
        if not (isinstance(scales, tuple) and scales and all(
                isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) and s > 0 for s in scales)):
            problems.append(f"test.multi_scale.scales must be finite numbers above 0, not {scales!r}")
    return problems


def record_problems(record: Any) -> list[str]:
    """Everything wrong with a :class:`~isnet.data.info.DatasetInfo`, in words (empty: usable)."""
    classes, palette = record.classes, record.palette
    if not isinstance(record.name, str) or not record.name:
        return [f"name must be a non-empty text, not {record.name!r}"]
    if not isinstance(classes, tuple) or not classes:
        return ["no classes: a dataset needs at least one class name"]
    problems = []
    not_text = [k for k, name in enumerate(classes) if not isinstance(name, str)]
    if not_text:
        return [f"class names must be text; class {not_text[0]} is {classes[not_text[0]]!r}"]
    empty = [k for k, name in enumerate(classes) if not name.strip()]
    if empty:
        problems.append(f"class {empty[0]} has an empty name" + (f" (and {len(empty) - 1} more)" if len(empty) > 1 else ""))
    repeated = [name for name, count in Counter(name.strip() for name in classes).items() if count > 1 and name]
    for name in repeated[:3]:
        where = [k for k, other in enumerate(classes) if other.strip() == name]
        problems.append(f"class name {name!r} is given {len(where)} times (classes {', '.join(map(str, where))})")
    if not isinstance(palette, tuple) or len(palette) != len(classes):
        count = len(palette) if isinstance(palette, tuple) else palette
        problems.append(f"{len(classes)} classes but {count!r} palette colours")
    else:
        bad = [k for k, colour in enumerate(palette) if not (isinstance(colour, tuple) and len(colour) == 3
                                                             and all(_integer(c) and 0 <= c <= 255 for c in colour))]
        if bad:
            problems.append(f"colour of class {bad[0]} must be three integers in 0..255 (R, G, B), not {palette[bad[0]]!r}")
    if not _integer(record.ignore_index):
        problems.append(f"ignore_index must be an integer, not {record.ignore_index!r}")
    elif 0 <= record.ignore_index < len(classes):
        problems.append(f"ignore_index {record.ignore_index} is one of the {len(classes)} classes (0..{len(classes) - 1}); "
                        "it must lie outside them (255 is usual)")
    elif not 0 <= record.ignore_index <= 255:
        problems.append(f"ignore_index {record.ignore_index} is no mask value: it is the value stored for unlabelled "
                        "pixels, in 0..255 (255 is usual)")
    for pair in record.flip_pairs if isinstance(record.flip_pairs, tuple) else [record.flip_pairs]:
        if not (isinstance(pair, tuple) and len(pair) == 2 and all(_integer(k) and 0 <= k < len(classes) for k in pair)):
            problems.append(f"flip pair {pair!r} is not two classes of 0..{len(classes) - 1}")
            break
    normalisation = _numbers_problem("mean", record.mean, positive=False) + _numbers_problem("std", record.std, positive=True)
    if not normalisation and len(record.mean) != len(record.std):
        normalisation = [f"mean has {len(record.mean)} values but std {len(record.std)}: give one of each per image channel"]
    problems += normalisation
    if not isinstance(record.label_mapping, str):
        problems.append(f"label_mapping must be text, not {record.label_mapping!r}")
    return problems + _protocol_problems(record.test)
