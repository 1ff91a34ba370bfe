"""Fault-tolerant training: killed at any moment it resumes exactly; damaged or foreign
checkpoints are reported and never silently used; a diverging loss stops or is skipped.

Run the whole reliability suite with ``pytest -k "hostile or corrupt or fault or resume or malformed"``.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from isnet.weights.checkpoint import CheckpointError, load_training_checkpoint
from isnet.training.loop import list_checkpoints, train

sys.path.insert(0, str(Path(__file__).parent))
from training_helpers import make_data, tiny_config  # noqa: E402

FAULT_INJECTION = Path(__file__).parent / "fault_injection.py"


pytestmark = pytest.mark.usefixtures("one_thread")  # fast on a shared machine; bitwise-stable kills


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return make_data(tmp_path_factory.mktemp("scenes"))


def intact(checkpoint: Path) -> bool:
    """Whether a checkpoint matches its sha256 sidecar, checked here without isnet's code."""
    sidecar = checkpoint.with_name(checkpoint.name + ".sha256")
    if not sidecar.is_file() or not checkpoint.is_file():
        return False
    return sidecar.read_text().split()[0] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()


def iteration_of(checkpoint: Path) -> int:
    return int(checkpoint.name.split("_")[1].split(".")[0])


def newest_intact(run: Path) -> int:
    return max((iteration_of(c) for c in list_checkpoints(run) if intact(c)), default=0)


def logged_iterations(run: Path) -> list[int]:
    """Iterations with a training-loss row in metrics.csv (a row being written is ignored)."""
    try:
        with open(run / "metrics.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
    except FileNotFoundError:
        return []
    return [int(row["iteration"]) for row in rows if row.get("loss") and row.get("seconds")]


def assert_same_weights(expected_run: Path, run: Path) -> None:
    expected, actual = load_file(str(expected_run / "model.safetensors")), load_file(str(run / "model.safetensors"))
    assert expected.keys() == actual.keys()
    for key in expected:
        assert torch.equal(expected[key], actual[key]), f"{key} differs"


def assert_nothing_damaged_left(run: Path) -> None:
    """Every checkpoint in the rotation verifies, and no write is left unfinished."""
    for checkpoint in list_checkpoints(run):
        assert intact(checkpoint), checkpoint
        load_training_checkpoint(checkpoint)
    assert not list(run.rglob("*.isnet-*.partial*")), list(run.rglob("*.isnet-*.partial*"))


# --- kills at random moments ----------------------------------------------------------------

ITERATIONS, INTERVAL = 12, 2


def launch(data_root: Path, run: Path, log: Path, fault: str = "none", iteration: int = 0) -> subprocess.Popen:
    command = [sys.executable, str(FAULT_INJECTION), str(data_root), str(run), str(ITERATIONS), str(INTERVAL),
               fault, str(iteration)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}  # as one_thread
    with open(log, "w") as handle:
        return subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT)


def kill_once_logged(process: subprocess.Popen, run: Path, iteration: int, log: Path) -> None:
    """SIGKILL ``process`` as soon as it has logged ``iteration`` in a metrics.csv of its own."""
    metrics = run / "metrics.csv"
    stale = metrics.stat().st_ino if metrics.exists() else None  # the killed run's file, rewritten on resume
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        try:
            fresh = metrics.stat().st_ino != stale
        except FileNotFoundError:
            fresh = False
        if fresh and iteration in logged_iterations(run):
            break
        time.sleep(0.005)
    process.kill()
    process.wait()
    assert process.returncode == -signal.SIGKILL, f"the run ended by itself:\n{log.read_text()[-3000:]}"


@pytest.mark.slow  # over 15 s on the shared 2-core machine (load 10-15)
def test_fault_injection_kills_at_random_moments_and_resumes_bitwise(data_root, tmp_path):
    straight = tmp_path / "straight"
    train(tiny_config(data_root, straight, max_iters=ITERATIONS, checkpoint_interval=INTERVAL))

    rng = random.Random(20240611)
    faults = ["signal"] * 4 + ["partial", "before-rename"]  # 4 kills from outside, 2 inside a checkpoint write
    rng.shuffle(faults)
    run = tmp_path / "killed"
    previous_fault = None
    for number, fault in enumerate(faults):
        resume_from = newest_intact(run)
        log = tmp_path / f"launch_{number}.log"
        if fault == "signal":
            kill_at = rng.randint(resume_from + 1, min(resume_from + 3, ITERATIONS - 1))
            kill_once_logged(launch(data_root, run, log), run, kill_at, log)
        else:
            kill_at = rng.choice([c for c in (resume_from + INTERVAL, resume_from + 2 * INTERVAL) if c <= ITERATIONS])
            process = launch(data_root, run, log, fault, kill_at)
            process.wait(timeout=120)
            assert process.returncode == -signal.SIGKILL, log.read_text()[-3000:]
            checkpoint = run / "checkpoints" / f"iter_{kill_at:08d}.pt"
            assert not checkpoint.exists() and list(checkpoint.parent.glob(f".{checkpoint.stem}.isnet-*.partial.pt"))
            assert checkpoint.with_name(checkpoint.name + ".sha256").exists() == (fault == "before-rename")
        output = log.read_text()
        if resume_from:
            assert f"resuming {run} from iteration {resume_from} (iter_{resume_from:08d}.pt)" in output, output
        if previous_fault in ("partial", "before-rename"):
            assert "left by a write that was interrupted" in output, output
        previous_fault = fault

    assert newest_intact(run) < ITERATIONS
    train(tiny_config(data_root, run, max_iters=ITERATIONS, checkpoint_interval=INTERVAL))
    assert_same_weights(straight, run)
    assert logged_iterations(run) == list(range(1, ITERATIONS + 1))  # each iteration logged once
    assert_nothing_damaged_left(run)


# --- damaged, unsafe and foreign checkpoints ------------------------------------------------


@pytest.fixture(scope="module")
def finished_run(data_root, tmp_path_factory) -> Path:
    """6 iterations with all checkpoints kept (2, 4, 6): the reference every resume must match."""
    run = tmp_path_factory.mktemp("finished")
    train(tiny_config(data_root, run, max_iters=6, checkpoint_interval=2, keep_checkpoints=3))
    return run


def interrupted_copy(finished_run: Path, tmp_path: Path) -> Path:
    """The finished run as it was when killed after its checkpoint of iteration 4."""
    run = shutil.copytree(finished_run, tmp_path / "run")
    (run / "model.safetensors").unlink()
    for name in ("iter_00000006.pt", "iter_00000006.pt.sha256"):
        (run / "checkpoints" / name).unlink()
    return run


def resume(data_root: Path, run: Path) -> None:
    train(tiny_config(data_root, run, max_iters=6, checkpoint_interval=2, keep_checkpoints=3))


def forge_checksum(path: Path) -> None:
    """Write a matching sidecar, as an attacker who controls the folder would."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    path.with_name(path.name + ".sha256").write_text(f"{digest}  {path.name}\n")


def truncated(path: Path, tmp_path: Path) -> str:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return "checksum mismatch: the file's sha256 is"


def bit_flipped(path: Path, tmp_path: Path) -> str:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    return "records"  # and the member that fails its CRC-32 (below)


def zero_bytes(path: Path, tmp_path: Path) -> str:
    path.write_bytes(b"")
    return "the checkpoint is damaged: not a readable zip archive"


def checksum_missing(path: Path, tmp_path: Path) -> str:
    path.with_name(path.name + ".sha256").unlink()
    return "no checksum file iter_00000004.pt.sha256"


def checksum_file_digit_changed(path: Path, tmp_path: Path) -> str:
    """The checkpoint is intact; one hex digit of its sha256 file is not."""
    sidecar = path.with_name(path.name + ".sha256")
    text = sidecar.read_text()
    sidecar.write_text(("1" if text[0] == "0" else "0") + text[1:])
    return ("the checkpoint or its checksum file is damaged (every member of the checkpoint passes its CRC-32, so "
            "more likely iter_00000004.pt.sha256)")


def checksum_file_not_text(path: Path, tmp_path: Path) -> str:
    path.with_name(path.name + ".sha256").write_bytes(b"\xff\xfe\x00garbage")
    return "its checksum file iter_00000004.pt.sha256 is damaged (not text)"


def checksum_file_of_another_file(path: Path, tmp_path: Path) -> str:
    sidecar = path.with_name(path.name + ".sha256")
    sidecar.write_text(sidecar.read_text().replace(path.name, "iter_00000006.pt"))
    return "its checksum file iter_00000004.pt.sha256 is damaged: it records the checksum of 'iter_00000006.pt'"


def malformed_state(path: Path, tmp_path: Path) -> str:
    torch.save({"weights": torch.zeros(3)}, path)
    forge_checksum(path)
    return "not a training checkpoint of isnet.training.loop: no model, optimizer, iteration, rng, config entry"


class Payload:
    """Unpickling this runs a shell command; a safe loader must refuse it unexecuted."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def executable_pickle(path: Path, tmp_path: Path) -> str:
    with open(path, "wb") as handle:
        pickle.dump({"model": Payload(tmp_path / "executed")}, handle)
    forge_checksum(path)
    return "refused to load"


DAMAGES = {
    "truncated": truncated,
    "bit_flipped": bit_flipped,
    "zero_bytes": zero_bytes,
    "checksum_missing": checksum_missing,
    "checksum_file_digit_changed": checksum_file_digit_changed,
    "checksum_file_not_text": checksum_file_not_text,
    "checksum_file_of_another_file": checksum_file_of_another_file,
    "malformed_state": malformed_state,
    "executable_pickle": executable_pickle,
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_corrupt_newest_checkpoint_is_reported_and_the_previous_one_resumed(
    damage, data_root, finished_run, tmp_path, capsys
):
    run = interrupted_copy(finished_run, tmp_path)
    newest = run / "checkpoints" / "iter_00000004.pt"
    problem = DAMAGES[damage](newest, tmp_path)
    capsys.readouterr()

    resume(data_root, run)

    out = capsys.readouterr()
    assert f"cannot resume from {newest}: " in out.err and problem in out.err, out.err
    if damage.startswith("checksum_file"):  # the checkpoint is intact: never called damaged
        assert "the checkpoint is damaged" not in out.err and "truncated or corrupt" not in out.err, out.err
    if damage == "bit_flipped":
        assert "the checkpoint is damaged: its member " in out.err and "fails its CRC-32 check" in out.err, out.err
    assert f"resuming {run} from iteration 2 (iter_00000002.pt)" in out.out
    assert not (tmp_path / "executed").exists()
    assert (run / "checkpoints" / "iter_00000004.pt.corrupt").exists()  # set aside for inspection
    assert_same_weights(finished_run, run)
    assert_nothing_damaged_left(run)


def test_corrupt_checkpoints_all_of_them_stop_the_run_instead_of_starting_over(data_root, finished_run, tmp_path):
    run = interrupted_copy(finished_run, tmp_path)
    for checkpoint in list_checkpoints(run):
        truncated(checkpoint, tmp_path)
    before = sorted(path.name for path in (run / "checkpoints").iterdir())
    with pytest.raises(CheckpointError, match="none of its 2 checkpoint\\(s\\) can be used"):
        resume(data_root, run)
    assert sorted(path.name for path in (run / "checkpoints").iterdir()) == before  # nothing moved or written
    assert not (run / "model.safetensors").exists()


def test_resume_refuses_a_checkpoint_of_another_model_configuration(data_root, finished_run, tmp_path):
    run = interrupted_copy(finished_run, tmp_path)
    config = tiny_config(data_root, run, max_iters=6, checkpoint_interval=2)
    wider = replace(config.model, head=replace(config.model.head, channels=32))
    with pytest.raises(CheckpointError) as error:
        train(replace(config, model=wider))
    message = str(error.value)
    assert str(run / "checkpoints" / "iter_00000004.pt") in message
    assert "another model configuration" in message and "head.channels: 16 vs 32" in message
    assert sorted(p.name for p in (run / "checkpoints").glob("*.pt")) == ["iter_00000002.pt", "iter_00000004.pt"]


def test_resume_may_switch_on_activation_checkpointing(data_root, finished_run, tmp_path, capsys):
    """Recomputing activations changes how gradients are computed, not the model: a run that
    ran out of memory can resume with it."""
    run = interrupted_copy(finished_run, tmp_path)
    config = tiny_config(data_root, run, max_iters=6, checkpoint_interval=2, keep_checkpoints=3)
    train(replace(config, grad_checkpointing=True))
    assert f"resuming {run} from iteration 4" in capsys.readouterr().out
    expected, actual = load_file(str(finished_run / "model.safetensors")), load_file(str(run / "model.safetensors"))
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=1e-5, atol=1e-6, msg=key)


def test_fault_leftovers_of_a_killed_write_are_removed_on_resume(data_root, finished_run, tmp_path, capsys):
    run = interrupted_copy(finished_run, tmp_path)
    gone = 4_194_305  # above any pid_max: the process that wrote them is certainly gone
    leftovers = [
        run / "checkpoints" / f".iter_00000006.isnet-{gone}-0123456789ab.partial.pt",  # a checkpoint cut short
        run / "checkpoints" / f".iter_00000006.pt.isnet-{gone}-0123456789ab.partial.sha256",  # its checksum
        run / f".model.isnet-{gone}-0123456789ab.partial.safetensors",  # the final weights cut short
    ]
    users = [run / "notes.tmp", run / "checkpoints" / "mine.tmp", run / "data.sha256", run / "model.safetensors.tmp"]
    for path in leftovers + users:
        path.write_bytes(b"half a file")
    capsys.readouterr()
    resume(data_root, run)
    err = capsys.readouterr().err
    for path in leftovers:
        assert f"removed {path}, left by a write that was interrupted" in err
        assert not path.exists()
    for path in users:  # a user's files that merely look unfinished are never ours to delete
        assert path.read_bytes() == b"half a file", path
    assert_same_weights(finished_run, run)
    assert_nothing_damaged_left(run)


# --- a diverging loss -----------------------------------------------------------------------


def poison_samples(monkeypatch: pytest.MonkeyPatch, bad_calls: set[int] | None = None, from_call: int | None = None):
    """NaN in chosen training images, so that the forward pass (BatchNorm statistics
    included) and the loss turn non-finite, as in a real divergence."""
    from isnet.training import loop as engine

    real = engine.SeededSamples.__getitem__
    calls = []

    def getitem(self, key):
        sample = real(self, key)
        calls.append(key)
        if (bad_calls and len(calls) in bad_calls) or (from_call and len(calls) >= from_call):
            sample = {**sample, "image": sample["image"] * math.nan}
        return sample

    monkeypatch.setattr(engine.SeededSamples, "__getitem__", getitem)


def test_fault_nonfinite_loss_stops_naming_the_iteration_and_keeps_the_last_good_checkpoint(
    data_root, tmp_path, monkeypatch
):
    poison_samples(monkeypatch, bad_calls={17})  # batch size 4: the first sample of iteration 5
    with pytest.raises(FloatingPointError, match="non-finite loss nan at iteration 5; the last good checkpoint"):
        train(tiny_config(data_root, tmp_path, max_iters=8, checkpoint_interval=2))
    assert [iteration_of(c) for c in list_checkpoints(tmp_path)] == [2, 4]
    state = load_training_checkpoint(list_checkpoints(tmp_path)[-1])
    assert all(torch.isfinite(value).all() for value in state["model"].values() if value.is_floating_point())
    assert_nothing_damaged_left(tmp_path)


def test_fault_nonfinite_loss_is_skipped_when_configured(data_root, tmp_path, monkeypatch, capsys):
    poison_samples(monkeypatch, bad_calls={9, 13})  # iterations 3 and 4
    train(tiny_config(data_root, tmp_path, max_iters=6, nonfinite="skip"))
    err = capsys.readouterr().err
    assert "iteration 3: non-finite loss nan; step skipped (1 in a row)" in err
    assert "iteration 4: non-finite loss nan; step skipped (2 in a row)" in err
    weights = load_file(str(tmp_path / "model.safetensors"))
    assert any("running_mean" in key for key in weights)
    # Finite everywhere, BatchNorm statistics included: the NaN batches' statistics were undone.
    assert all(torch.isfinite(value).all() for value in weights.values() if value.is_floating_point())
    assert_nothing_damaged_left(tmp_path)


def test_fault_nonfinite_skips_stop_after_the_limit_in_a_row(data_root, tmp_path, monkeypatch):
    poison_samples(monkeypatch, from_call=9)  # every iteration from the 3rd on
    with pytest.raises(FloatingPointError, match="3 non-finite losses in a row, the last \\(nan\\) at iteration 5"):
        train(tiny_config(data_root, tmp_path, max_iters=8, nonfinite="skip", max_nonfinite_skips=3))
    assert not (tmp_path / "model.safetensors").exists()
    assert_nothing_damaged_left(tmp_path)
