"""What a training checkpoint holds besides the weights and the optimizer, so that a resume is exact
on any device and says what changed.

- The random states of every process: the CPU generator and the CUDA generator of every device
  (none without CUDA), so that dropout draws on a GPU continue where they stopped.
- The GradScaler's state (fp16's loss scale and its growth tracker), so that a resumed fp16 run
  does not start again from the initial scale.
- The run as it started: its ``TrainConfig`` (what ``config.json`` holds, written once, when the
  run starts), the data folder as a full path and the class names. A resume compares the
  configuration it is given with it and names every field that differs (``old → new``, on stderr
  and in ``config_changes.txt``); another dataset (its name, its folder or its class list) is
  refused unless allowed (``allow_changed_data``; ``isnet train --allow-changed-data``), since
  the weights, the optimizer's momentum and the position in the data belong to the first one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from isnet.training.config import TrainConfig
from isnet.utils.distributed import DistributedContext
from isnet.utils.errors import CheckpointError, ConfigError

CHANGES_FILE = "config_changes.txt"
IGNORED_FIELDS = ("output_dir", "isnet_format")  # where the run is, and the file's layout: not what it does
DATA_FIELDS = ("data.dataset", "data.root")  # compared as a dataset (the root as a full path), below


# ----------------------------------------------------------------------------- random states


def gathered_random_states(context: DistributedContext) -> tuple[list[Tensor], list[list[Tensor]]]:
    """Every process's CPU random state, and the CUDA random states of every device it sees."""
    mine = (torch.get_rng_state(), torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [])
    if context.enabled:
        gathered: list[Any] = [None] * context.world_size
        torch.distributed.all_gather_object(gathered, mine)
    else:
        gathered = [mine]
    return [cpu for cpu, _ in gathered], [list(cuda) for _, cuda in gathered]


def restore_random_states(state: Mapping[str, Any], rank: int, report: Callable[[str], None]) -> None:
    """Set this process's CPU and CUDA random states to those ``state`` saved for ``rank``.

    A checkpoint from fewer processes gives every process the first one's; a CUDA state that
    cannot be restored here (no CUDA, another device count, a checkpoint written without CUDA or
    by an older version) is reported: the run goes on, but is no longer bitwise the uninterrupted one.
    """
    cpu = state["rng"]
    torch.set_rng_state(cpu[rank] if rank < len(cpu) else cpu[0])
    saved = state.get("cuda_rng") or [[]]
    cuda = saved[rank] if rank < len(saved) else saved[0]
    if not torch.cuda.is_available():
        if cuda:
            report(f"note: the checkpoint holds the CUDA random states of {len(cuda)} device(s) and this machine "
                   "has no CUDA: random draws continue from the CPU state only (not bitwise the run on a GPU)")
        return
    devices = torch.cuda.device_count()
    if not cuda:
        report("note: the checkpoint holds no CUDA random state (written without CUDA, or by an older version): "
               "the GPU's random draws start afresh, so the resumed run is not bitwise the uninterrupted one")
        return
    if len(cuda) != devices:
        report(f"note: the checkpoint holds the CUDA random states of {len(cuda)} device(s), this machine has "
               f"{devices}: the first {min(len(cuda), devices)} restored")
    for device, device_state in enumerate(cuda[:devices]):
        torch.cuda.set_rng_state(device_state, device)


def restore_scaler(scaler: torch.amp.GradScaler, saved: Mapping[str, Any] | None, report: Callable[[str], None]) -> None:
    """Restore the loss scale of an fp16 run (a scaler that is off has nothing to restore)."""
    if not scaler.is_enabled():
        return
    if not saved:
        report("note: the checkpoint holds no GradScaler state (written by an fp32/bf16 run, or by an older "
               "version): the fp16 loss scale starts again from its initial value")
        return
    scaler.load_state_dict(dict(saved))


def state_problems(state: Mapping[str, Any]) -> list[str]:
    """The entries this module adds that are malformed (they are optional: older checkpoints lack them)."""
    problems = []
    cuda = state.get("cuda_rng", [])
    if not (isinstance(cuda, (list, tuple)) and all(isinstance(states, (list, tuple)) and all(
            isinstance(s, Tensor) and s.dtype == torch.uint8 for s in states) for states in cuda)):
        problems.append("cuda_rng")
    if not isinstance(state.get("scaler", {}), Mapping):
        problems.append("scaler")
    started = state.get("started")
    if started is not None and not (isinstance(started, Mapping) and isinstance(started.get("config"), str)):
        problems.append("started")
    return problems


# ----------------------------------------------------------------------------- the run as it started


def started_record(config: TrainConfig, classes: Sequence[str]) -> dict[str, Any]:
    """What identifies a run's start: its configuration, the data folder as a full path, the class names."""
    return {"config": config.to_json(), "data_root": str(Path(config.data.root).resolve()), "classes": list(classes)}


def legacy_started_record(output_dir: Path) -> dict[str, Any] | None:
    """For a checkpoint written before runs kept their start: ``config.json`` as the last start wrote it."""
    try:
        text = (output_dir / "config.json").read_text()
        json.loads(text)
    except (OSError, ValueError):
        return None
    return {"config": text, "data_root": None, "classes": None}


def _flat(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any], separator: str = " vs ") -> list[str]:
    """``"head.channels: 512 vs 256"`` for every field (at any depth) that differs between two config dicts."""
    old, new = _flat(saved), _flat(current)
    return [f"{key}: {old.get(key)!r}{separator}{new.get(key)!r}"
            for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]


def _shown(classes: Sequence[str]) -> str:
    return f"{len(classes)} classes: {', '.join(classes[:8])}{', ...' if len(classes) > 8 else ''}"


def resume_changes(started: Mapping[str, Any], current: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(fields changed since the run started, changes of dataset), each a line ``name: old → new``."""
    before, now = json.loads(started["config"]), json.loads(current["config"])
    old, new = _flat(before), _flat(now)
    # Fields the version that started the run did not have are not changes.
    fields = [f"{key}: {old[key]!r} → {new.get(key)!r}" for key in sorted(old)
              if key not in (*IGNORED_FIELDS, *DATA_FIELDS) and old[key] != new.get(key)]
    data = []
    if before.get("data", {}).get("dataset") != now["data"]["dataset"]:
        data.append(f"data.dataset: {before.get('data', {}).get('dataset')!r} → {now['data']['dataset']!r}")
    old_root = started.get("data_root") or str(Path(before.get("data", {}).get("root", "")).resolve())
    if old_root != current["data_root"]:
        data.append(f"data.root: {old_root} → {current['data_root']}")
    if started.get("classes") is not None and list(started["classes"]) != list(current["classes"]):
        data.append(f"classes: {_shown(started['classes'])} → {_shown(current['classes'])}")
    return fields, data


def check_resume(
    output_dir: Path,
    started: Mapping[str, Any],
    current: Mapping[str, Any],
    iteration: int,
    *,
    allow_changed_data: bool,
    context: DistributedContext,
    report: Callable[[str], None],
) -> None:
    """Name what a resume changes since the run started; refuse another dataset unless allowed.

    Each changed field is one line on stderr and in ``config_changes.txt`` (``config.json`` keeps
    the run as it started). Raises a :class:`ConfigError` for another dataset, naming it.
    """
    fields, data = resume_changes(started, current)
    if data and not allow_changed_data:
        lines = "\n  ".join(data)
        raise ConfigError(
            f"{output_dir}: this run started on other data than it would resume on (as started → now):\n  {lines}\n"
            f"resume with the data it started on, choose another --output for a new run, or pass "
            f"--allow-changed-data (Python: allow_changed_data=True) to go on from iteration {iteration} on the new data"
        )
    changes = data + fields
    if not changes or not context.is_main:
        return
    report(f"resuming with {len(changes)} change(s) since the run started (config.json keeps it as started):\n  "
           + "\n  ".join(changes))
    with open(output_dir / CHANGES_FILE, "a") as log:
        log.writelines(f"resumed at iteration {iteration}: {line}\n" for line in changes)


def require_well_formed(path: Path, state: Mapping[str, Any]) -> None:
    """A :class:`CheckpointError` naming ``path`` when an entry of this module is malformed."""
    problems = state_problems(state)
    if problems:
        raise CheckpointError(f"{path}: not a training checkpoint of isnet.training.loop: malformed {', '.join(problems)} entry")
