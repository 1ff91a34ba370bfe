"""How far a model's confidence can be trusted: expected calibration error, the reliability
diagram, and fitting a temperature (Guo et al., "On Calibration of Modern Neural Networks", 2017).

Confidence is the probability of the predicted class at each pixel (the max over classes).
:class:`CalibrationBins` sorts the labelled pixels of a dataset into ``bins`` equal-width
confidence bins (15, as Guo et al.) and keeps, per bin, the count, the summed confidence
and the number of correct predictions; the expected calibration error is
``ECE = Σ_b (n_b / N) · |accuracy_b − confidence_b|`` over all labelled pixels of the set
(ignored pixels left out), 0 for a perfectly calibrated model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from isnet.data.base import IGNORE_INDEX
from isnet.inference.engine import InferenceConfig, predict
from isnet.utils.atomic_files import write_atomically
from isnet.inference.predictor import Predictor, as_predictor

ECE_BINS = 15


class CalibrationBins:
    """Per-bin pixel counts, summed confidences and correct predictions, accumulated over a dataset."""

    def __init__(self, bins: int = ECE_BINS, ignore_index: int = IGNORE_INDEX) -> None:
        self.bins, self.ignore_index = bins, ignore_index
        self.count = torch.zeros(bins, dtype=torch.float64)
        self.confidence = torch.zeros(bins, dtype=torch.float64)
        self.correct = torch.zeros(bins, dtype=torch.float64)

    @torch.no_grad()
    def update(self, probabilities: Tensor, labels: Tensor) -> None:
        """Add a batch: (N, K, H, W) class probabilities and (N, H, W) labels."""
        confidence, predicted = probabilities.max(dim=1)
        valid = labels != self.ignore_index
        confidence, correct = confidence[valid].double().cpu(), (predicted[valid] == labels[valid]).double().cpu()
        index = (confidence * self.bins).long().clamp(0, self.bins - 1)  # bin b holds [b/B, (b+1)/B); 1.0 joins the last
        self.count += torch.bincount(index, minlength=self.bins).double()
        self.confidence += torch.bincount(index, weights=confidence, minlength=self.bins)
        self.correct += torch.bincount(index, weights=correct, minlength=self.bins)

    def all_reduce(self) -> None:
        """Sum the bins of all processes (no-op unless torch.distributed is initialised)."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            for tensor in (self.count, self.confidence, self.correct):
                dist.all_reduce(tensor, op=dist.ReduceOp.SUM)

    def ece(self) -> float:
        """Expected calibration error over every pixel added (NaN when none was)."""
        total = self.count.sum()
        if total == 0:
            return float("nan")
        gap = (self.correct - self.confidence).abs()  # per bin: n_b · |acc_b − conf_b|
        return float(gap.sum() / total)

    def plot(self, path: str | Path, *, title: str = "") -> Path:
        """The reliability diagram: accuracy per confidence bin against the diagonal, and the pixel share per bin."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        width = 1 / self.bins
        lefts = torch.arange(self.bins).double() * width
        filled = self.count > 0  # empty bins are drawn empty
        count = self.count[filled]
        accuracy, confidence = (self.correct[filled] / count).numpy(), (self.confidence[filled] / count).numpy()
        lefts, count = lefts[filled].numpy(), count.numpy()
        figure, (axis, share) = plt.subplots(2, 1, figsize=(4.5, 5.5), dpi=100, height_ratios=(3, 1), sharex=True)
        axis.bar(lefts, accuracy, width=width, align="edge", color="tab:blue", edgecolor="black", label="accuracy")
        low = np.minimum(accuracy, confidence)
        axis.bar(lefts, np.abs(confidence - accuracy), bottom=low, width=width, align="edge", fill=False, hatch="///",
                 edgecolor="tab:red", label="gap to mean confidence")
        axis.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
        axis.set_ylabel("accuracy")
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1)
        axis.set_title(f"{title + ': ' if title else ''}ECE {100 * self.ece():.2f} % ({self.bins} bins)", fontsize=9)
        axis.legend(fontsize=7, loc="upper left")
        share.bar(lefts, count / count.sum(), width=width, align="edge", color="tab:gray")
        share.set_xlabel("confidence (probability of the predicted class)")
        share.set_ylabel("pixels")
        figure.tight_layout()
        path = write_atomically(path, figure.savefig)
        plt.close(figure)
        return path


def write_calibration_report(bins: CalibrationBins, output: str | Path, summary: dict, *, title: str = "") -> str:
    """``reliability.png`` and the ECE in ``summary.json`` (updating ``summary``); the line to print."""
    from isnet.evaluation.report import write_summary

    output = Path(output)
    bins.plot(output / "reliability.png", title=title)
    summary.update(ece=bins.ece(), ece_bins=bins.bins)
    write_summary(output, summary)
    return (f"ECE {100 * bins.ece():.2f} % (expected calibration error of the max probability, {bins.bins} "
            f"equal-width bins, {int(bins.count.sum()):,} labelled pixels)")


def nll(logits: Tensor, labels: Tensor, temperature: float | Tensor = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` (P,) under ``softmax(logits / T)`` (P, K)."""
    return float(torch.nn.functional.cross_entropy(logits.double() / temperature, labels))


def fit_temperature(logits: Tensor, labels: Tensor, *, max_iter: int = 100) -> float:
    """The temperature T > 0 minimising the NLL of ``labels`` (P,) under ``softmax(logits / T)`` (P, K).

    LBFGS on log T (so T stays positive), from T = 1, as Guo et al. fit it on a validation set.
    """
    logits, labels = logits.double(), labels.long()
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp())


@torch.no_grad()
def collect_logits(
    model: Predictor | nn.Module,
    dataset: Dataset,
    config: InferenceConfig,
    *,
    max_pixels: int = 1_000_000,
    ignore_index: int = IGNORE_INDEX,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> tuple[Tensor, Tensor]:
    """Logits (P, K) and labels (P,) of labelled pixels of ``dataset``, for :func:`fit_temperature`.

    Each image's logits (single scale: ``config`` must average logits, not probabilities) are
    resized to its label; at most ``max_pixels / len(dataset)`` labelled pixels of each are
    drawn (seeded), so a large split fits in memory and every image counts alike.
    """
    if config.probs_before_resize:
        raise ValueError("a temperature is fitted on logits: use single-scale inference without flip")
    generator = torch.Generator().manual_seed(seed)
    per_image = max(1, max_pixels // max(1, len(dataset)))
    indices = range(len(dataset))
    if progress:
        from isnet.utils.progress import progress_bar

        indices = progress_bar(indices, desc="logits", leave=False)
    predictor = as_predictor(model)
    all_logits, all_labels = [], []
    for index in indices:
        sample = dataset[index]
        images, labels = sample["image"][None].to(device), sample["label"][None].to(device)
        logits = predict(predictor, images, config, output_size=labels.shape[1:])  # one resize, to the label
        logits, labels = logits[0].flatten(1).T.cpu(), labels.flatten().cpu()
        valid = (labels != ignore_index).nonzero()[:, 0]
        chosen = valid[torch.randperm(len(valid), generator=generator)[:per_image]]
        all_logits.append(logits[chosen].float())
        all_labels.append(labels[chosen].long())
    return torch.cat(all_logits), torch.cat(all_labels)


def ece_of_logits(logits: Tensor, labels: Tensor, temperature: float = 1.0, bins: int = ECE_BINS) -> float:
    """The expected calibration error of pixels' logits (P, K) under ``softmax(logits / T)``."""
    calibration = CalibrationBins(bins)
    probs = (logits.double() / temperature).softmax(dim=1)  # (P, K) as one (1, K, P, 1) image
    calibration.update(probs.T[None, :, :, None], labels[None, :, None])
    return calibration.ece()
