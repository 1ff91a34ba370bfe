"""Peak memory of whole-image prediction as the image grows: attention by the fused kernel vs the math kernel.

``isnet.model.context.attention.bounded_attention`` hands PyTorch's scaled-dot-product
attention dense inputs, so it takes the fused (flash) kernel, which keeps no score matrix.
Before, the features' default memory layout gave it a strided last dimension and PyTorch fell
back to its math kernel, which builds ILCM's whole HW×HW matrix; forcing that kernel with
``torch.nn.attention.sdpa_kernel`` reproduces the old path exactly. Each (size, kernel) runs
``isnet.inference.engine.predict`` on one random image in a fresh process that reports its
resident peak; a process is refused more than ``--limit-gb`` of address space, so a size the
math kernel cannot hold fails to allocate instead of taking the machine's memory:

    python -m benchmarks.attention_memory                # tiny ISNet (ResNet-18, width 8), 512² 1024² 2048²
    python -m benchmarks.attention_memory --sizes 512 1024 --threads 2
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys

KERNELS = ("fused", "math")  # now, before

RUN_ONE = """
import json, resource, sys, time

def peak_mib():  # this process's resident peak (ru_maxrss would carry the forking parent's over)
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")) / 1024

size, kernel, threads, limit = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
resource.setrlimit(resource.RLIMIT_AS, (int(limit * 2**30), resource.RLIM_INFINITY))
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from isnet.inference.engine import predict
from isnet.model.config import BackboneConfig, ISNetHeadConfig, ModelConfig
from isnet.model.segmentor import build_model
torch.set_num_threads(threads)
torch.manual_seed(0)
config = ModelConfig(num_classes=19, backbone=BackboneConfig("resnet", 18, base_channels=8, stem_channels=8),
                     head=ISNetHeadConfig(channels=16, transform_channels=8))
model = build_model(config).eval()
image = torch.randn(1, 3, size, size)
before = peak_mib()
backends = [SDPBackend.MATH] if kernel == "math" else [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]
started = time.perf_counter()
try:
    with sdpa_kernel(backends):
        predict(model, image)
    result = {"seconds": time.perf_counter() - started}
except RuntimeError as error:  # the address-space limit: the allocation that did not fit
    result = {"error": str(error).splitlines()[0]}
result.update(start_mib=before, peak_mib=peak_mib())
print(json.dumps(result))
"""


def run_one(size: int, kernel: str, threads: int, limit_gb: float) -> dict:
    command = [sys.executable, "-c", RUN_ONE, str(size), kernel, str(threads), str(limit_gb)]
    finished = subprocess.run(command, capture_output=True, text=True)
    if finished.returncode != 0:
        return {"error": (finished.stderr.strip().splitlines() or [f"exit {finished.returncode}"])[-1][:120]}
    return json.loads(finished.stdout.strip().splitlines()[-1])


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cell(result: dict) -> str:
    if "error" in result:
        wanted = re.search(r"allocate (\d+) bytes", result["error"])
        return f"fails: cannot allocate {int(wanted[1]) / 2**30:.1f} GiB" if wanted else f"fails ({result['error']})"
    return f"{result['peak_mib']:.0f} MiB (+{result['peak_mib'] - result['start_mib']:.0f}), {result['seconds']:.1f} s"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.attention_memory", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048], help="square image sides")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit-gb", type=float, default=8.0, help="address space allowed to each run")
    args = parser.parse_args(argv)

    print(f"{cpu_model()}, {args.threads} thread(s), tiny ISNet (ResNet-18, width 8), whole image, float32")
    print("| image | fused kernel (now): peak RSS (+ over the model's start), time | math kernel (before): the same |")
    print("|---|---|---|")
    for size in args.sizes:
        results = {kernel: run_one(size, kernel, args.threads, args.limit_gb) for kernel in KERNELS}
        print(f"| {size}×{size} | {cell(results['fused'])} | {cell(results['math'])} |", flush=True)


if __name__ == "__main__":
    main()
