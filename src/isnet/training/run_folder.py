"""A run folder's checkpoints: saving, listing, resuming from the newest intact one, setting damaged ones aside.

``<output_dir>/checkpoints/iter_*.pt`` holds the newest ``keep_checkpoints`` training states,
each written atomically with a ``.sha256`` checksum (:mod:`isnet.checkpoint`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import (
    CheckpointError,
    checksum_path,
    load_state_dict_strict,
    load_training_checkpoint,
    remove_unfinished_writes,
    save_training_checkpoint,
)
from ..config import ModelConfig
from ..distributed import DistributedContext, barrier


def checkpoint_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Checkpoints, oldest first (a write in progress is a ``.tmp`` and not listed)."""
    return sorted(checkpoint_dir(output_dir).glob("iter_*.pt"))


def newest_usable_checkpoint(
    output_dir: Path, model_config: ModelConfig, report: Callable[[str], None]
) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint that passes its checksum and loads, with its state; None for a new run.

    A damaged checkpoint is reported (``report(message)``, naming the file and the problem)
    and the previous one tried. If checkpoints exist but none can be used, or they were made
    for another model configuration, the run stops rather than silently starting over.
    """
    checkpoints = list_checkpoints(output_dir)
    for path in reversed(checkpoints):
        try:
            state = load_training_checkpoint(path)
            saved = ModelConfig.from_json(state["config"])
        except CheckpointError as error:
            report(f"cannot resume from {error}; trying the previous checkpoint")
            continue
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            report(f"cannot resume from {path}: unreadable model configuration ({error}); trying the previous one")
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


def config_differences(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """``"head.channels: 512 vs 256"`` for every field that differs between two config dicts."""
    differences = []
    for key in sorted(set(saved) | set(current)):
        old, new = saved.get(key), current.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            differences += config_differences(old, new, f"{prefix}{key}.")
        elif old != new:
            differences.append(f"{prefix}{key}: {old!r} vs {new!r}")
    return differences


def save_run_checkpoint(
    output_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    iteration: int,
    context: DistributedContext,
    keep: int,
) -> None:
    """Save the run's state at ``iteration`` (process 0 writes; the random state of every process is kept)."""
    rng = torch.get_rng_state()
    if context.enabled:
        gathered = [torch.empty_like(rng) for _ in range(context.world_size)]
        torch.distributed.all_gather_object(gathered, rng)
        rng_states = gathered
    else:
        rng_states = [rng]
    if context.is_main:
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "iteration": iteration,
            "rng": rng_states,
            "config": model.config.to_json(),
        }
        save_training_checkpoint(checkpoint_dir(output_dir) / f"iter_{iteration:08d}.pt", state)
        for old in list_checkpoints(output_dir)[:-keep]:
            old.unlink()
            checksum_path(old).unlink(missing_ok=True)
    barrier()


def resume(
    output_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    context: DistributedContext,
    report: Callable[[str], None],
) -> int:
    """Restore the newest intact checkpoint of ``output_dir`` into ``model`` and ``optimizer``.

    Returns the iteration to start from (0 for a new run). What a killed write left behind is
    deleted first; checkpoints newer than the one used (damaged ones) are set aside afterwards.
    """
    if context.is_main:
        for unfinished in remove_unfinished_writes(checkpoint_dir(output_dir)) + remove_unfinished_writes(output_dir):
            report(f"removed {unfinished}, left by a write that was interrupted")
    barrier()
    resumed = newest_usable_checkpoint(output_dir, model.config, report)
    if resumed is None:
        barrier()
        return 0
    path, state = resumed
    load_state_dict_strict(model, state["model"], source=path)
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"][context.rank] if context.rank < len(state["rng"]) else state["rng"][0])
    if context.is_main:
        print(f"resuming {output_dir} from iteration {int(state['iteration'])} ({path.name})", flush=True)
    barrier()  # every process has read its checkpoint before damaged ones are moved
    if context.is_main:
        for damaged in list_checkpoints(output_dir):
            if damaged.name > path.name:
                report(f"moved {set_aside(damaged)} aside; the run will write a new {damaged.name}")
    return int(state["iteration"])
