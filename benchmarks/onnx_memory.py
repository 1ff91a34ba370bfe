"""Peak memory and time of ONNX Runtime on a large image: ILCM's scores in query blocks vs whole.

ONNX (opset 17) has no fused attention, so an exported ISNet builds ILCM's attention scores
explicitly. ``isnet export`` splits the queries into
:data:`isnet.model.context.attention.EXPORT_QUERY_BLOCKS` blocks; this script exports the same
model a second time with one block (the whole HW×HW matrix) and runs both graphs, each in
a fresh process that reports its resident peak, on one image:

    python -m benchmarks.onnx_memory                                  # tiny ISNet, 1024×2048, ~1 min
    python -m benchmarks.onnx_memory --preset isnet_resnet50os8_cityscapes --size 1024 2048
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from isnet.deploy.export import export_onnx
from isnet.model.config import BackboneConfig, ISNetHeadConfig, ModelConfig
from isnet.model.context import attention
from isnet.model.segmentor import build_model
from isnet.weights.presets import create_model

TINY = ModelConfig(
    num_classes=19,
    backbone=BackboneConfig("resnet", 18, base_channels=8, stem_channels=8),
    head=ISNetHeadConfig(channels=16, transform_channels=8),
)

RUN_ONE = """
import json, resource, sys, time
import numpy as np, onnxruntime as ort
path, height, width, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
options = ort.SessionOptions()
options.intra_op_num_threads = threads
session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
image = np.random.default_rng(0).standard_normal((1, 3, height, width), dtype=np.float32)
started = time.perf_counter()
logits = session.run(None, {"images": image})[0]
print(json.dumps({"seconds": time.perf_counter() - started,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "checksum": float(np.abs(logits).sum())}))
"""


def run_graph(path: Path, size: tuple[int, int], threads: int) -> dict:
    command = [sys.executable, "-c", RUN_ONE, str(path), str(size[0]), str(size[1]), str(threads)]
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.onnx_memory", description=__doc__.split("\n")[0])
    parser.add_argument("--preset", help="a preset name (random weights); default: a tiny ResNet-18 ISNet")
    parser.add_argument("--size", type=int, nargs=2, default=(1024, 2048), metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    torch.manual_seed(0)
    model = create_model(args.preset) if args.preset else build_model(TINY)
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for blocks in (attention.EXPORT_QUERY_BLOCKS, 1):
            path = Path(folder) / f"blocks{blocks}.onnx"
            export_onnx(model.eval(), path, sample_size=(64, 64), query_blocks=blocks)
            results[blocks] = run_graph(path, tuple(args.size), args.threads)
            print(f"{blocks:>3} query block(s): {results[blocks]}", flush=True)
    split, whole = results[attention.EXPORT_QUERY_BLOCKS], results[1]
    height, width = args.size
    print(
        f"{args.preset or 'tiny ISNet'}, 1×3×{height}×{width}, {args.threads} thread(s): "
        f"peak {split['peak_mib']:.0f} vs {whole['peak_mib']:.0f} MiB ({split['peak_mib'] / whole['peak_mib']:.2f}×), "
        f"time {split['seconds']:.1f} vs {whole['seconds']:.1f} s ({whole['seconds'] / split['seconds']:.2f}× faster); "
        f"same logits: {abs(split['checksum'] / whole['checksum'] - 1) < 1e-4}"
    )


if __name__ == "__main__":
    main()
