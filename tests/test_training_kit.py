"""The training kit: EMA, best-on / early stop (and their resume), the kit's options checked before any work."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from cli_helpers import error_message, isnet, tiny_training
from isnet.evaluation import evaluate
from isnet.training.ema import WeightAverage
from isnet.training.kit import TrainingKit
from isnet.training.loop import train
from isnet.training.run_folder import list_checkpoints
from isnet.utils.distributed import DistributedContext
from isnet.weights.checkpoint import load_model, load_training_checkpoint
from training_helpers import make_data, tiny_config


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return make_data(tmp_path_factory.mktemp("kit") / "data")


def test_weight_average_moves_parameters_and_copies_buffers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    before = {name: value.clone() for name, value in model.state_dict().items()}
    average = WeightAverage(model, decay=0.9)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    model.train()(torch.randn(4, 2))  # BatchNorm's running statistics and counter move
    average.update(model)
    state = average.state_dict()
    for name in ("0.weight", "0.bias", "1.weight", "1.bias"):  # 0.9·θ̄ + 0.1·(θ̄ + 1) = θ̄ + 0.1
        assert torch.allclose(state[name], before[name] + 0.1, atol=1e-6)
    for name in ("1.running_mean", "1.running_var", "1.num_batches_tracked"):
        assert torch.equal(state[name], model.state_dict()[name])
    assert not average.model.training and not any(p.requires_grad for p in average.model.parameters())


def _kit(tmp_path: Path, **options) -> tuple[TrainingKit, nn.Module]:
    config = replace(tiny_config(tmp_path, tmp_path / "run", eval_interval=1, max_iters=10), **options)
    from isnet.model.segmentor import build_model

    model = build_model(config.model)
    (tmp_path / "run").mkdir(exist_ok=True)
    return TrainingKit(config, model, DistributedContext(), tmp_path / "run"), model


def test_best_on_chooses_and_early_stop_counts_and_both_survive_resume(tmp_path):
    kit, model = _kit(tmp_path, best_on="iou:car", early_stop=2)
    summaries = [{"mIoU": 0.1, "iou": {"car": value}} for value in (0.5, 0.6, 0.55, 0.6, 0.58)]
    assert [kit.after_evaluation(summary, it, model) for it, summary in enumerate(summaries[:3], start=1)] == [False] * 3
    with safe_open(str(tmp_path / "run" / "best.safetensors"), "pt") as handle:
        metadata = handle.metadata()
    assert (metadata["iteration"], metadata["best_on"], float(metadata["iou:car"])) == ("2", "iou:car", 0.6)
    resumed, _ = _kit(tmp_path, best_on="iou:car", early_stop=2)
    resumed.load_state_dict(kit.state_dict())  # as a checkpoint carries it
    assert resumed.after_evaluation(summaries[3], 4, model) is True  # 0.6 does not beat 0.6: 2 without improvement
    assert (resumed.stopped_at, resumed.end_iteration(), resumed.best_iteration) == (4, 4, 2)


def test_loss_is_lower_better_and_nan_never_improves(tmp_path):
    kit, model = _kit(tmp_path, best_on="loss", early_stop=1)
    assert kit.after_evaluation({"mIoU": 0.2, "loss": 1.0}, 1, model) is False
    assert kit.after_evaluation({"mIoU": 0.2, "loss": 0.8}, 2, model) is False and kit.best == 0.8
    assert kit.after_evaluation({"mIoU": 0.2, "loss": math.nan}, 3, model) is True


@pytest.mark.slow
def test_ema_run_is_evaluated_saved_beside_the_raw_weights_and_resumes_exactly(data_root, tmp_path):
    options = dict(max_iters=4, checkpoint_interval=2, eval_interval=1, ema=0.5, best_on="loss", early_stop=10)
    summary = train(tiny_config(data_root, tmp_path / "straight", **options))
    straight = tmp_path / "straight"
    average, raw = load_file(str(straight / "model.safetensors")), load_file(str(straight / "model_raw.safetensors"))
    assert average.keys() == raw.keys()
    assert any(not torch.equal(average[key], raw[key]) for key in average)
    ema_model = load_model(straight / "model.safetensors")
    dataset = tiny_config(data_root, straight).data.build("val", train=False)
    assert evaluate(ema_model, dataset, ema_model.config.num_classes).summary().mean_iou == pytest.approx(summary["mIoU"])

    # A run killed after its checkpoint at iteration 2: what it wrote later is gone.
    killed = tmp_path / "killed"
    train(tiny_config(data_root, killed, **options))
    last = list_checkpoints(killed)[-1]
    for late in (last, Path(f"{last}.sha256"), killed / "model.safetensors", killed / "model_raw.safetensors"):
        late.unlink()
    train(tiny_config(data_root, killed, **options))
    for name in ("model.safetensors", "model_raw.safetensors", "best.safetensors"):
        expected, resumed = load_file(str(straight / name)), load_file(str(killed / name))
        assert all(torch.equal(expected[key], resumed[key]) for key in expected), name
    final = [load_training_checkpoint(list_checkpoints(run)[-1])["kit"] for run in (straight, killed)]
    assert {k: v for k, v in final[0].items() if k != "average"} == {k: v for k, v in final[1].items() if k != "average"}


@pytest.mark.parametrize("flags, problem", [
    (["--ema", "1.5"], "--ema must be a decay between 0 and 1"),
    (["--best-on", "iou:bus"], "--best-on iou:bus: no class 'bus'"),
    (["--best-on", "foreground_f1"], "--best-on foreground_f1 is for binary models"),
    (["--early-stop", "3"], "--early-stop 3 needs evaluations during the run"),
])
def test_bad_kit_options_are_one_line_before_any_work(data_root, tmp_path, flags, problem):
    result = isnet(*tiny_training(data_root, tmp_path / "run", *flags))
    lines = error_message(result, "train", 2)
    assert len(lines) == 1 and problem in lines[0], lines
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_early_stop_from_the_command_line_says_so(data_root, tmp_path):
    run = tmp_path / "run"
    result = isnet(*tiny_training(data_root, run, "--best-on", "iou:sky", "--early-stop", "1", "--set", "eval_interval=1",
                                  "--set", "lr=1e-9", max_iters=8))
    assert result.returncode == 0, result.stderr[-2000:]
    printed = [line for line in result.stdout.splitlines() if line.startswith("iteration ")]
    stop = [line for line in result.stdout.splitlines() if line.startswith("early stop at iteration ")]
    assert stop, result.stdout  # at lr 1e-9 the sky's IoU cannot improve on its first value
    stopped_at = int(stop[0].split()[4].rstrip(":"))
    assert stopped_at == 2 and len(printed) == 2
    assert json.loads((run / "config.json").read_text())["early_stop"] == 1
    again = isnet(*tiny_training(data_root, run, "--best-on", "iou:sky", "--early-stop", "1", "--set",
                                 "eval_interval=1", "--set", "lr=1e-9", max_iters=8))
    assert again.returncode == 0 and "stopped early at iteration 2; nothing is left to train" in again.stdout
