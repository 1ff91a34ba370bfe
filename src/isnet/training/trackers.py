"""``--tracker mlflow|wandb|tensorboard``: a run's parameters, metrics, pictures and model in the trackers teams run.

Each tracker gets the full TrainConfig as parameters at the start, the training losses at
every log step, the evaluation scores (mIoU, boundary IoU, per-class IoU, validation loss)
at every evaluation with a few validation overlays as images, and at the end the model
files and the evaluation report as artefacts. ``tracking_uri`` says where: MLflow's
tracking URI (a server's ``http://...``, or a local folder: a file store), and when it is a
local folder W&B writes in it too (``wandb/``) and TensorBoard in its ``tensorboard/``.
Without it: MLflow in ``<output_dir>/mlruns``, W&B in ``<output_dir>/wandb`` (W&B's own
settings, such as ``WANDB_MODE=offline``, apply), TensorBoard in ``<output_dir>/tensorboard``.
A resumed run goes on in the same MLflow and W&B run (their ids are part of the checkpoint).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def local_folder(uri: str | None) -> Path | None:
    """The folder a tracking URI names when it is local (a path or ``file:``), else None."""
    if uri is None:
        return None
    if uri.startswith("file:"):
        from urllib.parse import unquote, urlparse

        return Path(unquote(urlparse(uri).path))
    return None if "://" in uri else Path(uri)


def flat_parameters(config_json: str) -> dict[str, str]:
    """The TrainConfig as ``{"model.backbone.depth": "18", "lr": "0.01", ...}``: every field, dotted."""
    flat: dict[str, str] = {}

    def walk(value: Any, prefix: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{prefix}{key}.")
        else:
            flat[prefix.rstrip(".")] = json.dumps(value) if not isinstance(value, str) else value

    walk(json.loads(config_json), "")
    return flat


class MLflowTracker:
    def __init__(self, uri: str | None, output_dir: Path, run_id: str | None) -> None:
        import mlflow

        folder = local_folder(uri) if uri else output_dir / "mlruns"
        if folder is not None:  # a local file store, which MLflow ≥ 3.7 asks to opt in to
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            uri = folder.resolve().as_uri()
        self.mlflow = mlflow
        mlflow.set_tracking_uri(uri)
        self.run = mlflow.start_run(run_id=run_id, run_name=None if run_id else output_dir.name)
        self.run_id = self.run.info.run_id

    def log_parameters(self, config_json: str) -> None:
        self.mlflow.log_params(flat_parameters(config_json))

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.mlflow.log_metrics(dict(metrics), step=step)

    def log_images(self, paths: Sequence[Path], step: int) -> None:
        for path in paths:
            self.mlflow.log_artifact(str(path), artifact_path=f"overlays/iteration_{step}")

    def log_files(self, paths: Sequence[Path]) -> None:
        for path in paths:
            if path.is_dir():
                self.mlflow.log_artifacts(str(path), artifact_path=path.name)
            else:
                self.mlflow.log_artifact(str(path))

    def finish(self) -> None:
        self.mlflow.end_run()


class WandbTracker:
    def __init__(self, uri: str | None, output_dir: Path, run_id: str | None) -> None:
        import wandb

        folder = local_folder(uri) or output_dir
        folder.mkdir(parents=True, exist_ok=True)
        self.wandb = wandb
        self.run = wandb.init(project="isnet", name=output_dir.name, dir=str(folder), id=run_id,
                              resume="allow" if run_id else None)
        self.run_id = self.run.id

    def log_parameters(self, config_json: str) -> None:
        self.run.config.update(json.loads(config_json), allow_val_change=True)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.run.log(dict(metrics), step=step)

    def log_images(self, paths: Sequence[Path], step: int) -> None:
        self.run.log({"overlays": [self.wandb.Image(str(path), caption=path.stem) for path in paths]}, step=step)

    def log_files(self, paths: Sequence[Path]) -> None:
        for path in paths:
            files = sorted(path.rglob("*")) if path.is_dir() else [path]
            for file in files:
                if file.is_file():
                    self.run.save(str(file), base_path=str(path.parent), policy="now")

    def finish(self) -> None:
        self.run.finish()


class TensorBoardTracker:
    def __init__(self, uri: str | None, output_dir: Path, run_id: str | None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str((local_folder(uri) or output_dir) / "tensorboard"))
        self.run_id = None

    def log_parameters(self, config_json: str) -> None:
        table = "\n".join(f"| {key} | {value} |" for key, value in sorted(flat_parameters(config_json).items()))
        self.writer.add_text("config", "| field | value |\n|---|---|\n" + table)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def log_images(self, paths: Sequence[Path], step: int) -> None:
        import numpy as np
        from PIL import Image

        for path in paths:
            pixels = np.asarray(Image.open(path).convert("RGB"))
            self.writer.add_image(f"overlays/{path.stem}", pixels, step, dataformats="HWC")
        self.writer.flush()

    def log_files(self, paths: Sequence[Path]) -> None:
        return None  # TensorBoard keeps no files; they stay in the run folder

    def finish(self) -> None:
        self.writer.close()


TRACKER_CLASSES = {"mlflow": MLflowTracker, "wandb": WandbTracker, "tensorboard": TensorBoardTracker}


class Trackers:
    """The run's trackers together (none: every call does nothing); only the main process logs."""

    def __init__(self, names: Sequence[str], uri: str | None, output_dir: Path, run_ids: Mapping[str, str],
                 enabled: bool) -> None:
        self.trackers = {name: TRACKER_CLASSES[name](uri, output_dir, run_ids.get(name))
                         for name in names} if enabled else {}

    def run_ids(self) -> dict[str, str]:
        return {name: tracker.run_id for name, tracker in self.trackers.items() if tracker.run_id}

    def log_parameters(self, config_json: str) -> None:
        for tracker in self.trackers.values():
            tracker.log_parameters(config_json)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        finite = {name: float(value) for name, value in metrics.items() if value == value}  # NaN: not logged
        for tracker in self.trackers.values():
            tracker.log_metrics(finite, step)

    def log_images(self, paths: Sequence[Path], step: int) -> None:
        for tracker in self.trackers.values():
            tracker.log_images(paths, step)

    def log_files(self, paths: Sequence[Path]) -> None:
        existing = [path for path in paths if path.exists()]
        for tracker in self.trackers.values():
            tracker.log_files(existing)

    def finish(self) -> None:
        for tracker in self.trackers.values():
            tracker.finish()
