"""This machine: its processor and flags, its measured peaks, and the profile cache.

Whether bfloat16 pays is a property of the CPU, not of the code: on an AMD EPYC with
AVX-512-BF16 a bfloat16 matrix product runs at 2.2× float32, on an Intel Xeon with the same
flags at 0.5×, and on a CPU without AVX-512 bfloat16 is emulated. So it is measured, once
per machine (:func:`machine_key`: the CPU model, its flags, the versions of torch, ONNX
Runtime and OpenVINO, the thread count), and the measurement is cached under
``~/.cache/isnet/`` (``ISNET_CACHE_DIR`` moves it) as a :class:`MachineProfile`.

Training decides its ``precision="auto"`` from the peaks here (:func:`training_precision`);
inference also times whole models in each runtime (:mod:`isnet.deploy.profile`), which
writes the profile this module reads.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from isnet.utils.precision import Precision

BF16_PAYS = 1.2  # bfloat16 is tried (and trained in) only where its peaks are this much above float32
PROFILE_VERSION = 2  # 2: OpenVINO int8 matrix products in the peaks
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8")


def cache_dir() -> Path:
    return Path(os.environ.get("ISNET_CACHE_DIR", "~/.cache/isnet")).expanduser()


def cpu_name_and_flags() -> tuple[str, list[str]]:
    """The CPU model and the flags that decide its fast paths (from ``/proc/cpuinfo``)."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and name == (platform.processor() or platform.machine()):
                name = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return name, [flag for flag in CPU_FLAGS if flag in flags]


def installed_version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except ImportError:
        return None


def machine_key(device: str = "cpu") -> dict[str, Any]:
    """What a measurement is valid for: the processor, the libraries and the threads."""
    if torch.device(device).type == "cuda":
        processor, flags = torch.cuda.get_device_name(), []
    else:
        processor, flags = cpu_name_and_flags()
    return {
        "device": torch.device(device).type,
        "processor": processor,
        "flags": flags,
        "torch": torch.__version__,
        "onnxruntime": installed_version("onnxruntime"),
        "openvino": installed_version("openvino"),
        "threads": torch.get_num_threads(),
        "version": PROFILE_VERSION,
    }



@dataclass
class MachineProfile:
    """What ``auto`` measured on a machine, and what it picks there."""

    key: dict[str, Any]
    peaks: dict[str, dict[str, float]] = field(default_factory=dict)  # "matmul"/"conv" → precision → GFLOP/s
    paths: dict[str, float] = field(default_factory=dict)  # path → seconds of the probe model
    choice: str = "torch fp32"
    seconds: float = 0.0  # how long the measurement took

    def bf16_pays(self) -> bool:
        return all(self.peaks.get(kind, {}).get("bf16", 0) >= BF16_PAYS * self.peaks[kind]["fp32"] for kind in ("matmul", "conv"))

    def describe(self) -> str:
        processor = self.key["processor"] + (f" ({' '.join(self.key['flags'])})" if self.key["flags"] else "")
        peaks = "; ".join(
            f"{kind} " + ", ".join(f"{p} {v:.0f}" for p, v in values.items()) for kind, values in self.peaks.items()
        )
        paths = ", ".join(f"{path} {seconds:.3f} s" for path, seconds in self.paths.items())
        return f"{processor}, {self.key['threads']} thread(s): peaks GFLOP/s {peaks}; probe {paths}; auto → {self.choice}"


def best_seconds(run: Callable[[], Any], repeats: int) -> float:
    run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def gflops_rate(make: Callable[[int], tuple[int, Callable[[], Any]]], sizes: tuple[int, ...]) -> float:
    """GFLOP/s at the first of ``sizes`` whose call takes over 50 ms, else the last (a slow,
    emulated dtype is measured small, so the probe stays short)."""
    for size in sizes:
        flops, run = make(size)
        seconds = best_seconds(run, 3)
        if seconds > 0.05:
            break
    return flops / seconds / 1e9



def profile_cache_path(key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / f"machine-{digest}.json"


def cached_profile(device: str = "cpu") -> MachineProfile | None:
    """The profile measured earlier on this machine, or None."""
    path = profile_cache_path(machine_key(device))
    try:
        return MachineProfile(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None  # none yet, or damaged: measured again


def measure_torch_peaks(device: str = "cpu") -> dict[str, dict[str, float]]:
    """GFLOP/s of a matrix product (up to 1024³) and of a 3×3 convolution (256→256 channels, up
    to 64×64, channels-last) in float32, bfloat16 and float16 in PyTorch."""
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

    def matmul(dtype: torch.dtype) -> Callable[[int], tuple[int, Callable[[], Any]]]:
        def make(n: int):
            a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
            return 2 * n**3, lambda: synchronize(a @ b, device)

        return make

    def conv(dtype: torch.dtype) -> Callable[[int], tuple[int, Callable[[], Any]]]:
        def make(n: int):
            x = torch.randn(1, 256, n, n, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
            w = torch.randn(256, 256, 3, 3, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
            return 2 * n * n * 256 * 256 * 9, lambda: synchronize(torch.nn.functional.conv2d(x, w, padding=1), device)

        return make

    with torch.no_grad():
        peaks = {
            "matmul": {name: gflops_rate(matmul(dtype), (256, 512, 1024)) for name, dtype in dtypes.items()},
            "conv": {name: gflops_rate(conv(dtype), (16, 32, 64)) for name, dtype in dtypes.items()},
        }
    return peaks


def synchronize(value: Any, device: str) -> Any:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    return value


def training_precision(device: str = "cpu") -> Precision:
    """The autocast ``auto`` trains in: bfloat16 where its peaks pay (fp32 otherwise); float16 never."""
    if torch.device(device).type == "cuda":
        return Precision.BF16 if torch.cuda.is_bf16_supported() else Precision.FP32
    override = os.environ.get("ISNET_AUTO_PATH")
    if override:  # pinned: bf16 if the pinned inference path is bf16
        return Precision.BF16 if override.endswith("bf16") else Precision.FP32
    measured = cached_profile(device) or MachineProfile(key=machine_key(device), peaks=measure_torch_peaks(device))
    return Precision.BF16 if measured.bf16_pays() else Precision.FP32


def slow_bf16_note(device: str | torch.device = "cpu") -> str | None:
    """A sentence for a user who asked for bfloat16 on a CPU where it does not pay, else None:
    from this machine's measured peaks when they are cached, else from its flags (without
    AVX-512-BF16 or AMX, bfloat16 is emulated)."""
    if torch.device(device).type != "cpu":
        return None
    measured = cached_profile("cpu")
    if measured is not None:
        if measured.bf16_pays():
            return None
        conv = measured.peaks["conv"]
        return (f"bf16 convolutions run at {conv['bf16']:.0f} GFLOP/s on this CPU against {conv['fp32']:.0f} in float32 "
                "(measured): --precision auto picks the fastest path here")
    _, flags = cpu_name_and_flags()
    if {"avx512_bf16", "amx_bf16"} & set(flags):
        return None
    return "this CPU has neither AVX-512-BF16 nor AMX, so bf16 is emulated and slow: --precision auto picks the fastest path here"


def resolve_training_precision(precision: str | Precision, device: str | torch.device = "cpu") -> Precision:
    """``precision`` itself, or for ``"auto"`` the measured :func:`training_precision`."""
    precision = Precision.of(precision)
    return training_precision(str(device)) if precision is Precision.AUTO else precision


def busy_machine_note() -> str | None:
    """A note when the machine is far busier than its cores (load average over twice the cores):
    everything computed here will be that much slower, and ``--threads`` may help."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # not on every platform
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if load <= 2 * cores:
        return None
    return (f"this machine is busy (load average {load:.1f} on {cores} core(s)): expect slower runs; "
            f"--threads sets how many threads this command takes")
