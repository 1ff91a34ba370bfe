"""How the benchmarks measure: time, peak memory, FLOPs and the machine's matrix-multiply peak.

- Time: the contenders of a case run interleaved (A, B, C, A, B, C, …) after one warm-up
  call each, so a change in the machine's load hits all of them alike; the median is reported.
- Peak memory (CPU): each configuration runs in a fresh Python process
  (:mod:`benchmarks.child`), which resets the kernel's peak-RSS counter (``VmHWM``,
  via ``/proc/self/clear_refs``) after building the model and reads it after the run: the
  peak resident memory of the inference itself, weights included. On a GPU,
  ``torch.cuda.max_memory_allocated`` in the same process.
- FLOPs: :class:`torch.utils.flop_counter.FlopCounterMode` (convolutions, matrix products,
  attention; 2 per multiply-add) on the meta device, so counting costs nothing.
- Peak: the best of a few 2048³ matrix products in float32 and bfloat16.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from isnet.utils.child_process import child_environment

CHECKOUT = Path(__file__).resolve().parents[1]


def synchronize(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def interleaved_times(
    contenders: dict[str, Callable[[], Any]], *, rounds: int, warmup: int = 1, device: str = "cpu"
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Seconds per call of each contender over ``rounds`` interleaved rounds; and the warm-up outputs."""
    outputs: dict[str, Any] = {}
    for name, run in contenders.items():
        for _ in range(warmup):
            outputs[name] = run()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, run in contenders.items():
            synchronize(device)
            start = time.perf_counter()
            run()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return times, outputs


def median(values: list[float]) -> float:
    return statistics.median(values)


def _cpu_flash_attention_flops(query_shape, key_shape, value_shape, *args, **kwargs) -> int:
    # FlopCounterMode knows the CUDA attention kernels but not the CPU one.
    return sdpa_flop_count(query_shape, key_shape, value_shape)


FLOP_FORMULAS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_attention_flops}


def count_flops(run: Callable[[], Any]) -> int:
    """FLOPs of ``run()`` (build its tensors on the meta device to count for free)."""
    counter = FlopCounterMode(display=False, custom_mapping=FLOP_FORMULAS)
    with counter:
        run()
    return counter.get_total_flops()


def matmul_peak(dtype: torch.dtype, size: int = 2048, repeats: int = 5, device: str = "cpu") -> float:
    """Best GFLOP/s of a ``size``³ matrix product in ``dtype``."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


# ----------------------------------------------------------------------------- peak memory


def reset_peak_rss() -> bool:
    """Reset the process's peak-RSS counter (Linux ≥ 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """The process's peak resident memory since start or the last :func:`reset_peak_rss`, in MiB."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def run_child(spec: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
    """Run one configuration in a fresh process (:mod:`benchmarks.child`); its JSON result."""
    env = child_environment()  # this isnet, and this checkout's benchmarks package beside it
    env["PYTHONPATH"] = os.pathsep.join([str(CHECKOUT), env["PYTHONPATH"]])
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.child", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({spec}):\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])
