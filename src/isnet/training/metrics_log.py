"""The training log: ``metrics.csv`` (one row per logged iteration or evaluation), TensorBoard and curves.png."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from isnet.utils.visualize import plot_training_curves
from isnet.weights.checkpoint import write_atomically


class MetricsLog:
    """``metrics.csv`` (one row per logged iteration or evaluation), TensorBoard and curves."""

    FIELDS = ["iteration", "lr", "loss", "loss_out", "loss_stage1", "loss_aux", "mIoU", "seconds"]

    def __init__(self, output_dir: Path, resume_iteration: int, enabled: bool) -> None:
        self.path = output_dir / "metrics.csv"
        self.output_dir = output_dir
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        rows = self.rows()
        # A resumed run repeats the iterations after its checkpoint: drop their old rows.
        rows = [row for row in rows if int(row["iteration"]) <= resume_iteration]

        def rewrite(temporary: Path) -> None:
            with open(temporary, "w", newline="") as handle:
                writer = csv.DictWriter(handle, self.FIELDS)
                writer.writeheader()
                writer.writerows(rows)

        write_atomically(self.path, rewrite)  # a kill here must not lose the run's history
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(output_dir), purge_step=resume_iteration + 1)
        except ImportError:  # TensorBoard is an optional extra
            self.writer = None

    def rows(self) -> list[dict[str, str]]:
        if not self.path.exists():
            return []
        with open(self.path, newline="") as handle:
            # A row cut short by a kill has missing fields (None): it is dropped.
            return [row for row in csv.DictReader(handle) if None not in row.values() and row["iteration"].isdigit()]

    def write(self, iteration: int, **values: float) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", newline="") as handle:
            csv.DictWriter(handle, self.FIELDS).writerow({"iteration": iteration, **values})
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(name, value, iteration)
            self.writer.flush()

    def write_losses(self, iteration: int, lr: float, losses: dict[str, float], seconds: float) -> None:
        """A row of training losses (``total``, and ``out``, ``stage1``, ``aux`` where the model has them)."""
        self.write(iteration, lr=lr, loss=losses["total"], loss_out=losses.get("out", math.nan),
                   loss_stage1=losses.get("stage1", math.nan), loss_aux=losses.get("aux", math.nan), seconds=seconds)

    def best_miou(self) -> float | None:
        """The best mIoU logged so far (None before the first evaluation)."""
        values = [float(row["mIoU"]) for row in self.rows() if row.get("mIoU")] if self.enabled else []
        return max(values, default=None)

    def plot(self) -> None:
        if self.enabled:
            plot_training_curves(self.rows(), self.output_dir / "curves.png")
