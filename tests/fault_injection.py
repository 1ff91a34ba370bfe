"""The tiny training run of training_helpers.py, with a fault injected into one checkpoint write.

    python fault_injection.py DATA OUTPUT MAX_ITERS CHECKPOINT_INTERVAL FAULT ITERATION

FAULT is what happens to the checkpoint of ITERATION:

- ``none``: nothing; the test kills the process from outside (SIGKILL) when it chooses.
- ``partial``: the disk takes only the first half of the checkpoint's bytes, then the process
  is killed (SIGKILL), as by a power cut or the OOM killer in the middle of ``torch.save``.
- ``before-rename``: the checkpoint and its checksum are complete on disk, and the process is
  killed just before the checkpoint is renamed into place.

Only the environment is faked (the disk, the moment of death); the training engine and the
checkpoint writer run unchanged.
"""

from __future__ import annotations

import fnmatch
import io
import os
import signal
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from training_helpers import tiny_config  # noqa: E402

from isnet.training.loop import train  # noqa: E402


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def inject(fault: str, iteration: int) -> None:
    target = f"iter_{iteration:08d}.pt"
    TEMPORARY = f".iter_{iteration:08d}.isnet-*.partial.pt"  # its temporary name (isnet.utils.atomic_files)

    if fault == "partial":
        real_save = torch.save

        def save_half_then_die(obj, f, *args, **kwargs):  # f: a path or an open file
            if not fnmatch.fnmatch(Path(str(getattr(f, "name", f))).name, TEMPORARY):
                return real_save(obj, f, *args, **kwargs)
            buffer = io.BytesIO()
            real_save(obj, buffer, *args, **kwargs)
            data = buffer.getvalue()
            with open(getattr(f, "name", f), "wb") as handle:
                handle.write(data[: len(data) // 2])
                handle.flush()
                os.fsync(handle.fileno())
            die()

        torch.save = save_half_then_die
    elif fault == "before-rename":
        real_replace = os.replace

        def die_before_renaming(source, destination, *args, **kwargs):
            if str(destination).endswith(target):
                die()
            return real_replace(source, destination, *args, **kwargs)

        os.replace = die_before_renaming
    elif fault != "none":
        raise SystemExit(f"unknown fault {fault!r}")


if __name__ == "__main__":
    data, output, iters, interval, fault, iteration = sys.argv[1:7]
    inject(fault, int(iteration))
    train(tiny_config(Path(data), Path(output), max_iters=int(iters), checkpoint_interval=int(interval)))
