"""Training runs from the command line on hostile conditions: two runs on one folder, a batch
that poisons the weights, a poisoned checkpoint, a full disk, an unreadable class list. Each
ends with one message naming the file or the iteration and the problem, exit status 1, no
traceback, and no partial or poisoned file left; a run started again afterwards resumes to
the weights of an uninterrupted run.

Each test runs ``python -m isnet.cli train`` in a subprocess, as a user would.
Run the whole reliability suite with ``pytest -k "hostile or corrupt or fault or resume or malformed"``.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
from cli_helpers import environment, first_line, isnet, isnet_command, tiny_training  # noqa: E402
from training_helpers import make_data  # noqa: E402

ITERATIONS = 4  # checkpoints at 2 and 4


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return make_data(tmp_path_factory.mktemp("scenes"))


@pytest.fixture(scope="module")
def straight_run(data_root, tmp_path_factory) -> Path:
    """The uninterrupted run every other run must end equal to."""
    run = tmp_path_factory.mktemp("straight") / "run"
    result = isnet(*tiny_training(data_root, run, "--set", "keep_checkpoints=3"))
    assert result.returncode == 0, result.stderr[-3000:]
    return run


def assert_same_weights(expected_run: Path, run: Path) -> None:
    expected, actual = load_file(str(expected_run / "model.safetensors")), load_file(str(run / "model.safetensors"))
    assert expected.keys() == actual.keys()
    for key in expected:
        assert torch.equal(expected[key], actual[key]), f"{key} differs"


def checkpoint_names(run: Path) -> list[str]:
    return sorted(path.name for path in (run / "checkpoints").iterdir())


def assert_every_checkpoint_finite_and_intact(run: Path) -> None:
    from isnet.weights.checkpoint import load_training_checkpoint, nonfinite_entries

    for checkpoint in sorted((run / "checkpoints").glob("iter_*.pt")):
        state = load_training_checkpoint(checkpoint)  # checksum verified
        assert not nonfinite_entries({"model": state["model"], "optimizer": state["optimizer"]}), checkpoint
    assert not list(run.rglob("*.isnet-*.partial*")), list(run.rglob("*.isnet-*.partial*"))


def test_hostile_second_run_on_the_same_folder_is_refused_and_the_first_is_unharmed(
    data_root, straight_run, tmp_path
):
    run, go = tmp_path / "run", tmp_path / "go"
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(
            isnet_command(*tiny_training(data_root, run, "--set", "keep_checkpoints=3"), fault=("pause", f"2:{go}")),
            env=environment(), stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while not (run / "checkpoints" / "iter_00000002.pt").exists() and first.poll() is None:
            assert time.monotonic() < deadline, "the first run wrote no checkpoint"
            time.sleep(0.05)
        before = {path: path.stat().st_mtime_ns for path in run.rglob("*") if path.is_file()}

        second = isnet(*tiny_training(data_root, run, "--set", "keep_checkpoints=3"))

        assert first_line(second, "train", 1) == (
            f"{run}: in use by process {first.pid} (it holds {run / '.lock'}); wait for that run to finish, "
            "or choose another output folder"
        )
        after = {path: path.stat().st_mtime_ns for path in run.rglob("*") if path.is_file()}
        assert after == before, "the refused run touched the folder"
    finally:
        go.touch()
        first.wait(timeout=300)
    assert first.returncode == 0, (tmp_path / "first.log").read_text()[-3000:]
    assert_same_weights(straight_run, run)


def test_hostile_batch_poisoning_the_weights_never_reaches_a_checkpoint_and_the_run_resumes(
    data_root, straight_run, tmp_path
):
    """Images × 1e20 at iteration 3: the loss stays finite (BatchNorm normalises them), but the
    BatchNorm running variance overflows to infinity. The checkpoint of iteration 4 is refused."""
    run = tmp_path / "run"
    arguments = tiny_training(data_root, run, "--set", "keep_checkpoints=3")
    result = isnet(*arguments, fault=("huge-batch", 3))

    assert first_line(result, "train", 1) == (
        "iteration 4: non-finite values (NaN or infinity) in 1 tensor(s): model.backbone.stem.1.running_var; "
        f"not saved as a checkpoint. The last good checkpoint is {run / 'checkpoints' / 'iter_00000002.pt'}. "
        "Look for a batch of extreme values, or lower the learning rate"
    )
    assert checkpoint_names(run) == ["iter_00000002.pt", "iter_00000002.pt.sha256"]
    assert not (run / "model.safetensors").exists()
    assert_every_checkpoint_finite_and_intact(run)

    again = isnet(*arguments)  # the hostile batch is gone: the run resumes from the last good checkpoint
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming {run} from iteration 2" in again.stdout
    assert_same_weights(straight_run, run)


def test_corrupt_poisoned_newest_checkpoint_is_set_aside_and_the_previous_one_resumed(
    data_root, straight_run, tmp_path
):
    """A checkpoint holding NaN (as an older isnet could write) with a valid checksum."""
    run = shutil.copytree(straight_run, tmp_path / "run")
    (run / "model.safetensors").unlink()
    newest = run / "checkpoints" / "iter_00000004.pt"
    state = torch.load(newest, weights_only=True)
    state["model"]["head.bottleneck.0.weight"] = state["model"]["head.bottleneck.0.weight"] * math.nan
    torch.save(state, newest)
    digest = hashlib.sha256(newest.read_bytes()).hexdigest()
    newest.with_name(newest.name + ".sha256").write_text(f"{digest}  {newest.name}\n")

    result = isnet(*tiny_training(data_root, run, "--set", "keep_checkpoints=3"))

    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[0] == (
        f"cannot resume from {newest}: poisoned by a diverged step: non-finite values (NaN or infinity) in 1 "
        "tensor(s): model.head.bottleneck.0.weight; trying the previous checkpoint"
    )
    assert f"resuming {run} from iteration 2" in result.stdout
    assert (run / "checkpoints" / "iter_00000004.pt.corrupt").exists()  # set aside for inspection
    assert_every_checkpoint_finite_and_intact(run)
    assert_same_weights(straight_run, run)


def test_fault_disk_full_while_writing_a_checkpoint_names_the_file_and_the_run_resumes(
    data_root, straight_run, tmp_path
):
    run = tmp_path / "run"
    arguments = tiny_training(data_root, run, "--set", "keep_checkpoints=3")
    result = isnet(*arguments, fault=("enospc", ".iter_00000004.isnet-*.partial.pt"))

    assert first_line(result, "train", 1) == (
        f"{run / 'checkpoints' / 'iter_00000004.pt'}: no space left on device (ENOSPC); free some space, "
        "or write elsewhere"
    )
    assert checkpoint_names(run) == ["iter_00000002.pt", "iter_00000002.pt.sha256"]  # no partial file
    assert_every_checkpoint_finite_and_intact(run)

    again = isnet(*arguments)
    assert again.returncode == 0, again.stderr[-3000:]
    assert_same_weights(straight_run, run)


def test_hostile_class_list_not_in_utf8_is_named(data_root, tmp_path):
    root = shutil.copytree(data_root, tmp_path / "data")
    (root / "dataset.json").unlink()  # the class list is then read from classes.txt
    names = (root / "classes.txt").read_text().splitlines()
    (root / "classes.txt").write_bytes("\n".join([names[0], "caf\u00e9", *names[2:]]).encode("latin-1"))
    run = tmp_path / "run"
    result = isnet(*tiny_training(root, run))
    assert first_line(result, "train", 1) == (
        f"{root / 'classes.txt'}: not UTF-8 text (byte 0xe9 on line 2); save the class list as UTF-8"
    )
    assert not run.exists()
