"""Table 2 accounting: the counts against the paper, and the counters themselves.

Counts run on the meta device (shapes only), so the paper's 128×128 input costs nothing;
only the latency test executes a network, at 8×8.
"""

from __future__ import annotations

import csv
import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.complexity import (
    ISNET_MODULES,
    PEER_ORDER,
    TABLE2_MODULES,
    count_macs,
    count_parameters,
    main,
    table2_rows,
)
from benchmarks.complexity_report import PAPER_TABLE2, format_table

PAPER_SIZE = (128, 128)
N = 128 * 128  # pixels of the paper's layer4


@pytest.fixture(scope="module")
def rows():
    return {row.module: row for row in table2_rows(latency=False, size=PAPER_SIZE)}


@pytest.mark.parametrize("name", ISNET_MODULES)
def test_isnet_modules_match_the_paper(rows, name):
    paper_params, paper_macs = PAPER_TABLE2[name]
    assert abs(rows[name].params_m - paper_params) <= 0.05
    assert rows[name].macs_paper_g == pytest.approx(paper_macs, rel=0.01)


@pytest.mark.parametrize("name", [n for n in PEER_ORDER if n in PAPER_TABLE2])
def test_peer_modules_match_the_paper(rows, name):
    paper_params, paper_macs = PAPER_TABLE2[name]
    assert rows[name].params_m == pytest.approx(paper_params, rel=0.05)
    assert rows[name].macs_paper_g == pytest.approx(paper_macs, rel=0.01)


def test_full_count_adds_exactly_the_attention_products(rows):
    def extra(name: str) -> float:
        return (rows[name].macs_full_g - rows[name].macs_paper_g) * 1e9

    # ILCM and SLCM: QKᵀ and (attention)V over N×N pixels at 256 channels, each.
    attention = 2 * N * N * 256
    assert extra("ilcm") == pytest.approx(attention, rel=1e-9)
    assert extra("ilcm+slcm") == pytest.approx(2 * attention, rel=1e-9)
    # Non-local: the same two products at d = 512 / 2.
    assert extra("nonlocal") == pytest.approx(2 * N * N * 256, rel=1e-9)
    # DANet: position attention (keys 64, values 512) and channel attention (512×512 Gram).
    assert extra("danet") == pytest.approx(N * N * 64 + N * N * 512 + 2 * 512 * 512 * N, rel=1e-9)
    # PPM and ASPP have no matrix products.
    assert extra("ppm") == 0 and extra("aspp") == 0
    for row in rows.values():
        assert row.macs_full_g >= row.macs_paper_g


def test_conv_hook_count_and_recurrence():
    conv = nn.Conv2d(6, 10, 3, padding=2, dilation=2, groups=2)
    x = torch.randn(1, 6, 9, 7)
    paper, full = count_macs(conv, x, [conv])
    assert paper == full == 10 * 9 * 7 * (6 // 2) * 9

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(4, 3)

        def forward(self, x):
            return self.linear(self.linear(x)[..., :1].expand(-1, 4))

    model = Twice()
    assert count_macs(model, torch.randn(5, 4), [model]) == (2 * 5 * 4 * 3, 2 * 5 * 4 * 3)


def test_only_counted_parts_are_counted():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Conv2d(4, 5, 1))
    assert count_macs(model, torch.randn(1, 3, 2, 2), [model[1]]) == (5 * 4 * 4,) * 2
    assert count_parameters([model[1]]) == 4 * 5 + 5


def test_shared_parameters_count_once():
    shared = nn.Linear(3, 3)
    assert count_parameters([nn.Sequential(shared, shared), shared]) == 12


def test_fused_cpu_attention_is_counted():
    class Attention(nn.Module):
        def forward(self, q):
            return F.scaled_dot_product_attention(q, q, q)

    model = Attention()
    q = torch.randn(1, 2, 16, 8)  # 4-D on CPU: the fused flash kernel
    _, full = count_macs(model, q, [model])
    assert full == 2 * 2 * 16 * 16 * 8


def test_latency_is_measured():
    (row,) = table2_rows(["ppm"], size=(8, 8), repeats=1)
    assert row.latency_ms is not None and row.latency_ms > 0


def test_csv_output(capsys):
    assert main(["--format", "csv", "--no-latency", "--size", "16", "16"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "module,params_m,macs_paper_g,macs_full_g,latency_ms"
    records = list(csv.DictReader(io.StringIO("\n".join(lines))))
    assert [r["module"] for r in records] == list(TABLE2_MODULES)
    assert records[0]["module"] == "ilcm" and records[2]["module"] == "ilcm+slcm"
    assert all(r["latency_ms"] == "" for r in records)
    # Parameters do not depend on the input size; multiply-adds scale with the pixels.
    assert float(records[0]["params_m"]) == pytest.approx(10.36, abs=0.005)


def test_table_and_plot(tmp_path, capsys):
    plot = tmp_path / "table2.png"
    argv = ["--no-latency", "--size", "16", "16", "--modules", "ilcm", "nonlocal"]
    assert main([*argv, "--plot", str(plot)]) == 0
    table = capsys.readouterr().out
    assert "ilcm" in table and "169.77" in table and "nonlocal" in table
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_format_table_marks_missing_values():
    rows = table2_rows(["nonlocal"], size=(4, 4), latency=False)
    assert format_table(rows).splitlines()[-1].split()[-1] == "-"
