"""``precision="auto"`` for inference: the fastest path of this machine, measured once and cached.

Which runtime is fastest, and whether bfloat16 pays, depend on the CPU (see
:mod:`isnet.utils.machine`, which keys and caches the measurement). ``auto`` measures:

- the **peaks** (:func:`measure_peaks`): GFLOP/s of a matrix product and of a 3×3
  convolution in float32, bfloat16 and float16 in PyTorch, and with OpenVINO in float32 and int8;
- the **paths** (:func:`measure_paths`): a ResNet-50-D8 ISNet at 256×256 (random weights),
  timed interleaved (best of three rounds) in PyTorch float32 (``FastSegmentor``), in bfloat16 where the peaks say
  it can pay, in ONNX Runtime and in OpenVINO (float32, on the graph ``isnet export`` writes).

It then picks (:func:`choose`) the fastest path that needs no calibration and keeps float32's
results: PyTorch float32 unless another path is at least :data:`MARGIN` faster, so ``auto``
is never slower than float32 beyond the probe's noise. bfloat16 is a candidate only where
its peaks pay (it keeps 99.9 % of a trained model's pixels, ``docs/benchmarks.md``). An INT8
model (``isnet quantize``) runs on its own INT8 path whatever the probe says.
Training picks its autocast from the peaks alone (:func:`isnet.utils.machine.training_precision`).

``ISNET_AUTO_PATH`` (e.g. ``torch fp32``) skips the measurement: for CI and reproducible runs.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from isnet.deploy.runtimes import RUNTIMES
from isnet.utils.atomic_files import write_atomically
from isnet.utils.machine import (
    MachineProfile,
    cached_profile,
    gflops_rate,
    installed_version,
    machine_key,
    measure_torch_peaks,
    profile_cache_path,
    synchronize,
)
from isnet.utils.precision import Precision

MARGIN = 1.05  # another path must be this much faster than PyTorch float32 to be picked
PROBE_SIZE = (256, 256)


def candidate_paths() -> tuple[str, ...]:
    """The inference paths ``auto`` chooses from: PyTorch float32 and bfloat16, each registered graph runtime in float32."""
    return ("torch fp32", "torch bf16", *(f"{runtime.profile_name} fp32" for runtime in RUNTIMES.values()))


def measure_peaks(device: str = "cpu") -> dict[str, dict[str, float]]:
    """PyTorch's peaks (:func:`isnet.utils.machine.measure_torch_peaks`); on a CPU with OpenVINO
    also its float32 and int8 matrix product and convolution (the kernels of ``isnet quantize``'s models)."""
    peaks = measure_torch_peaks(device)
    if torch.device(device).type == "cpu" and installed_version("openvino") is not None:
        from isnet.deploy.runtimes.openvino import convolution_probe, matmul_probe

        peaks["openvino matmul"] = {name: gflops_rate(matmul_probe(name == "int8"), (256, 512, 1024)) for name in ("fp32", "int8")}
        peaks["openvino conv"] = {name: gflops_rate(convolution_probe(name == "int8"), (16, 32, 64)) for name in ("fp32", "int8")}
    return peaks


def probe_candidates(device: str, bf16: bool, workdir: Path, size: tuple[int, int] = PROBE_SIZE) -> dict[str, Callable[[], Any]]:
    """The inference paths available here, each a call on the probe model."""
    from isnet.deploy.export import export_onnx
    from isnet.deploy.runtimes.pytorch import FastSegmentor
    from isnet.weights.presets import create_model

    torch.manual_seed(0)
    model = create_model("isnet_resnet50os8_ade20k").eval().to(device)
    images = torch.randn(1, 3, *size, device=device)
    candidates: dict[str, Callable[[], Any]] = {"torch fp32": (lambda m=FastSegmentor(model): m.logits(images))}
    if bf16:
        candidates["torch bf16"] = lambda m=FastSegmentor(model, precision=Precision.BF16): m.logits(images)
    if torch.device(device).type != "cpu":
        return candidates
    threads = torch.get_num_threads()
    runtimes = [runtime for runtime in RUNTIMES.values() if ".onnx" in runtime.reads and runtime.available()]
    if runtimes and installed_version("onnx") is not None:  # the runtimes run the graph `isnet export` writes with onnx
        onnx_path = export_onnx(model, workdir / "probe.onnx", sample_size=size)
        for runtime in runtimes:
            candidates[f"{runtime.profile_name} fp32"] = lambda r=runtime(onnx_path, threads=threads): r.logits(images.cpu())
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
                    synchronize(run(), device)
                    times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}


def choose(paths: dict[str, float], runtimes: tuple[str, ...] | None = None) -> str:
    """The fastest path (of ``runtimes``' paths, default all), unless it is within :data:`MARGIN`
    of PyTorch float32: then float32."""
    allowed = {path: seconds for path, seconds in paths.items() if runtimes is None or path.split()[0] in runtimes}
    fastest = min(allowed, key=allowed.__getitem__)
    return fastest if allowed[fastest] * MARGIN <= paths["torch fp32"] else "torch fp32"


def profile(device: str = "cpu", *, refresh: bool = False, log: Callable[[str], None] | None = None) -> MachineProfile:
    """This machine's profile: from the cache, else measured (under a minute) and cached."""
    cached = None if refresh else cached_profile(device)
    if cached is not None:
        return cached
    key = machine_key(device)
    path = profile_cache_path(key)
    if log:
        log(f"precision auto: measuring this machine once ({key['processor']}, {key['threads']} thread(s); cached in {path})")
    started = time.perf_counter()
    result = MachineProfile(key=key, peaks=measure_peaks(device))
    result.paths = measure_paths(device, result.bf16_pays())
    result.choice = choose(result.paths)
    result.seconds = time.perf_counter() - started
    # complete or absent, also with several processes measuring at once
    write_atomically(path, lambda temporary: temporary.write_text(json.dumps(asdict(result), indent=1)))
    return result


def inference_path(
    device: str = "cpu", *, runtimes: tuple[str, ...] | None = None, log: Callable[[str], None] | None = None
) -> str:
    """What ``precision="auto"`` runs a float model with here (one of :func:`candidate_paths`; of
    ``runtimes``' paths only, e.g. ``("torch",)``)."""
    override = os.environ.get("ISNET_AUTO_PATH")
    if override:
        if override not in candidate_paths():
            raise ValueError(f"ISNET_AUTO_PATH={override!r}: choose one of {', '.join(candidate_paths())}")
        return override if runtimes is None or override.split()[0] in runtimes else "torch fp32"
    measured = profile(device, log=log)
    return measured.choice if runtimes is None else choose(measured.paths, runtimes)


