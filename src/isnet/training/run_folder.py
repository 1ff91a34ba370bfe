"""A run folder: its lock, its checkpoints (saving, listing, resuming from the newest intact
one, setting damaged ones aside), and how a run starts: resumed, or from ``init_from`` weights.

``<output_dir>/checkpoints/iter_*.pt`` holds the newest ``keep_checkpoints`` training states,
each written atomically with a ``.sha256`` checksum (:mod:`isnet.weights.checkpoint`). A checkpoint
never holds a NaN or an infinity: a state that does is refused, and a poisoned checkpoint
(written by an older version) is set aside like a damaged one. ``<output_dir>/.lock`` is
locked by the process that trains in the folder (an OS lock, released when it dies), so a
second run on the same folder refuses to start.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from isnet.model.config import ModelConfig
from isnet.training.config import TrainConfig
from isnet.training.run_state import (
    check_resume,
    config_differences,
    gathered_random_states,
    legacy_started_record,
    require_well_formed,
    restore_random_states,
    restore_scaler,
    started_record,
)
from isnet.utils.atomic_files import checksum_path, remove_unfinished_writes
from isnet.utils.distributed import DistributedContext, barrier
from isnet.weights.checkpoint import (
    CheckpointError,
    describe_nonfinite,
    load_state_dict_strict,
    load_training_checkpoint,
    nonfinite_entries,
    save_training_checkpoint,
)
from isnet.weights.loading import load_weights


def checkpoint_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


LOCK_NAME = ".lock"
_held_locks: dict[Path, int] = {}  # run folder → the descriptor holding its lock, for this process's life


class RunFolderInUse(OSError):
    """Another process trains in this run folder."""


def lock_run_folder(output_dir: str | Path) -> Path:
    """Lock ``output_dir`` for this process (``flock`` on ``<output_dir>/.lock``, which holds the pid).

    The lock lasts as long as the process (the OS releases it when the process dies, however
    it dies) or until :func:`release_run_folder`; locking a folder this process already holds
    is a no-op. Raises :class:`RunFolderInUse` naming the process that holds it.
    """
    folder = Path(output_dir).resolve()
    if folder in _held_locks:
        return folder / LOCK_NAME
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    descriptor = _open_lock_file(path)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        holder = os.read(descriptor, 64).decode(errors="replace").strip()
        os.close(descriptor)
        if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        by = f"process {holder}" if holder.isdigit() else "another process"
        raise RunFolderInUse(
            f"{output_dir}: in use by {by} (it holds {path}); wait for that run to finish, or choose "
            "another output folder"
        ) from None
    os.ftruncate(descriptor, 0)
    os.write(descriptor, f"{os.getpid()}\n".encode())
    _held_locks[folder] = descriptor
    return path


def _open_lock_file(path: Path) -> int:
    """The run folder's lock file, opened (created if absent) without following a link planted at its
    name, and refused unless it is a regular file of one name: a pid is then never written elsewhere."""
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as error:
        if error.errno != errno.ELOOP:
            raise
        raise OSError(errno.ELOOP, "is a symbolic link; the run folder's lock must be a file of its own: "
                                   "remove the link", str(path)) from None
    status = os.fstat(descriptor)
    if not stat.S_ISREG(status.st_mode) or status.st_nlink != 1:
        os.close(descriptor)
        raise OSError(errno.EEXIST, "is not a file of its own (another kind of file, or a hard link to another "
                                    "name); remove it", str(path))
    return descriptor


def release_run_folder(output_dir: str | Path) -> None:
    """Release the lock this process holds on ``output_dir`` (for a library user starting another run)."""
    descriptor = _held_locks.pop(Path(output_dir).resolve(), None)
    if descriptor is not None:
        os.close(descriptor)


def lock_for_all(output_dir: Path, context: DistributedContext) -> bool:
    """Process 0 locks the run folder; every process raises the same error if it cannot.

    Returns whether the folder was created for the lock (see :func:`forget_new_run_folder`).
    """
    problem = None
    created = not Path(output_dir).exists()
    if context.is_main:
        try:
            lock_run_folder(output_dir)
        except RunFolderInUse as error:
            problem = str(error)
    if context.enabled:
        shared = [problem]
        torch.distributed.broadcast_object_list(shared, src=0)
        problem = shared[0]
    if problem is not None:
        raise RunFolderInUse(problem)
    return created


def forget_new_run_folder(output_dir: Path, created: bool, context: DistributedContext) -> None:
    """Undo :func:`lock_for_all` for a run that could not start: the folder it created, if it holds only the lock."""
    if not (created and context.is_main):
        return
    release_run_folder(output_dir)
    folder = Path(output_dir)
    if [path.name for path in folder.iterdir()] == [LOCK_NAME]:
        (folder / LOCK_NAME).unlink()
        folder.rmdir()


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Checkpoints, oldest first (a write in progress has a hidden temporary name and is not listed)."""
    return sorted(checkpoint_dir(output_dir).glob("iter_*.pt"))


def newest_usable_checkpoint(
    output_dir: Path, model_config: ModelConfig, report: Callable[[str], None]
) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint that passes its checksum and loads, with its state; None for a new run.

    A damaged checkpoint, or one holding NaN or infinity, is reported (``report(message)``,
    naming the file and the problem) and the previous one tried. If checkpoints exist but
    none can be used, or they were made
    for another model configuration, the run stops rather than silently starting over.
    """
    checkpoints = list_checkpoints(output_dir)
    for path in reversed(checkpoints):
        try:
            state = load_training_checkpoint(path)
            try:
                saved = ModelConfig.from_json(state["config"])
            except (ValueError, TypeError, KeyError, AttributeError) as error:
                raise CheckpointError(f"{path}: unreadable model configuration in the checkpoint ({error})") from None
            require_well_formed(path, state)
            poisoned = nonfinite_state(state)
            if poisoned:
                raise CheckpointError(f"{path}: poisoned by a diverged step: {describe_nonfinite(poisoned)}")
        except CheckpointError as error:  # the message names the file and the real cause
            report(f"cannot resume from {error}; trying the previous checkpoint")
            continue
        if saved != model_config:
            differences = "\n  ".join(config_differences(saved.to_dict(), model_config.to_dict()))
            raise CheckpointError(
                f"{path}: checkpoint of another model configuration (checkpoint vs this run):\n  {differences}\n"
                f"choose another output_dir, or the configuration that made {output_dir}"
            )
        return path, state
    if checkpoints:
        raise CheckpointError(
            f"{output_dir}: none of its {len(checkpoints)} checkpoint(s) can be used (see above); move "
            f"{checkpoint_dir(output_dir)} away to start the run over"
        )
    return None


def set_aside(checkpoint: Path) -> Path:
    """Rename a damaged checkpoint (and its checksum) to ``*.corrupt``: kept for inspection, never loaded."""
    kept = checkpoint.with_name(checkpoint.name + ".corrupt")
    sidecar = checksum_path(checkpoint)
    if sidecar.exists():
        sidecar.replace(checksum_path(kept))
    checkpoint.replace(kept)
    return kept


def save_run_checkpoint(
    output_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    iteration: int,
    context: DistributedContext,
    keep: int,
    *,
    scaler: torch.amp.GradScaler | None = None,
    started: dict[str, Any] | None = None,
    kit: Any = None,
) -> None:
    """Save the run's state at ``iteration`` (process 0 writes; the CPU and CUDA random states of every
    process are kept, with the GradScaler's state and the run as it ``started``, :mod:`.run_state`).

    A state holding NaN or infinity (weights, BatchNorm statistics, optimizer momentum) is not
    saved: a ``FloatingPointError`` names the iteration, the tensors and the last good
    checkpoint, on every process.
    """
    poisoned = nonfinite_state({"model": model.state_dict(), "optimizer": optimizer.state_dict()})
    if all_processes_any(bool(poisoned), context):
        raise FloatingPointError(
            f"iteration {iteration}: {describe_nonfinite(poisoned) if poisoned else 'non-finite values on another process'}"
            f"; not saved as a checkpoint. The last good checkpoint is {last_good_checkpoint(output_dir)}. "
            "Look for a batch of extreme values, or lower the learning rate"
        )
    rng_states, cuda_states = gathered_random_states(context)
    if context.is_main:
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "iteration": iteration,
            "rng": rng_states,
            "cuda_rng": cuda_states,
            "scaler": scaler.state_dict() if scaler is not None else {},
            "config": model.config.to_json(),
        }
        if started is not None:
            state["started"] = started
        if kit is not None:  # EMA, best-on / early stop, trackers (training/kit.py)
            state["kit"] = kit.state_dict()
        save_training_checkpoint(checkpoint_dir(output_dir) / f"iter_{iteration:08d}.pt", state)
        for old in list_checkpoints(output_dir)[:-keep]:
            old.unlink()
            checksum_path(old).unlink(missing_ok=True)
    barrier()


def all_processes_any(flag: bool, context: DistributedContext) -> bool:
    """Whether ``flag`` is true on any process (so that every process takes the same decision)."""
    if not context.enabled:
        return flag
    value = torch.tensor([float(flag)], device=context.device)
    torch.distributed.all_reduce(value)
    return bool(value.item() > 0)


def last_good_checkpoint(output_dir: Path) -> str:
    """The newest checkpoint that passes its checksum and holds only finite values, for messages."""
    for path in reversed(list_checkpoints(output_dir)):
        try:
            state = load_training_checkpoint(path)
        except CheckpointError:
            continue
        if not nonfinite_state(state):
            return str(path)
    return f"none ({checkpoint_dir(output_dir)} holds no intact and finite checkpoint; the run starts over)"


def nonfinite_state(state: dict[str, Any]) -> list[str]:
    """The tensors of a training state's weights and optimizer state that hold NaN or infinity."""
    return nonfinite_entries({"model": state["model"], "optimizer": state["optimizer"]})


def resume(
    output_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    context: DistributedContext,
    report: Callable[[str], None],
    *,
    scaler: torch.amp.GradScaler,
    start: dict[str, Any],
    allow_changed_data: bool = False,
    kit: Any = None,
) -> tuple[int, dict[str, Any]]:
    """Restore the newest intact checkpoint of ``output_dir`` into ``model``, ``optimizer`` and ``scaler``.

    Returns the iteration to start from (0 for a new run) and the run as it started (``start``,
    this start's :func:`~.run_state.started_record`, for a new run). A resume names the fields
    ``start`` changes, and refuses another dataset unless ``allow_changed_data``
    (:func:`~.run_state.check_resume`). The folder is locked first
    (:func:`lock_for_all`), so that no other run can write in it; what a killed write left
    behind is deleted; checkpoints newer than the one used (damaged ones) are set aside
    afterwards.
    """
    lock_for_all(output_dir, context)
    if context.is_main:
        for unfinished in remove_unfinished_writes(checkpoint_dir(output_dir)) + remove_unfinished_writes(output_dir):
            report(f"removed {unfinished}, left by a write that was interrupted")
    barrier()
    resumed = newest_usable_checkpoint(output_dir, model.config, report)
    if resumed is None:
        barrier()
        return 0, start
    path, state = resumed
    iteration = int(state["iteration"])
    started = state.get("started") or legacy_started_record(output_dir) or start
    check_resume(output_dir, started, start, iteration, allow_changed_data=allow_changed_data, context=context,
                 report=report)
    load_state_dict_strict(model, state["model"], source=path)
    optimizer.load_state_dict(state["optimizer"])
    restore_scaler(scaler, state.get("scaler"), report)
    restore_random_states(state, context.rank, report)
    if kit is not None:  # EMA, best-on / early stop, trackers (training/kit.py)
        kit.load_state_dict(state.get("kit", {}))
    if context.is_main:
        print(f"resuming {output_dir} from iteration {int(state['iteration'])} ({path.name})", flush=True)
    barrier()  # every process has read its checkpoint before damaged ones are moved
    if context.is_main:
        for damaged in list_checkpoints(output_dir):
            if damaged.name > path.name:
                report(f"moved {set_aside(damaged)} aside; the run will write a new {damaged.name}")
    return iteration, dict(started)


def start_or_resume(
    config: TrainConfig,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    train_set: Dataset,
    context: DistributedContext,
    report: Callable[[str], None],
    allow_changed_data: bool,
    kit: Any = None,
) -> tuple[int, dict[str, Any]]:
    """The iteration to start from and the run as it started: the newest intact checkpoint restored
    (:func:`resume`), or a new run, started from ``init_from`` when given
    (weights of which most tensors do not fit are refused unless ``init_from_partial``)."""
    start_iteration, as_started = resume(Path(config.output_dir), model, optimizer, context, report,
                                         scaler=scaler, start=started_record(config, train_set.info.classes),
                                         allow_changed_data=allow_changed_data, kit=kit)
    if start_iteration == 0 and config.init_from:
        report(load_weights(model, config.init_from, ignore_mismatched_sizes=True, classes=train_set.info.classes,
                            refuse_foreign=not config.init_from_partial).summary())
    if start_iteration == 0 and kit is not None:
        kit.begin(model)  # the weight average starts from the weights training starts from
    return start_iteration, as_started
