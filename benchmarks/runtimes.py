"""Every CPU inference path side by side with the published baseline, on the same weights.

Cases of ``python -m benchmarks`` (see :mod:`benchmarks.suite`):

- ``runtimes``: the benchmark's ResNet-50-D8, 512×512, K = 150 (``benchmarks.workload``):
  the published fp32 forward, ours fp32 (``FastSegmentor``), ``auto`` (what
  ``precision="auto"`` runs here), ONNX Runtime fp32 and OpenVINO fp32 on ``isnet export``'s
  graph, OpenVINO INT8 with NNCF's defaults (everything quantised) and ours INT8 (``isnet
  quantize``'s scope: attention products and classifiers in float), both calibrated on the
  benchmark image and three mirrored / shifted copies. Time, speed-up over the published
  baseline and over ours fp32, argmax agreement with ours fp32.
- ``trained`` (with ``--checkpoint``, ``--calibration``, ``--dataset``/``--data-root``): the
  same contenders on a trained model, calibrated on the user's images, over the held-out
  split at the model's test resize: time per image, agreement and mIoU.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from benchmarks import measure
from isnet.utils.numerics import agreement, relative_error


def runtime_contenders(model: nn.Module, calibration: list[Tensor], workdir: Path, log=print) -> tuple[dict[str, Any], dict]:
    """Name → an object with ``logits(images)``; and what building them cost (seconds)."""
    from benchmarks.published import PublishedISNet
    from isnet.deploy.export import export_onnx
    from isnet.deploy.fast_paths import fast_model
    from isnet.deploy.profile import inference_path
    from isnet.deploy.quantize import (
        NOTHING_FLOAT,
        FloatScope,
        ignored_scope,
        quantize_onnx,
    )
    from isnet.deploy.runtimes.onnxruntime import OnnxSegmentor
    from isnet.deploy.runtimes.openvino import OpenVinoSegmentor
    from isnet.deploy.runtimes.pytorch import FastSegmentor

    threads = torch.get_num_threads()
    costs: dict[str, float] = {}
    contenders: dict[str, Any] = {"published fp32": PublishedISNet(model).eval(), "ours fp32": FastSegmentor(model)}
    start = time.perf_counter()
    path = inference_path("cpu", log=log)
    contenders[f"auto ({path})"] = fast_model(model, log=log)
    costs["auto"] = time.perf_counter() - start
    start = time.perf_counter()
    onnx_path = export_onnx(model, workdir / "model.onnx", sample_size=tuple(calibration[0].shape[2:]))
    costs["export"] = time.perf_counter() - start
    contenders["onnxruntime fp32"] = OnnxSegmentor(onnx_path, threads=threads)
    contenders["openvino fp32"] = OpenVinoSegmentor(onnx_path, threads=threads)
    for name, scope in (("openvino int8 (NNCF defaults)", NOTHING_FLOAT), ("ours int8 (isnet quantize)", FloatScope())):
        start = time.perf_counter()
        quantized = quantize_onnx(onnx_path, calibration, ignored=ignored_scope(model, scope))
        costs[f"quantize {name}"] = time.perf_counter() - start
        contenders[name] = OpenVinoSegmentor(quantized, threads=threads)
        log(f"[runtimes] {name}: calibrated in {costs[f'quantize {name}']:.0f} s")
    return contenders, costs


def _ratios(rows: list[dict]) -> None:
    published = next(row["seconds"] for row in rows if row["name"] == "published fp32")
    ours = next(row["seconds"] for row in rows if row["name"] == "ours fp32")
    for row in rows:
        row["speedup"] = published / row["seconds"]
        row["vs_ours_fp32"] = ours / row["seconds"]


def case_runtimes(quick: bool, model: nn.Module, workdir: Path, log=print) -> dict:
    from benchmarks.workload import benchmark_image

    image = benchmark_image(512, 512)
    copies = benchmark_image(512, 512, batch=4)
    contenders, costs = runtime_contenders(model, [copies[i : i + 1] for i in range(4)], workdir, log)
    with torch.no_grad():
        times, outputs = measure.interleaved_times(
            {name: (lambda c=c: c.logits(image)) for name, c in contenders.items()}, rounds=2 if quick else 3
        )
    rows = []
    for name, seconds in times.items():
        rows.append({
            "name": name,
            "seconds": measure.median(seconds),
            "runs": len(seconds),
            "error_vs_published": relative_error(outputs[name], outputs["published fp32"]),
            "agreement_vs_fp32": agreement(outputs[name], outputs["ours fp32"], (512, 512)),
        })
    _ratios(rows)
    return {"rows": rows, "costs": costs}


def case_trained(checkpoint: str, calibration: str, dataset: str, data_root: str, *, subset_size: int = 300,
                 workdir: Path, log=print) -> dict:
    from isnet.data import DATASETS
    from isnet.data.image import find_images
    from isnet.deploy.quantize import calibration_subset, model_resize, prepare_image
    from isnet.deploy.quantize_check import compare, dataset_samples
    from isnet.training.config import DataConfig
    from isnet.weights.checkpoint import load_model

    model = load_model(checkpoint).eval()
    resize = model_resize(model)
    paths = calibration_subset(find_images([calibration]), subset_size)
    contenders, costs = runtime_contenders(model, [prepare_image(path, **resize) for path in paths], workdir, log)
    reference = contenders.pop("ours fp32")
    data = DataConfig.of(DATASETS[dataset], root=data_root, eval_fit_size=resize.get("fit"))
    split = data.build(data.val_split, train=False)
    results = compare(reference, contenders, dataset_samples(split), model.config.num_classes)
    first = next(iter(results.values()))
    rows = [{"name": "ours fp32", "seconds": first.reference_seconds / len(split), "agreement_vs_fp32": 1.0,
             "miou": 100 * first.reference_miou}]
    for name, result in results.items():  # mIoU in points
        rows.append({"name": name, "seconds": result.seconds / len(split), "agreement_vs_fp32": result.agreement,
                     "miou": 100 * result.candidate_miou, "miou_change": 100 * (result.candidate_miou - result.reference_miou)})
    _ratios(rows)
    return {"rows": rows, "costs": costs, "checkpoint": checkpoint, "images": len(split), "calibration_images": len(paths),
            "size": ", ".join(f"{key} {value[0]}×{value[1]}" for key, value in resize.items()) or "their size",
            "dataset": dataset}
