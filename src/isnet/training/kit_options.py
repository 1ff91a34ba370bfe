"""The rules of the training kit's options (loss, ema, best_on, early_stop, trackers), checked before any work."""

from __future__ import annotations

import math
from typing import Any

from isnet.training.loss_terms import parse_loss
from isnet.utils.errors import ConfigError

BEST_ON_CHOICES = ("mIoU", "iou:CLASS", "foreground_f1", "boundary_iou", "loss")
TRACKERS = ("mlflow", "wandb", "tensorboard")


def check_kit_options(config: Any) -> None:
    """Raise a ConfigError naming the field for a bad loss expression, decay, metric, patience or tracker."""
    parse_loss(config.loss)
    ema = config.ema
    if ema is not None and (isinstance(ema, bool) or not isinstance(ema, (int, float)) or not 0 < ema < 1):
        raise ConfigError(f"must be a decay between 0 and 1 (exclusive) such as 0.999, not {ema!r}", field="ema")
    check_best_on(config.best_on, num_classes=config.model.num_classes)
    if isinstance(config.early_stop, bool) or not isinstance(config.early_stop, int) or config.early_stop < 0:
        raise ConfigError(f"must be an integer ≥ 0 (evaluations without improvement; 0: never), "
                          f"not {config.early_stop!r}", field="early_stop")
    if config.early_stop and not config.eval_interval:
        raise ConfigError(f"{config.early_stop} needs evaluations during the run: set eval_interval > 0",
                          field="early_stop")
    trackers = tuple(config.trackers)
    for tracker in trackers:
        if tracker not in TRACKERS:
            raise ConfigError(f"names {tracker!r}; choose among {', '.join(TRACKERS)}", field="trackers")
    if len(set(trackers)) != len(trackers):
        raise ConfigError(f"names a tracker twice: {', '.join(trackers)}", field="trackers")
    if config.tracking_uri is not None and (not isinstance(config.tracking_uri, str) or not config.tracking_uri):
        raise ConfigError(f"must be a non-empty text, not {config.tracking_uri!r}", field="tracking_uri")


def check_best_on(best_on: Any, *, num_classes: int, classes: tuple[str, ...] | None = None) -> None:
    """``best_on`` is one of :data:`BEST_ON_CHOICES`; with ``classes``, ``iou:CLASS`` names one of them."""
    if not isinstance(best_on, str) or (best_on not in BEST_ON_CHOICES and not best_on.startswith("iou:")):
        raise ConfigError(f"is {best_on!r}; choose one of {', '.join(BEST_ON_CHOICES)}", field="best_on")
    if best_on == "iou:CLASS" or best_on == "iou:":
        raise ConfigError("iou:CLASS takes a class name, e.g. iou:car", field="best_on")
    if best_on == "foreground_f1" and num_classes != 2:
        raise ConfigError(f"foreground_f1 is for binary models (2 classes), not {num_classes}", field="best_on")
    if classes is not None and best_on.startswith("iou:") and best_on[4:] not in classes:
        raise ConfigError(f"{best_on}: no class {best_on[4:]!r}; the classes: {', '.join(classes)}", field="best_on")


def metric_value(summary: dict[str, Any], best_on: str) -> float:
    """The evaluation summary's value of ``best_on`` (NaN when the summary lacks it)."""
    if best_on.startswith("iou:"):
        value = summary.get("iou", {}).get(best_on[4:], math.nan)
    elif best_on == "boundary_iou":
        value = summary.get("boundary_iou", {}).get("mean", math.nan)
    elif best_on == "loss":
        value = summary.get("loss", math.nan)
    else:
        value = summary.get(best_on, math.nan)
    return float(value)


def improves(value: float, best: float | None, best_on: str) -> bool:
    """Whether ``value`` beats ``best`` (lower is better for the loss, higher for the scores); NaN never does."""
    if math.isnan(value):
        return False
    if best is None:
        return True
    return value < best if best_on == "loss" else value > best
