"""Peak memory and time of ONNX Runtime on a large image: ILCM's attention a block of queries at a time vs whole.

ONNX (opset 17) has no fused attention, so an exported ISNet builds ILCM's attention scores
explicitly. ``isnet export`` computes them in a Loop over blocks of
:data:`isnet.deploy.onnx_attention.QUERY_BLOCK` queries; this script exports the same model a
second time without the Loop (the whole HW×HW matrix, as graphs were first written) and runs
both graphs, each in a fresh process that reports its resident peak, on one image per size:

    python -m benchmarks.onnx_memory                                  # tiny ISNet, 512² 1024² 2048², ~2 min
    python -m benchmarks.onnx_memory --preset isnet_resnet50os8_cityscapes --sizes 1024x2048
    python -m benchmarks.onnx_memory --runtime openvino --sizes 1024x2048
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
from isnet.deploy.onnx_attention import QUERY_BLOCK
from isnet.model.segmentor import build_model
from isnet.weights.presets import create_model

TINY = ModelConfig(
    num_classes=19,
    backbone=BackboneConfig("resnet", 18, base_channels=8, stem_channels=8),
    head=ISNetHeadConfig(channels=16, transform_channels=8),
)

RUN_ONE = """
import json, resource, sys, time
import numpy as np
path, height, width, threads, runtime = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
if runtime == "onnxruntime":
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    run = lambda image: session.run(None, {"images": image})[0]
else:
    import openvino as ov
    compiled = ov.Core().compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads})
    run = lambda image: compiled({"images": image})[0]
image = np.random.default_rng(0).standard_normal((1, 3, height, width), dtype=np.float32)
started = time.perf_counter()
logits = run(image)
print(json.dumps({"seconds": time.perf_counter() - started,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "checksum": float(np.abs(logits).sum())}))
"""


def run_graph(path: Path, size: tuple[int, int], threads: int, runtime: str = "onnxruntime") -> dict:
    command = [sys.executable, "-c", RUN_ONE, str(path), str(size[0]), str(size[1]), str(threads), runtime]
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.onnx_memory", description=__doc__.split("\n")[0])
    parser.add_argument("--preset", help="a preset name (random weights); default: a tiny ResNet-18 ISNet")
    parser.add_argument("--sizes", nargs="+", default=["512x512", "1024x1024", "2048x2048"], metavar="HxW")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runtime", choices=("onnxruntime", "openvino"), default="onnxruntime")
    parser.add_argument("--skip-whole-above", type=int, default=1024 * 2048, metavar="PIXELS",
                        help="run the graph without the Loop only up to this many pixels (it needs HW² scores)")
    args = parser.parse_args()
    sizes = [tuple(int(side) for side in size.split("x")) for size in args.sizes]

    torch.manual_seed(0)
    model = create_model(args.preset) if args.preset else build_model(TINY)
    name = args.preset or "tiny ISNet"
    with tempfile.TemporaryDirectory() as folder:
        graphs = {"looped": Path(folder) / "looped.onnx", "whole": Path(folder) / "whole.onnx"}
        export_onnx(model.eval(), graphs["looped"], sample_size=(64, 64))
        export_onnx(model.eval(), graphs["whole"], sample_size=(64, 64), query_block=None)
        for height, width in sizes:
            looped = run_graph(graphs["looped"], (height, width), args.threads, args.runtime)
            line = (f"{name}, {args.runtime}, 1×3×{height}×{width}, {args.threads} thread(s): blocks of {QUERY_BLOCK} queries: "
                    f"peak {looped['peak_mib']:.0f} MiB, {looped['seconds']:.1f} s")
            if height * width <= args.skip_whole_above:
                whole = run_graph(graphs["whole"], (height, width), args.threads, args.runtime)
                line += (f"; whole: peak {whole['peak_mib']:.0f} MiB, {whole['seconds']:.1f} s "
                         f"({looped['peak_mib'] / whole['peak_mib']:.2f}× the memory); same logits: "
                         f"{abs(looped['checksum'] / whole['checksum'] - 1) < 1e-4}")
            print(line, flush=True)


if __name__ == "__main__":
    main()
