"""Running ``isnet`` as a user does (a subprocess) and checking what it says, for the reliability tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).parent
SOURCE = TESTS.parent / "src"
CLI_FAULTS = TESTS / "cli_faults.py"


def environment(**extra: str) -> dict[str, str]:
    """This checkout's source on the path, one thread (fast, bitwise-stable), no debug mode."""
    env = {key: value for key, value in os.environ.items() if key != "ISNET_DEBUG"}
    path = os.pathsep.join([str(SOURCE), str(TESTS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**env, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", **extra}


def isnet_command(*arguments: object, fault: tuple[str, object] | None = None) -> list[str]:
    """``python -m isnet.cli ARGUMENTS``, or the same behind a fault of :mod:`cli_faults`."""
    if fault is None:
        return [sys.executable, "-m", "isnet.cli", *map(str, arguments)]
    return [sys.executable, str(CLI_FAULTS), fault[0], str(fault[1]), "--", *map(str, arguments)]


def isnet(*arguments: object, fault: tuple[str, object] | None = None, timeout: float = 300,
          **env: str) -> subprocess.CompletedProcess:
    """Run ``isnet`` to the end; its exit status, stdout and stderr."""
    return subprocess.run(isnet_command(*arguments, fault=fault), env=environment(**env), capture_output=True,
                          text=True, timeout=timeout)


def error_message(result: subprocess.CompletedProcess, command: str, status: int) -> list[str]:
    """The lines of the error ``isnet COMMAND`` printed, after checking how it ended.

    The exit status is ``status``, no traceback was printed, and exactly one error was
    reported, on stderr: the lines from ``isnet COMMAND: error: ...`` to the end.
    """
    output = result.stdout + result.stderr
    assert result.returncode == status, f"exit status {result.returncode}, not {status}:\n{output[-3000:]}"
    assert "Traceback" not in output, output[-3000:]
    lines = result.stderr.splitlines()
    starts = [number for number, line in enumerate(lines) if line.startswith(f"isnet {command}: error: ")]
    assert len(starts) == 1, result.stderr[-3000:]
    return lines[starts[0]:]


def first_line(result: subprocess.CompletedProcess, command: str, status: int) -> str:
    """The first line of the error, without the ``isnet COMMAND: error: `` prefix."""
    return error_message(result, command, status)[0].removeprefix(f"isnet {command}: error: ")


def without_busy_note(stderr: str) -> str:
    """``stderr`` of a ``main()`` called in the test process, without the note a command prints first when the
    machine is busy and no thread count was chosen (the subprocesses of :func:`isnet` set OMP_NUM_THREADS)."""
    return "".join(line for line in stderr.splitlines(keepends=True) if not line.startswith("note: this machine is busy"))


def tiny_training(data_root: Path, output: Path, *extra: object, max_iters: int = 4) -> list[str]:
    """``isnet train`` arguments for the tiny model of training_helpers.py on its synthetic scenes."""
    return [
        "train", "--recipe", "camvid_isnet", "--data-root", data_root, "--output", output,
        "--max-iters", max_iters, "--batch-size", 4, "--workers", 0, "--seed", 0, "--precision", "fp32",
        "--set", "model.num_classes=6", "--set", "model.backbone.base_channels=8",
        "--set", "model.backbone.stem_channels=8", "--set", "model.head.channels=16",
        "--set", "model.head.transform_channels=8", "--set", "model.aux.channels=8",
        "--set", "data.dataset=folder", "--set", "data.crop_size=[40,56]", "--set", "data.fit_size=[64,48]",
        "--set", "data.scale_range=[1.0,1.0]", "--set", "data.eval_fit_size=null",
        "--set", "eval_interval=0", "--set", "checkpoint_interval=2", "--set", "log_interval=1",
        "--set", "deterministic=true", "--set", "progress=false", "--set", "device=cpu",
        *extra,
    ]
