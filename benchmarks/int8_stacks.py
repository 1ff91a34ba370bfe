"""Choosing the INT8 stack: the three candidates side by side, in one process, on the same weights.

    python -m benchmarks.int8_stacks                    # ResNet-50-D8, 512×512, K = 150, one thread
    python -m benchmarks.int8_stacks --size 256 256     # shorter

On the benchmark model (``benchmarks.workload``), calibrated on the benchmark image and
three mirrored / shifted copies, everything quantised that each stack quantises by default:

- **OpenVINO + NNCF**: ``nncf.quantize`` on the OpenVINO model of ``isnet export``'s graph;
- **ONNX Runtime static quantisation** (QDQ, per-channel int8 weights, uint8 activations) of
  the same graph, convolutions quantised;
- **PyTorch PT2E** with the x86 Inductor quantizer (``torchao.quantization.pt2e``, when
  torchao is installed), BatchNorm folded, compiled by Inductor with frozen weights.

Prints time, the speed-up over our float32 PyTorch path and the argmax agreement with it,
and how long each stack took to calibrate (and compile).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks import measure
from isnet.utils.numerics import agreement


def onnxruntime_int8(onnx_path: Path, calibration: list[torch.Tensor], output: Path) -> Any:
    """ONNX Runtime's static QDQ quantisation of the convolutions (per-channel int8 weights, uint8 activations)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from isnet.deploy.runtimes.onnxruntime import OnnxSegmentor

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.images = iter(calibration)

        def get_next(self):
            image = next(self.images, None)
            return None if image is None else {"images": image.numpy()}

    quantize_static(str(onnx_path), str(output), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=["Conv"])
    return OnnxSegmentor(output, threads=torch.get_num_threads())


class _Compiled:
    def __init__(self, module) -> None:
        self.module = module

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.module(images)


def pt2e_int8(model: torch.nn.Module, calibration: list[torch.Tensor]) -> Any:
    """PT2E with the x86 Inductor quantizer (torchao), compiled with frozen weights."""
    import torch._inductor.config as inductor_config
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as x86
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from isnet.deploy.export import exportable
    from isnet.deploy.runtimes.pytorch import fold_batchnorm

    module = exportable(model)
    fold_batchnorm(module.model)
    with torch.no_grad():
        graph = torch.export.export(module, (calibration[0],)).module()
    # Our residual blocks call one ReLU module several times; the quantizer's pattern matching
    # wants one partition per call, so every call gets its own module name.
    for index, node in enumerate(graph.graph.nodes):
        stack = node.meta.get("nn_module_stack")
        if stack and node.op == "call_function":
            key, (name, kind) = list(stack.items())[-1]
            node.meta["nn_module_stack"] = {**stack, key: (f"{name}@{index}", kind)}
    quantizer = x86.X86InductorQuantizer()
    quantizer.set_global(x86.get_default_x86_inductor_quantization_config())
    with torch.no_grad():
        prepared = prepare_pt2e(graph, quantizer)
        for image in calibration:
            prepared(image)
        converted = convert_pt2e(prepared)
    inductor_config.freezing = True
    compiled = _Compiled(torch.compile(converted))
    compiled.logits(calibration[0])  # compiles
    return compiled


def main(argv: list[str] | None = None) -> None:
    from benchmarks.report import machine_description
    from benchmarks.workload import benchmark_image, benchmark_model
    from isnet.deploy.export import export_onnx
    from isnet.deploy.quantize import NOTHING_FLOAT, ignored_scope, quantize_onnx
    from isnet.deploy.runtimes.openvino import OpenVinoSegmentor
    from isnet.deploy.runtimes.pytorch import FastSegmentor

    parser = argparse.ArgumentParser(prog="python -m benchmarks.int8_stacks", description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, nargs=2, default=(512, 512))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = benchmark_model(150)
    image = benchmark_image(*args.size)
    copies = benchmark_image(*args.size, batch=4)
    calibration = [copies[i : i + 1] for i in range(4)]
    contenders: dict[str, Any] = {"ours fp32 (PyTorch)": FastSegmentor(model)}
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="isnet-int8-stacks-") as tmp:
        onnx_path = export_onnx(model, Path(tmp) / "model.onnx", sample_size=tuple(args.size))
        builders = {
            "OpenVINO + NNCF int8": lambda: OpenVinoSegmentor(
                quantize_onnx(onnx_path, calibration, ignored=ignored_scope(model, NOTHING_FLOAT)), threads=args.threads),
            "ONNX Runtime QDQ int8": lambda: onnxruntime_int8(onnx_path, calibration, Path(tmp) / "qdq.onnx"),
            "PyTorch PT2E x86 Inductor int8": lambda: pt2e_int8(model, calibration),
        }
        for name, build in builders.items():
            start = time.perf_counter()
            try:
                contenders[name] = build()
            except ImportError as error:  # torchao not installed
                print(f"{name}: skipped ({error})")
                continue
            seconds[name] = time.perf_counter() - start
            print(f"{name}: calibrated (and compiled) in {seconds[name]:.0f} s", flush=True)
        with torch.no_grad():
            times, outputs = measure.interleaved_times({n: (lambda c=c: c.logits(image)) for n, c in contenders.items()},
                                                       rounds=args.rounds)
    reference = "ours fp32 (PyTorch)"
    base = measure.median(times[reference])
    print(f"\nResNet-50-D8 benchmark model, {args.size[0]}×{args.size[1]}, K = 150; {machine_description('cpu')}; "
          f"{args.threads} thread(s), median of {args.rounds} interleaved rounds\n")
    print("| stack | time (s) | vs ours fp32 | argmax agreement vs ours fp32 | calibration (+ compile) (s) |")
    print("|---|---|---|---|---|")
    for name, values in times.items():
        cost = f"{seconds[name]:.0f}" if name in seconds else "–"
        print(f"| {name} | {measure.median(values):.3f} | {base / measure.median(values):.2f}× | "
              f"{agreement(outputs[name], outputs[reference], tuple(args.size)):.2%} | {cost} |")


if __name__ == "__main__":
    main()
