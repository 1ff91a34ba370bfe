"""--tracker mlflow / wandb / tensorboard: one run, read back with each tracker's own reader, no network."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from cli_helpers import error_message, isnet, tiny_training
from isnet.training.trackers import flat_parameters, local_folder
from isnet.utils.errors import report_error
from training_helpers import make_data

pytest.importorskip("mlflow")
pytest.importorskip("wandb")
pytest.importorskip("tensorboard")


def wandb_records(path: Path):
    """The records of a W&B transaction log (``run-*.wandb``): a 7-byte header, then LevelDB-style log blocks
    (7-byte record headers: checksum, length, type; a record split over blocks as first/middle/last)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, position, pending = 32768, 7, b""
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a header is padding
            position += block - position % block
            continue
        _checksum, length, kind = struct.unpack("<IHB", data[position:position + 7])
        pending += data[position + 7:position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a full record, or the last part of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("trackers")
    data, run, tracking = make_data(root / "data"), root / "run", root / "tracking"
    result = isnet(*tiny_training(data, run, "--tracker", "mlflow", "--tracker", "wandb", "--tracker", "tensorboard",
                                  "--tracking-uri", tracking, "--ema", "0.9", "--set", "eval_interval=2"),
                   WANDB_MODE="offline", WANDB_SILENT="true", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return run, tracking


@pytest.mark.slow
def test_mlflow_holds_the_config_metrics_model_report_and_overlays(tracked_run, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow ≥ 3.7 asks readers of a file store to opt in
    import mlflow
    from mlflow.tracking import MlflowClient

    run, tracking = tracked_run
    mlflow.set_tracking_uri(tracking.resolve().as_uri())
    runs = mlflow.search_runs(experiment_names=["Default"])
    assert len(runs) == 1
    row = runs.iloc[0]
    config = json.loads((run / "config.json").read_text())
    assert row["params.lr"] == str(config["lr"]) and row["params.ema"] == "0.9" and row["params.loss"] == "ce"
    assert row["params.model.backbone.base_channels"] == "8" and row["params.data.crop_size"] == "[40, 56]"
    client = MlflowClient()
    history = client.get_metric_history(row.run_id, "val/mIoU")
    assert [point.step for point in history] == [2, 4]
    final = json.loads((run / "eval" / "summary.json").read_text())
    assert history[-1].value == pytest.approx(final["mIoU"])
    assert [point.step for point in client.get_metric_history(row.run_id, "train/loss")] == [1, 2, 3, 4]
    assert client.get_metric_history(row.run_id, "val/boundary_iou")[-1].value == pytest.approx(
        final["boundary_iou"]["mean"])
    artefacts = {item.path for item in client.list_artifacts(row.run_id)}
    assert {"model.safetensors", "model_raw.safetensors", "best.safetensors", "eval", "metrics.csv"} <= artefacts
    assert "eval/summary.json" in {item.path for item in client.list_artifacts(row.run_id, "eval")}
    overlays = client.list_artifacts(row.run_id, "overlays/iteration_2")
    assert len(overlays) == 3 and all(item.path.endswith(".png") for item in overlays)


@pytest.mark.slow
def test_wandb_offline_files_hold_the_config_metrics_images_and_model(tracked_run):
    run, tracking = tracked_run
    [log] = list((tracking / "wandb").glob("offline-run-*/run-*.wandb"))
    config, history = {}, []
    for record in wandb_records(log):
        kind = record.WhichOneof("record_type")
        if kind == "config":
            config.update({item.key: json.loads(item.value_json) for item in record.config.update})
        elif kind == "history":
            history.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                            for item in record.history.item})
    assert config["lr"] == 0.01 and config["ema"] == 0.9 and config["model"]["num_classes"] == 6
    evaluations = [row for row in history if "val/mIoU" in row]
    assert [row["_step"] for row in evaluations] == [2, 4]
    final = json.loads((run / "eval" / "summary.json").read_text())
    assert evaluations[-1]["val/mIoU"] == pytest.approx(final["mIoU"])
    assert [row["_step"] for row in history if "train/loss" in row] == [1, 2, 3, 4]
    files = log.parent / "files"
    assert (files / "model.safetensors").read_bytes() == (run / "model.safetensors").read_bytes()
    assert (files / "eval" / "summary.json").exists()
    assert len(list((files / "media" / "images").glob("*.png"))) == 6  # 3 overlays at each of 2 evaluations


@pytest.mark.slow
def test_tensorboard_holds_the_scalars_the_overlays_and_the_config(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, tracking = tracked_run
    events = EventAccumulator(str(tracking / "tensorboard"), size_guidance={"images": 0}).Reload()
    assert [event.step for event in events.Scalars("val/mIoU")] == [2, 4]
    assert [event.step for event in events.Scalars("train/loss")] == [1, 2, 3, 4]
    overlays = [tag for tag in events.Tags()["images"] if tag.startswith("overlays/")]
    assert len(overlays) == 3 and all(len(events.Images(tag)) == 2 for tag in overlays)
    assert "config" in " ".join(events.Tags()["tensors"])


def test_parameters_are_every_field_dotted_and_local_uris_are_folders(tmp_path):
    flat = flat_parameters(json.dumps({"lr": 0.01, "model": {"backbone": {"depth": 18}}, "output_dir": "runs/x"}))
    assert flat == {"lr": "0.01", "model.backbone.depth": "18", "output_dir": "runs/x"}
    assert local_folder(str(tmp_path)) == tmp_path == local_folder(tmp_path.as_uri())
    assert local_folder("http://127.0.0.1:5000") is None


def test_a_tracker_that_is_not_installed_names_its_extra(capsys):
    status = report_error(ModuleNotFoundError("--tracker wandb needs wandb", name="wandb"), "isnet train")
    assert status == 1 and "pip install 'isnet[wandb]'" in capsys.readouterr().err


def test_an_unknown_tracker_is_refused(tmp_path):
    result = isnet(*tiny_training(tmp_path / "data", tmp_path / "run", "--tracker", "neptune"))
    assert "--tracker" in error_message(result, "train", 2)[0]
