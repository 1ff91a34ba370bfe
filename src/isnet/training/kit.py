"""The training loop's hooks for the practitioner's kit: EMA, best-on / early stop, trackers.

:class:`TrainingKit` is what :func:`isnet.training.loop.train` calls at each step, log,
evaluation and at the end; its state (the weight average, the best score and when it was
reached, the evaluations since, the trackers' run ids) is part of every checkpoint, so that
a resumed run chooses, stops and averages as an uninterrupted one does.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from isnet.training.ema import WeightAverage
from isnet.training.kit_options import improves, metric_value
from isnet.training.trackers import Trackers
from isnet.utils.distributed import DistributedContext, from_first_process
from isnet.weights.checkpoint import save_model

TRACKER_MODULES = {"mlflow": "mlflow", "wandb": "wandb", "tensorboard": "tensorboard"}


def require_trackers(names: Sequence[str]) -> None:
    """A ModuleNotFoundError naming the module (the error boundary names its extra) before any work."""
    for name in names:
        module = TRACKER_MODULES[name]
        if importlib.util.find_spec(module) is None:
            raise ModuleNotFoundError(f"--tracker {name} needs {module}", name=module)


class TrainingKit:
    """EMA, model selection and trackers of one run (see the module docstring)."""

    def __init__(self, config: Any, model: nn.Module, context: DistributedContext, output_dir: Path) -> None:
        require_trackers(config.trackers)
        self.config, self.context, self.output_dir = config, context, output_dir
        self.average = WeightAverage(model, config.ema) if config.ema is not None else None
        self.best: float | None = None
        self.best_iteration = 0
        self.since_best = 0
        self.stopped_at: int | None = None
        self.final_summary: dict[str, Any] | None = None
        self.trackers: Trackers | None = None
        self.run_ids: dict[str, str] = {}
        self.resumed = False

    # Checkpointed state.

    def state_dict(self) -> dict[str, Any]:
        trackers = self.trackers.run_ids() if self.trackers is not None else self.run_ids
        return {"best": self.best, "best_iteration": self.best_iteration, "since_best": self.since_best,
                "stopped_at": self.stopped_at, "run_ids": trackers,
                "average": self.average.state_dict() if self.average is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_iteration = state.get("best"), state.get("best_iteration", 0)
        self.since_best, self.stopped_at = state.get("since_best", 0), state.get("stopped_at")
        self.run_ids = dict(state.get("run_ids") or {})
        self.resumed = True
        if self.stopped_at is not None and self.context.is_main:
            print(f"this run stopped early at iteration {self.stopped_at}; nothing is left to train", flush=True)
        if self.average is not None and state.get("average") is not None:
            self.average.load_state_dict(state["average"])

    # Hooks of the loop.

    def begin(self, model: nn.Module) -> None:
        """A new run's start: the average begins as the model's weights as training starts (after ``init_from``)."""
        if self.average is not None:
            self.average.load_state_dict(model.state_dict())

    def tracked(self) -> Trackers:
        """The trackers, opened at their first use (after resuming: a resumed run logs into its own runs)."""
        if self.trackers is None:
            self.trackers = Trackers(self.config.trackers, self.config.tracking_uri, self.output_dir, self.run_ids,
                                     self.context.is_main)
            if not self.resumed:
                self.trackers.log_parameters(self.config.to_json())
        return self.trackers

    def end_iteration(self) -> int:
        """The iteration the run ends at: ``max_iters``, or where early stopping stopped it."""
        return self.stopped_at if self.stopped_at is not None else self.config.max_iters

    def after_step(self, model: nn.Module) -> None:
        if self.average is not None:
            self.average.update(model)

    def evaluated_model(self, model: nn.Module) -> nn.Module:
        """The weight average when there is one, else ``model``."""
        return self.average.model if self.average is not None else model

    def log(self, iteration: int, lr: float, losses: dict[str, float]) -> None:
        metrics = {"lr": lr, **{f"train/loss_{name}" if name != "total" else "train/loss": value
                                for name, value in losses.items()}}
        self.tracked().log_metrics(metrics, iteration)

    def after_evaluation(self, summary: dict[str, Any], iteration: int, model: nn.Module,
                         overlays: Sequence[Path] = ()) -> bool:
        """Log the scores; save ``best.safetensors`` on improvement of ``best_on``; True to stop early."""
        value = metric_value(summary, self.config.best_on)
        self.tracked().log_metrics(evaluation_metrics(summary), iteration)
        self.tracked().log_images(overlays, iteration)
        if self.stopped_at is not None:  # a run that stopped early, resumed: its choice is made
            return True
        improved = improves(value, self.best, self.config.best_on)
        if improved:
            self.best, self.best_iteration, self.since_best = value, iteration, 0
            if self.context.is_main:
                save_model(self.evaluated_model(model), self.output_dir / "best.safetensors",
                           extra_metadata={"iteration": str(iteration), "best_on": self.config.best_on,
                                           self.config.best_on: str(value), "mIoU": str(summary["mIoU"])})
        else:
            self.since_best += 1
        patience = self.config.early_stop
        stop = bool(patience and not improved and self.since_best >= patience and iteration < self.config.max_iters)
        if from_first_process(stop):  # the first process's scores decide for all
            self.stopped_at, self.final_summary = iteration, summary
            if self.context.is_main:
                print(f"early stop at iteration {iteration}: {self.config.best_on} has not improved in {patience} "
                      f"evaluations (best {self.best:.4f} at iteration {self.best_iteration}, in best.safetensors)",
                      flush=True)
            return True
        return False

    def save_final(self, model: nn.Module) -> None:
        """``model.safetensors``: the weight average when there is one (then the raw weights in ``model_raw.safetensors``)."""
        if not self.context.is_main:
            return
        if self.average is not None:
            save_model(model, self.output_dir / "model_raw.safetensors")
            save_model(self.average.model, self.output_dir / "model.safetensors",
                       extra_metadata={"ema_decay": str(self.config.ema)})
        else:
            save_model(model, self.output_dir / "model.safetensors")
        if self.config.trackers:
            self.tracked().log_files([self.output_dir / name for name in
                                     ("model.safetensors", "model_raw.safetensors", "best.safetensors", "eval",
                                      "metrics.csv", "curves.png", "config.json")])
            self.trackers.finish()


def evaluation_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """The numbers of an evaluation summary, flat: ``val/mIoU``, ``val/boundary_iou``, ``val/iou/<class>``, ..."""
    metrics = {f"val/{name}": float(summary[name]) for name in
               ("mIoU", "pixel_accuracy", "mean_accuracy", "loss", "foreground_iou", "foreground_f1") if name in summary}
    if "boundary_iou" in summary:
        metrics["val/boundary_iou"] = float(summary["boundary_iou"]["mean"])
    for name, value in summary.get("iou", {}).items():
        metrics[f"val/iou/{re.sub(r'[^A-Za-z0-9_. -]', '_', name)}"] = value  # the characters trackers allow
    return metrics


OVERLAYS = 3  # validation images drawn for the trackers at each evaluation


def validation_overlays(model: nn.Module, dataset: Any, config: Any, folder: Path) -> list[Path]:
    """With trackers, the first :data:`OVERLAYS` validation images with the model's prediction and a legend."""
    if not config.trackers or dataset.info.in_channels != 3:
        return []
    import torch.nn.functional as F

    from isnet.inference.engine import predict
    from isnet.utils.visualize import save_overlay_with_legend

    paths = []
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for index in range(min(OVERLAYS, len(dataset))):
            image, _ = dataset.load(index)
            sample = dataset[index]
            scores = predict(model, sample["image"][None].to(device), config.eval)
            scores = F.interpolate(scores, size=image.shape[:2], mode="bilinear", align_corners=False)
            labels = scores.argmax(1)[0].cpu().numpy()
            paths.append(save_overlay_with_legend(folder / f"{Path(sample['path']).stem}.png", image, labels,
                                                  dataset.info.classes, dataset.info.palette))
    model.train(was_training)
    return paths
