"""docs/paper-map.md: one row per equation (1)–(20), each naming code that exists, and eq. (6) on the model's path."""

from __future__ import annotations

import importlib
import re
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import pytest
import torch

from isnet.model.context import slcm
from isnet.model.context.ilcm import ImageLevelContext
from isnet.model.context.slcm import SemanticLevelContext
from isnet.model.heads.isnet_head import ISNetHead, PlainDecoder

ROOT = Path(__file__).resolve().parents[1]
PAPER_MAP = ROOT / "docs" / "paper-map.md"
EQUATIONS = range(1, 21)
COLUMNS = ["eq.", "symbol / what", "code", "note"]
# src/isnet/<path>.py:<name>, name a module-level object or Class.method.
CODE = re.compile(r"src/isnet/(?P<path>[A-Za-z_][\w/]*)\.py:(?P<name>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)?)")


class Row(NamedTuple):
    equation: str
    what: str
    code: str
    note: str


def parse_table(text: str) -> list[Row]:
    """The rows of the Markdown table whose header is ``COLUMNS``."""
    lines = [line.strip() for line in text.splitlines()]
    header = next(i for i, line in enumerate(lines) if line.startswith("|") and cells(line) == COLUMNS)
    rows = []
    for line in lines[header + 2 :]:  # past the header and its |---| line
        if not line.startswith("|"):
            break
        rows.append(Row(*cells(line)))
    return rows


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def check_equations(rows: list[Row]) -> None:
    """Exactly one row for each equation (1)–(20), and nothing else."""
    counts = Counter(row.equation for row in rows)
    expected = [str(n) for n in EQUATIONS]
    missing = [n for n in expected if n not in counts]
    repeated = [n for n, count in counts.items() if count > 1]
    unexpected = [n for n in counts if n not in expected]
    assert not (missing or repeated or unexpected), f"missing {missing}, repeated {repeated}, unexpected {unexpected}"


def resolve(code: str) -> object:
    """The function, class or method that a ``src/isnet/<path>.py:<name>`` cell names.

    The file must exist, import as ``isnet.<dotted path>`` and define the name itself (an
    object it imports from elsewhere does not count; nor does a method a class inherits).
    """
    match = CODE.fullmatch(code)
    assert match, f"{code!r} is not of the form src/isnet/<path>.py:<name>"
    path, name = match["path"], match["name"]
    assert (ROOT / "src" / "isnet" / f"{path}.py").is_file(), f"{code}: no such file"
    module = importlib.import_module("isnet." + path.replace("/", "."))
    obj: object = module
    for part in name.split("."):
        assert hasattr(obj, part), f"{code}: {part!r} not found"
        obj = getattr(obj, part)
    assert getattr(obj, "__module__", None) == module.__name__, f"{code}: defined in {obj.__module__}, not here"
    assert getattr(obj, "__qualname__", None) == name, f"{code}: resolves to {obj.__qualname__}"
    return obj


ROWS = parse_table(PAPER_MAP.read_text(encoding="utf-8"))


def test_one_row_per_equation():
    check_equations(ROWS)


@pytest.mark.parametrize("row", ROWS, ids=lambda row: f"eq{row.equation}")
def test_code_cell_resolves(row: Row):
    assert row.what, f"eq. {row.equation}: no symbol"
    assert callable(resolve(row.code))


@pytest.mark.parametrize(
    "code",
    [
        "src/isnet/model/context/slcm.py:find_region",  # misspelt
        "src/isnet/model/context/slcm.py:Regions.to_maps",  # misspelt method
        "src/isnet/model/context/slcn.py:find_regions",  # no such file
        "src/isnet/model/context/slcm.py:ConvBNReLU",  # imported there, defined in layers.py
        "src/isnet/model/heads/fcn.py:FCNAuxHead.append",  # inherited from nn.Sequential
        "isnet/model/context/slcm.py:find_regions",  # not the cell format
        "src/isnet/model/context/slcm.py:find_regions()",
    ],
)
def test_resolve_rejects(code: str):
    with pytest.raises(AssertionError):
        resolve(code)


def test_equation_check_rejects_a_missing_or_repeated_row():
    rows = [Row(str(n), "x", "src/isnet/training/losses.py:segmentation_loss", "") for n in EQUATIONS]
    check_equations(rows)
    for broken in (rows[:-1], rows + rows[:1], rows[:5] + [rows[4]] + rows[6:], rows + [rows[0]._replace(equation="21")]):
        with pytest.raises(AssertionError):
            check_equations(broken)


def test_parse_table_reads_the_rows_under_the_header():
    text = "intro\n\n| eq. | symbol / what | code | note |\n|---|---|---|---|\n| 1 | R | a.py:b | |\n| 2 | D | c.py:d | n |\n\nafter"
    assert parse_table(text) == [Row("1", "R", "a.py:b", ""), Row("2", "D", "c.py:d", "n")]


def test_head_output_is_classified_from_augmented_representation(monkeypatch):
    """Eq. (6) is not dead code: the head's stage-2 logits are computed from its result."""
    original, calls = slcm.augmented_representation, []

    def recording(*args):
        calls.append(original(*args))
        return calls[-1]

    monkeypatch.setattr(slcm, "augmented_representation", recording)
    torch.manual_seed(0)
    channels, num_classes = 8, 3
    head = ISNetHead(
        32,
        channels,
        num_classes,
        image_context=ImageLevelContext(channels, 4),
        semantic_context=SemanticLevelContext(channels, 4),
        decoder=PlainDecoder(channels, num_classes),
    ).eval()
    features = [torch.randn(1, 4, 6, 5), torch.randn(1, 32, 6, 5)]
    with torch.no_grad():
        out = head(features)["out"]
        assert len(calls) == 1
        assert torch.equal(out, head.decoder(calls[0], features[0]))
