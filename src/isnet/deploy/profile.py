"""``precision="auto"``: the fastest inference path of this machine, measured once and cached.

Whether bfloat16 pays, and which runtime is fastest, is a property of the CPU, not of the
code: on an AMD EPYC with AVX-512-BF16 a bfloat16 matrix product runs at 2.2× float32, on
an Intel Xeon with the same flags at 0.5×, and on a CPU without AVX-512 bfloat16 is
emulated. So ``auto`` measures, once per machine (:func:`machine_key`: the CPU model, its
flags, the versions of torch, ONNX Runtime and OpenVINO, the thread count), and caches the
result under ``~/.cache/isnet/`` (``ISNET_CACHE_DIR`` moves it):

- the **peaks** (:func:`measure_peaks`): GFLOP/s of a matrix product and of a 3×3
  convolution in float32, bfloat16 and float16, and with OpenVINO in float32 and int8;
- the **paths** (:func:`measure_paths`): a ResNet-50-D8 ISNet at 256×256 (random weights),
  timed interleaved (best of three rounds) in PyTorch float32 (``FastSegmentor``), in bfloat16 where the peaks say
  it can pay, in ONNX Runtime and in OpenVINO (float32, on the graph ``isnet export`` writes).

It then picks (:func:`choose`) the fastest path that needs no calibration and keeps float32's
results: PyTorch float32 unless another path is at least :data:`MARGIN` faster, so ``auto``
is never slower than float32 beyond the probe's noise. bfloat16 is a candidate only where
its peaks pay (it keeps 99.9 % of a trained model's pixels, ``docs/benchmarks.md``). An INT8
model (``isnet quantize``) runs on its own INT8 path whatever the probe says.
Training picks its autocast from the peaks alone (:func:`training_precision`).

``ISNET_AUTO_PATH`` (e.g. ``torch fp32``) skips the measurement: for CI and reproducible runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

PATHS = ("torch fp32", "torch bf16", "onnxruntime fp32", "openvino fp32")
MARGIN = 1.05  # another path must be this much faster than PyTorch float32 to be picked
BF16_PAYS = 1.2  # bfloat16 is tried (and trained in) only where its peaks are this much above float32
PROBE_SIZE = (256, 256)
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


def _best_seconds(run: Callable[[], Any], repeats: int) -> float:
    run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def _rate(make: Callable[[int], tuple[int, Callable[[], Any]]], sizes: tuple[int, ...]) -> float:
    """GFLOP/s at the first of ``sizes`` whose call takes over 50 ms, else the last (a slow,
    emulated dtype is measured small, so the probe stays short)."""
    for size in sizes:
        flops, run = make(size)
        seconds = _best_seconds(run, 3)
        if seconds > 0.05:
            break
    return flops / seconds / 1e9


def measure_peaks(device: str = "cpu") -> dict[str, dict[str, float]]:
    """GFLOP/s of a matrix product (up to 1024³) and of a 3×3 convolution (256→256 channels, up
    to 64×64, channels-last) in float32, bfloat16 and float16 in PyTorch; on a CPU with OpenVINO
    also its float32 and int8 matrix product and convolution (the kernels of ``isnet quantize``'s models)."""
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

    def matmul(dtype: torch.dtype) -> Callable[[int], tuple[int, Callable[[], Any]]]:
        def make(n: int):
            a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
            return 2 * n**3, lambda: _sync(a @ b, device)

        return make

    def conv(dtype: torch.dtype) -> Callable[[int], tuple[int, Callable[[], Any]]]:
        def make(n: int):
            x = torch.randn(1, 256, n, n, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
            w = torch.randn(256, 256, 3, 3, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
            return 2 * n * n * 256 * 256 * 9, lambda: _sync(torch.nn.functional.conv2d(x, w, padding=1), device)

        return make

    with torch.no_grad():
        peaks = {
            "matmul": {name: _rate(matmul(dtype), (256, 512, 1024)) for name, dtype in dtypes.items()},
            "conv": {name: _rate(conv(dtype), (16, 32, 64)) for name, dtype in dtypes.items()},
        }
    if torch.device(device).type == "cpu" and installed_version("openvino") is not None:
        from isnet.deploy.runtimes.openvino import convolution_probe, matmul_probe

        peaks["openvino matmul"] = {name: _rate(matmul_probe(name == "int8"), (256, 512, 1024)) for name in ("fp32", "int8")}
        peaks["openvino conv"] = {name: _rate(convolution_probe(name == "int8"), (16, 32, 64)) for name in ("fp32", "int8")}
    return peaks


def _sync(value: Any, device: str) -> Any:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    return value


def probe_candidates(device: str, bf16: bool, workdir: Path, size: tuple[int, int] = PROBE_SIZE) -> dict[str, Callable[[], Any]]:
    """The inference paths available here, each a call on the probe model."""
    from isnet.deploy.export import export_onnx
    from isnet.weights.presets import create_model
    from isnet.deploy.runtimes.pytorch import FastSegmentor

    torch.manual_seed(0)
    model = create_model("isnet_resnet50os8_ade20k").eval().to(device)
    images = torch.randn(1, 3, *size, device=device)
    candidates: dict[str, Callable[[], Any]] = {"torch fp32": (lambda m=FastSegmentor(model): m.logits(images))}
    if bf16:
        candidates["torch bf16"] = lambda m=FastSegmentor(model, precision="bf16"): m.logits(images)
    if torch.device(device).type != "cpu":
        return candidates
    threads = torch.get_num_threads()
    runtimes = [name for name in ("onnxruntime", "openvino") if installed_version(name) is not None]
    if runtimes and installed_version("onnx") is not None:  # the runtimes run the graph `isnet export` writes with onnx
        onnx_path = export_onnx(model, workdir / "probe.onnx", sample_size=size)
        from isnet.deploy.runtimes.onnxruntime import OnnxSegmentor
        from isnet.deploy.runtimes.openvino import OpenVinoSegmentor

        runners = {"onnxruntime": OnnxSegmentor, "openvino": OpenVinoSegmentor}
        for name in runtimes:
            runtime = runners[name](onnx_path, threads=threads)
            candidates[f"{name} fp32"] = lambda r=runtime: r.logits(images.cpu())
    return candidates


def measure_paths(device: str, bf16: bool, *, rounds: int = 3) -> dict[str, float]:
    """The best seconds of the probe model on every available path, timed interleaved: the
    best of a few rounds, since a machine's other work only ever adds time."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="isnet-probe-") as tmp:
        candidates = probe_candidates(device, bf16, Path(tmp))
        times: dict[str, list[float]] = {name: [] for name in candidates}
        with torch.no_grad():
            for run in candidates.values():
                run()  # warm-up
            for _ in range(rounds):
                for name, run in candidates.items():
                    start = time.perf_counter()
                    _sync(run(), device)
                    times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}


def choose(paths: dict[str, float], runtimes: tuple[str, ...] | None = None) -> str:
    """The fastest path (of ``runtimes``' paths, default all), unless it is within :data:`MARGIN`
    of PyTorch float32: then float32."""
    allowed = {path: seconds for path, seconds in paths.items() if runtimes is None or path.split()[0] in runtimes}
    fastest = min(allowed, key=allowed.__getitem__)
    return fastest if allowed[fastest] * MARGIN <= paths["torch fp32"] else "torch fp32"


def _cache_path(key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / f"machine-{digest}.json"


def cached_profile(device: str = "cpu") -> MachineProfile | None:
    """The profile measured earlier on this machine, or None."""
    path = _cache_path(machine_key(device))
    try:
        return MachineProfile(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None  # none yet, or damaged: measured again


def profile(device: str = "cpu", *, refresh: bool = False, log: Callable[[str], None] | None = None) -> MachineProfile:
    """This machine's profile: from the cache, else measured (under a minute) and cached."""
    cached = None if refresh else cached_profile(device)
    if cached is not None:
        return cached
    key = machine_key(device)
    path = _cache_path(key)
    if log:
        log(f"precision auto: measuring this machine once ({key['processor']}, {key['threads']} thread(s); cached in {path})")
    started = time.perf_counter()
    result = MachineProfile(key=key, peaks=measure_peaks(device))
    result.paths = measure_paths(device, result.bf16_pays())
    result.choice = choose(result.paths)
    result.seconds = time.perf_counter() - started
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.partial")
    partial.write_text(json.dumps(asdict(result), indent=1))
    os.replace(partial, path)  # complete or absent, also with several processes measuring at once
    return result


def inference_path(
    device: str = "cpu", *, runtimes: tuple[str, ...] | None = None, log: Callable[[str], None] | None = None
) -> str:
    """What ``precision="auto"`` runs a float model with here (one of :data:`PATHS`; of
    ``runtimes``' paths only, e.g. ``("torch",)``)."""
    override = os.environ.get("ISNET_AUTO_PATH")
    if override:
        if override not in PATHS:
            raise ValueError(f"ISNET_AUTO_PATH={override!r}: choose one of {', '.join(PATHS)}")
        return override if runtimes is None or override.split()[0] in runtimes else "torch fp32"
    measured = profile(device, log=log)
    return measured.choice if runtimes is None else choose(measured.paths, runtimes)


def training_precision(device: str = "cpu") -> str:
    """The autocast ``auto`` trains in: bfloat16 where its peaks pay (fp32 otherwise); float16 never."""
    if torch.device(device).type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    override = os.environ.get("ISNET_AUTO_PATH")
    if override:  # pinned: bf16 if the pinned inference path is bf16
        return "bf16" if override.endswith("bf16") else "fp32"
    measured = cached_profile(device) or MachineProfile(key=machine_key(device), peaks=measure_peaks(device))
    return "bf16" if measured.bf16_pays() else "fp32"


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


def resolve_training_precision(precision: str, device: str | torch.device = "cpu") -> str:
    """``precision`` itself, or for ``"auto"`` the measured :func:`training_precision`."""
    return training_precision(str(device)) if precision == "auto" else precision
