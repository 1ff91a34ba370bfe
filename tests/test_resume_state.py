"""Exact resume by construction, and honest starts: what a checkpoint holds besides the weights (CUDA
random states of every device, the GradScaler, the run as it started), what a resume that changes
the configuration or the data says or refuses, and ``init_from`` weights of another architecture.

The CUDA path is checked without a GPU: the states a machine with two devices would give are
saved in a real checkpoint file, read back, and handed to ``torch.cuda.set_rng_state`` per device.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cli_helpers import error_message, isnet, tiny_training
from isnet.data import synthetic
from isnet.model.segmentor import build_model
from isnet.training.loop import train
from isnet.training.run_folder import list_checkpoints, release_run_folder, resume, save_run_checkpoint
from isnet.training.run_state import CHANGES_FILE, started_record
from isnet.utils.distributed import DistributedContext
from isnet.utils.errors import CheckpointError, ConfigError
from isnet.weights.checkpoint import load_training_checkpoint, save_model, save_training_checkpoint
from isnet.weights.transfer import class_indexed_keys, transfer_classes

sys.path.insert(0, str(Path(__file__).parent))
from training_helpers import make_data, tiny_config  # noqa: E402

ONE_PROCESS = DistributedContext()


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return make_data(tmp_path_factory.mktemp("scenes"))


def trained_scaler() -> torch.amp.GradScaler:
    """A GradScaler after three fp16-style steps: its growth tracker counts them."""
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=512.0, growth_interval=5)
    for _ in range(3):
        scaler.scale((weight**2).sum()).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad()
    assert scaler.state_dict()["_growth_tracker"] == 3
    return scaler


def test_checkpoint_keeps_cuda_states_of_every_device_and_the_scaler_and_a_resume_restores_them(
        data_root, tmp_path, monkeypatch):
    config = tiny_config(data_root, tmp_path / "run")
    run = Path(config.output_dir)
    model = build_model(config.model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = trained_scaler()
    devices = [torch.randint(0, 256, (16,), dtype=torch.uint8, generator=torch.Generator().manual_seed(k))
               for k in range(2)]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a machine with two GPUs
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [state.clone() for state in devices])
    start = started_record(config, synthetic.CLASSES)
    save_run_checkpoint(run, model, optimizer, 2, ONE_PROCESS, keep=2, scaler=scaler, started=start)

    state = load_training_checkpoint(list_checkpoints(run)[-1])  # the file, read as a resume reads it
    assert [[s.tolist() for s in process] for process in state["cuda_rng"]] == [[s.tolist() for s in devices]]
    assert state["scaler"] == scaler.state_dict() and state["started"] == start

    restored: dict[int, torch.Tensor] = {}
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda value, device: restored.__setitem__(device, value))
    fresh = torch.amp.GradScaler("cpu", init_scale=512.0, growth_interval=5)
    messages: list[str] = []
    try:
        iteration, started = resume(run, build_model(config.model), torch.optim.SGD(model.parameters(), lr=0.1),
                                    ONE_PROCESS, messages.append, scaler=fresh, start=start)
        assert (iteration, started) == (2, start) and not messages
        assert sorted(restored) == [0, 1] and all(torch.equal(restored[k], devices[k]) for k in (0, 1))
        assert fresh.state_dict() == scaler.state_dict()  # the loss scale and its growth tracker

        # The same checkpoint where there is no CUDA: the CPU state is restored, and the run says what is lost.
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        restored.clear()
        resume(run, build_model(config.model), torch.optim.SGD(model.parameters(), lr=0.1), ONE_PROCESS,
               messages.append, scaler=torch.amp.GradScaler("cpu", enabled=False), start=start)
        assert not restored
        assert messages == ["note: the checkpoint holds the CUDA random states of 2 device(s) and this machine has no "
                            "CUDA: random draws continue from the CPU state only (not bitwise the run on a GPU)"]
    finally:
        release_run_folder(run)


def test_fp16_resume_from_a_checkpoint_without_scaler_state_says_the_scale_starts_again(data_root, tmp_path):
    config = tiny_config(data_root, tmp_path / "run")
    model = build_model(config.model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    start = started_record(config, synthetic.CLASSES)
    save_run_checkpoint(Path(config.output_dir), model, optimizer, 2, ONE_PROCESS, keep=2,
                        scaler=torch.amp.GradScaler("cpu", enabled=False), started=start)  # an fp32 run
    messages: list[str] = []
    scaler = torch.amp.GradScaler("cpu", init_scale=512.0)
    try:
        resume(Path(config.output_dir), model, optimizer, ONE_PROCESS, messages.append, scaler=scaler, start=start)
    finally:
        release_run_folder(config.output_dir)
    assert scaler.get_scale() == 512.0
    assert any("no GradScaler state" in message for message in messages), messages


def test_a_resume_names_changed_fields_and_keeps_config_json_as_started(data_root, tmp_path, capsys):
    run = tmp_path / "run"
    train(tiny_config(data_root, run, max_iters=2, lr=0.01))
    as_started = (run / "config.json").read_bytes()
    capsys.readouterr()
    train(tiny_config(data_root, run, max_iters=4, lr=0.02))
    err = capsys.readouterr().err
    assert "resuming with 2 change(s) since the run started (config.json keeps it as started):\n  lr: 0.01 → 0.02\n" \
           "  max_iters: 2 → 4" in err
    assert (run / "config.json").read_bytes() == as_started
    assert (run / CHANGES_FILE).read_text() == ("resumed at iteration 2: lr: 0.01 → 0.02\n"
                                                "resumed at iteration 2: max_iters: 2 → 4\n")
    newest = load_training_checkpoint(list_checkpoints(run)[-1])
    assert newest["iteration"] == 4 and newest["started"]["config"] == as_started.decode()


def test_a_checkpoint_of_an_older_version_resumes_and_config_json_stands_for_its_start(data_root, tmp_path, capsys):
    run = tmp_path / "run"
    train(tiny_config(data_root, run, max_iters=2))
    newest = list_checkpoints(run)[-1]
    state = load_training_checkpoint(newest)
    old = {key: state[key] for key in ("model", "optimizer", "iteration", "rng", "config")}  # what 0.x wrote
    save_training_checkpoint(newest, old)
    capsys.readouterr()
    train(tiny_config(data_root, run, max_iters=4))
    err = capsys.readouterr().err
    assert "max_iters: 2 → 4" in err
    assert load_training_checkpoint(list_checkpoints(run)[-1])["started"]["config"] == (run / "config.json").read_text()


def test_a_resume_on_other_data_is_refused_unless_allowed(data_root, tmp_path, capsys):
    run = tmp_path / "run"
    train(tiny_config(data_root, run, max_iters=2))
    other = Path(shutil.copytree(data_root, tmp_path / "other"))
    record = (other / "dataset.json").read_text()  # the folder's record, which names the classes
    (other / "dataset.json").write_text(record.replace('"road"', '"street"'))
    checkpoints = [path.read_bytes() for path in list_checkpoints(run)]
    with pytest.raises(ConfigError) as refused:
        train(tiny_config(other, run, max_iters=4))
    message = str(refused.value)
    assert message.startswith(f"{run}: this run started on other data than it would resume on (as started → now):")
    assert f"data.root: {data_root.resolve()} → {other.resolve()}" in message
    assert "classes: 6 classes: sky, building, road, " in message and "→ 6 classes: sky, building, street, " in message
    assert "--allow-changed-data" in message
    assert [path.read_bytes() for path in list_checkpoints(run)] == checkpoints  # nothing trained, nothing written

    capsys.readouterr()
    train(tiny_config(other, run, max_iters=4), allow_changed_data=True)
    err = capsys.readouterr().err
    assert f"data.root: {data_root.resolve()} → {other.resolve()}" in err
    assert load_training_checkpoint(list_checkpoints(run)[-1])["iteration"] == 4


def foreign_source(tmp_path: Path, data_root: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """A tiny ResNet-18 ISNet's weights, with its configuration and record."""
    model = build_model(tiny_config(data_root, tmp_path).model)
    model.dataset = synthetic.RECORD
    return save_model(model, tmp_path / "resnet18.safetensors"), model.state_dict()


def test_init_from_weights_of_another_architecture_is_refused_unless_forced(data_root, tmp_path, capsys):
    source, source_state = foreign_source(tmp_path, data_root)
    config = tiny_config(data_root, tmp_path / "run", max_iters=1, init_from=str(source))
    config = replace(config, model=config.model.replace(backbone=replace(config.model.backbone, depth=50)))
    target = build_model(config.model).state_dict()
    fitting = sum(key in source_state and source_state[key].shape == value.shape for key, value in target.items())
    assert fitting * 2 < len(target)  # a ResNet-50 takes few of a ResNet-18's tensors

    with pytest.raises(CheckpointError) as refused:
        train(config)
    message = str(refused.value)
    assert message.startswith(f"{source}: only {fitting} of the model's {len(target)} tensors fit these weights; "
                              f"{len(target) - fitting} would be re-initialised, e.g. ")
    first = next(key for key, value in target.items() if key not in source_state or source_state[key].shape != value.shape)
    assert f"{first} (file " in message
    assert "The file is for resnet-18 backbone (8 base channels), isnet head of 16 channels, 6 classes; the model " \
           "is resnet-50 backbone (8 base channels), isnet head of 16 channels, 6 classes" in message
    assert "--init-from-partial" in message
    assert not list_checkpoints(tmp_path / "run")

    capsys.readouterr()
    train(replace(config, init_from_partial=True))
    err = capsys.readouterr().err
    assert f"weights from {source}: {fitting} of the model's {len(target)} tensors loaded, " \
           f"{len(target) - fitting} freshly initialised" in err
    assert f"... and {len(target) - fitting - 12} more re-initialised" in err


def test_the_summary_keeps_no_classifier_rows_when_the_classifiers_do_not_fit(data_root, tmp_path):
    source = build_model(tiny_config(data_root, tmp_path).model)
    wider = tiny_config(data_root, tmp_path).model
    head_only = build_model(wider.replace(head=replace(wider.head, channels=24)))  # the auxiliary classifier still fits
    _, partly = transfer_classes(head_only, source.state_dict(), synthetic.CLASSES, synthetic.CLASSES)
    keys, state = class_indexed_keys(head_only), head_only.state_dict()
    pairs = list(zip(keys[0::2], keys[1::2]))  # a classifier's rows are kept where its weight and bias both fit
    fitting = [key for pair in pairs if all(source.state_dict()[k].shape == state[k].shape for k in pair) for key in pair]
    assert fitting == ["aux_head.4.weight", "aux_head.4.bias"]  # the head's classifiers see 24 channels, not 16
    assert partly.tensors == fitting and partly.whole == [key for key in keys if key not in fitting]
    assert partly.summary().startswith(f"  classes kept from the source weights (6), in {len(fitting)} of 6 classifier "
                                       f"tensors (kept in {', '.join(fitting)}; re-initialised whole, of another shape: "
                                       f"{', '.join(partly.whole)}): sky, building, ")
    target = build_model(wider.replace(head=replace(wider.head, channels=24), aux=replace(wider.aux, channels=12)))
    _, transfer = transfer_classes(target, source.state_dict(), synthetic.CLASSES, synthetic.CLASSES)
    assert transfer.kept == [] and transfer.reinitialised == list(synthetic.CLASSES) and len(transfer.whole) == 6
    assert transfer.summary().startswith("  no classifier row kept: the file's classifiers do not fit the model's")
    _, same = transfer_classes(source, source.state_dict(), synthetic.CLASSES, synthetic.CLASSES)
    assert len(same.kept) == len(synthetic.CLASSES) and len(same.tensors) == 6 and not same.whole


@pytest.mark.slow
def test_resume_and_init_from_as_a_user_runs_them(data_root, tmp_path):
    run = tmp_path / "run"
    started = isnet(*tiny_training(data_root, run, max_iters=2))
    assert started.returncode == 0, started.stderr[-3000:]
    as_started = (run / "config.json").read_bytes()

    resumed = isnet(*tiny_training(data_root, run, "--set", "lr=0.02", max_iters=4))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "  max_iters: 2 → 4" in resumed.stderr and "lr: 0.01 → 0.02" in resumed.stderr
    assert (run / "config.json").read_bytes() == as_started

    other = Path(shutil.copytree(data_root, tmp_path / "other"))
    refused = isnet(*tiny_training(other, run, max_iters=6))
    lines = error_message(refused, "train", 2)  # a setting refused, like a bad option
    assert lines[0].endswith(f"{run}: this run started on other data than it would resume on (as started → now):")
    assert f"  data.root: {data_root.resolve()} → {other.resolve()}" in lines
    allowed = isnet(*tiny_training(other, run, "--allow-changed-data", max_iters=6))
    assert allowed.returncode == 0, allowed.stderr[-3000:]
    assert len(load_file(str(run / "model.safetensors"))) > 0

    source, _ = foreign_source(tmp_path, data_root)
    deeper = ("--init-from", source, "--set", "model.backbone.depth=50")
    foreign = isnet(*tiny_training(data_root, tmp_path / "fine", *deeper, max_iters=1))
    assert "tensors fit these weights" in error_message(foreign, "train", 1)[0]
    forced = isnet(*tiny_training(data_root, tmp_path / "fine", *deeper, "--init-from-partial", max_iters=1))
    assert forced.returncode == 0, forced.stderr[-3000:]
    assert "tensors loaded" in forced.stderr
    help_text = isnet("train", "--help").stdout
    assert "--allow-changed-data" in help_text and "--init-from-partial" in help_text
