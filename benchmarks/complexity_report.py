"""Table 2's rows: the paper's values, and the table, CSV and chart of the rows measured by
:mod:`benchmarks.complexity`."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

# Paper Table 2: (parameters in M, multiply-adds in G) on a 1×2048×128×128 feature.
PAPER_TABLE2: dict[str, tuple[float, float]] = {
    "ilcm": (10.36, 169.77),
    "slcm": (10.10, 165.47),
    "ilcm+slcm": (11.02, 180.60),
    "aspp": (42.21, 674.47),
    "ppm": (23.07, 309.45),
    "ccnet": (23.92, 397.38),
    "ocr": (14.82, 237.45),
    "danet": (23.92, 392.02),
    "ann": (20.32, 335.24),
    "dnl": (24.12, 395.25),
    "apcnet": (30.46, 413.12),
}


@dataclass(frozen=True)
class ComplexityRow:
    """One row of Table 2 as measured here."""

    module: str
    params_m: float
    macs_paper_g: float
    macs_full_g: float
    latency_ms: float | None


def format_csv(rows: Sequence[ComplexityRow]) -> str:
    """CSV with the header ``module,params_m,macs_paper_g,macs_full_g,latency_ms``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([field.name for field in fields(ComplexityRow)])
    for row in rows:
        writer.writerow(
            [
                row.module,
                f"{row.params_m:.4f}",
                f"{row.macs_paper_g:.2f}",
                f"{row.macs_full_g:.2f}",
                "" if row.latency_ms is None else f"{row.latency_ms:.1f}",
            ]
        )
    return buffer.getvalue()


def format_table(rows: Sequence[ComplexityRow]) -> str:
    """A fixed-width table of ``rows`` beside the paper's Table 2 values."""
    header = ("module", "params M", "paper M", "MACs G", "paper G", "full MACs G", "latency ms")
    lines = []
    for row in rows:
        paper_params, paper_macs = PAPER_TABLE2.get(row.module, (None, None))
        lines.append(
            (
                row.module,
                f"{row.params_m:.2f}",
                "-" if paper_params is None else f"{paper_params:.2f}",
                f"{row.macs_paper_g:.2f}",
                "-" if paper_macs is None else f"{paper_macs:.2f}",
                f"{row.macs_full_g:.2f}",
                "-" if row.latency_ms is None else f"{row.latency_ms:.1f}",
            )
        )
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]

    def render(cells: Sequence[str]) -> str:
        padded = [cell.rjust(w) for cell, w in zip(cells, widths)]
        padded[0] = cells[0].ljust(widths[0])
        return "  ".join(padded)

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([render(header), rule, *(render(line) for line in lines)]) + "\n"


def plot_rows(rows: Sequence[ComplexityRow], path: str | Path) -> None:
    """Bar charts of parameters, multiply-adds and latency, the paper's values as markers."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = [row.module for row in rows]
    positions = range(len(rows))
    paper = [PAPER_TABLE2.get(name, (float("nan"), float("nan"))) for name in names]
    with_latency = all(row.latency_ms is not None for row in rows)
    figure = Figure(figsize=(5 * (3 if with_latency else 2), 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 3 if with_latency else 2)

    axes[0].bar(positions, [row.params_m for row in rows], color="tab:blue", label="measured")
    axes[0].scatter(
        positions, [p for p, _ in paper], color="black", marker="_", s=300, label="paper", zorder=3
    )
    axes[0].set_ylabel("parameters (M)")

    width = 0.4
    left = [i - width / 2 for i in positions]
    right = [i + width / 2 for i in positions]
    axes[1].bar(left, [r.macs_paper_g for r in rows], width, label="convolutions (paper's rule)")
    axes[1].bar(right, [r.macs_full_g for r in rows], width, label="all products (incl. attention)")
    axes[1].scatter(
        left, [m for _, m in paper], color="black", marker="_", s=150, label="paper", zorder=3
    )
    axes[1].set_ylabel("multiply-adds (G)")

    if with_latency:
        axes[2].bar(positions, [row.latency_ms for row in rows], color="tab:green")
        axes[2].set_ylabel("latency (ms)")
    for ax in axes:
        ax.set_xticks(list(positions), names, rotation=45, ha="right")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend()
    axes[1].legend(fontsize="small")
    figure.suptitle("Context modules on a 1×2048×H×W feature (paper Table 2)")
    figure.savefig(path, dpi=120)
