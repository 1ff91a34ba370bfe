"""docs/paper-map.md: one row per equation (1)–(20), each naming code that exists, and eq. (6) on the model's path."""

from __future__ import annotations

import importlib
import os
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
# The paper's text (not in the repository): ISNET_PAPER, or the shared folder beside the checkout.
PAPER = Path(os.environ.get("ISNET_PAPER", ROOT.parent / "shared" / "docs" / "isnet-paper.txt"))
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


def symbol(text: str) -> str:
    """The letters of an equation's left-hand side, in LaTeX or as the map writes it:
    ``\\mathcal{R}'_{c_k}`` and ``R'_ck`` are both ``R'ck``; superscripts and indices go."""
    text = re.sub(r"\\(?:mathcal|text)\{([^{}]*)\}", r"\1", text.split("=")[0])
    text = re.sub(r"\^\{[^{}]*\}|\[[^\]]*\]", "", text)
    return re.sub(r"[^A-Za-z0-9']", "", text)


def paper_symbols(text: str) -> dict[str, str]:
    """Equation number → the symbol it defines, from the paper's display equations ``$$… \\quad (n)$$``."""
    return {match["number"]: symbol(match["body"])
            for match in re.finditer(r"\$\$(?P<body>.*?)\\quad \((?P<number>\d+)\)\.?\$\$", text)}


def test_symbol_reads_latex_and_the_maps_notation_alike():
    assert symbol(r"\mathcal{R}'_{c_k} = \sum_n") == symbol("R'_ck = Σ_n") == "R'ck"
    assert symbol(r"\mathcal{D}^{K \times H \times W} = x") == symbol("D^{K×H×W} = x") == "D"
    assert symbol(r"\mathcal{R}_{sl,[*,i,j]} = y") == symbol("R_sl[*, i, j] = y") == "Rsl"
    assert symbol(r"\mathcal{L}_{\mathcal{D}} = z") == symbol("L_D = z") == "LD"


@pytest.mark.skipif(not PAPER.is_file(), reason=f"the paper's text is not at {PAPER} (set ISNET_PAPER)")
def test_each_row_defines_what_the_papers_equation_defines():
    """The map's numbering is the paper's: row n's symbol is the left-hand side of the paper's equation (n)."""
    paper = paper_symbols(PAPER.read_text(encoding="utf-8"))
    assert sorted(paper, key=int) == [str(n) for n in EQUATIONS]
    ours = {row.equation: symbol(re.match(r"`([^`]*)`", row.what)[1]) for row in ROWS}
    assert {n: ours[n] for n in paper if ours[n] != paper[n]} == {}


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
