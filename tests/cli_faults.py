"""The ``isnet`` command line with a fault of the environment injected, for the reliability tests.

    python cli_faults.py FAULT ARGUMENT -- ISNET ARGUMENTS...

FAULT is one of:

- ``enospc``: a write to a file whose name matches the pattern ARGUMENT (fnmatch) fails with
  ``ENOSPC`` after half of its bytes, as when the disk fills up in the middle of a file;
- ``kill``: the process is killed (SIGKILL) after 256 bytes of a write to a file whose name
  matches the pattern ARGUMENT, as by a power cut in the middle of a file;
- ``eacces``: the folder ARGUMENT refuses new files (``EACCES``), as a read-only folder does
  for a user who is not root;
- ``huge-batch``: the training images of iteration ARGUMENT are multiplied by 1e20 (finite,
  but beyond what BatchNorm statistics can hold in float32), as a batch of unscaled data would;
- ``pause``: after writing the checkpoint of the iteration ARGUMENT (``N:FILE``), training
  waits until FILE exists (so that a test can act while the run is alive).

Only the environment is faked (the disk, the data, the timing): the command line, the
training engine and the writers run unchanged.
"""

from __future__ import annotations

import builtins
import errno
import fnmatch
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


class HalfFullDisk:
    """An open file whose disk fills up after ``room`` bytes (or, with ``die``, whose process is then killed)."""

    def __init__(self, handle, room: int, die: bool = False) -> None:
        self._handle, self._room, self._die = handle, room, die

    def write(self, data) -> int:
        if len(data) > self._room:
            self._handle.write(bytes(data[: self._room]))
            self._room = 0
            if self._die:  # a power cut or the OOM killer in the middle of the file
                self._handle.flush()
                os.fsync(self._handle.fileno())
                os.kill(os.getpid(), signal.SIGKILL)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= len(data)
        return self._handle.write(data)

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._handle.close()


def fill_the_disk(pattern: str, die: bool = False) -> None:
    real_open = builtins.open

    def open_on_a_full_disk(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        if isinstance(file, (str, os.PathLike)) and fnmatch.fnmatch(Path(file).name, pattern) and (
            "w" in mode or "a" in mode
        ):
            return HalfFullDisk(handle, room=256, die=die)
        return handle

    builtins.open = open_on_a_full_disk


def refuse_writes_in(folder: str) -> None:
    folder_path = Path(folder).resolve()
    real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir

    def inside(path) -> bool:
        try:
            return Path(path).resolve().parent == folder_path
        except (TypeError, ValueError):
            return False

    def refuse(path):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    def guarded_open(file, mode="r", *args, **kwargs):
        if ("w" in mode or "a" in mode or "x" in mode) and inside(file):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    def guarded_os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and inside(path):
            refuse(path)
        return real_os_open(path, flags, *args, **kwargs)

    def guarded_mkdir(path, *args, **kwargs):
        if inside(path):
            refuse(path)
        return real_mkdir(path, *args, **kwargs)

    builtins.open, os.open, os.mkdir = guarded_open, guarded_os_open, guarded_mkdir


def huge_batch(iteration: int, batch_size: int = 4) -> None:
    from isnet.data.sampling import SeededSamples

    real_getitem = SeededSamples.__getitem__
    calls = []

    def getitem(self, key):
        sample = real_getitem(self, key)
        calls.append(key)
        if (iteration - 1) * batch_size < len(calls) <= iteration * batch_size:
            sample = {**sample, "image": sample["image"] * 1e20}
        return sample

    SeededSamples.__getitem__ = getitem


def pause_after_checkpoint(argument: str) -> None:
    from isnet.training import loop as engine

    iteration, go = argument.split(":", 1)
    real_save = engine.save_run_checkpoint

    def save_then_wait(output_dir, model, optimizer, done, *args, **kwargs):
        real_save(output_dir, model, optimizer, done, *args, **kwargs)
        if done == int(iteration):
            deadline = time.monotonic() + 300
            while not Path(go).exists() and time.monotonic() < deadline:
                time.sleep(0.05)

    engine.save_run_checkpoint = save_then_wait


FAULTS = {"enospc": fill_the_disk, "kill": lambda pattern: fill_the_disk(pattern, die=True), "eacces": refuse_writes_in,
          "huge-batch": lambda n: huge_batch(int(n)),
          "pause": pause_after_checkpoint}

if __name__ == "__main__":
    fault, argument, separator, *arguments = sys.argv[1:]
    assert separator == "--", "usage: cli_faults.py FAULT ARGUMENT -- ISNET ARGUMENTS..."
    FAULTS[fault](argument)
    from isnet.cli import main

    sys.exit(main(arguments))
