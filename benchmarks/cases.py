"""The cases of ``python -m benchmarks`` (see :mod:`benchmarks.suite` for what each measures).

Each ``case_*`` function runs its contenders side by side and returns its figures as a
dict of rows; :mod:`benchmarks.report` prints them.
"""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks import measure
from benchmarks.contenders import build_contender, train_step
from benchmarks.published import (
    PublishedISNet,
    published_attention,
    published_region_map,
    published_slcm,
)
from benchmarks.workload import (
    PRESET_FOR_CLASSES,
    benchmark_image,
    benchmark_model,
    classes_present,
    region_inputs,
)
from isnet.deploy.runtimes.pytorch import fold_batchnorm, use_region_attention
from isnet.model.context.slcm import (
    Regions,
    SemanticLevelContext,
    find_regions,
    region_representations,
)
from isnet.model.segmentor import build_model
from isnet.training.losses import segmentation_loss
from isnet.utils.child_process import package_root
from isnet.utils.numerics import agreement, relative_error
from isnet.utils.precision import autocast
from isnet.weights.presets import get_config

DEFAULT_FIXTURES = package_root().parent / "tests" / "fixtures" / "reference"  # the checkout's own copy


def _meta_flops(num_classes: int, shape: tuple[int, ...], contender: str) -> int:
    with torch.device("meta"):
        model = build_model(get_config(PRESET_FOR_CLASSES[num_classes], num_classes=num_classes)).eval()
        images = torch.empty(shape)
    if contender == "ours":
        use_region_attention(model)
        return measure.count_flops(lambda: model.logits(images))
    return measure.count_flops(lambda: PublishedISNet(model).logits(images))


def _row(name: str, seconds: list[float], flops: int | None, peak: dict[str, float], baseline: float | None, **extra) -> dict:
    time_s = measure.median(seconds)
    row: dict[str, Any] = {"name": name, "seconds": time_s, "runs": len(seconds)}
    if baseline is not None:
        row["speedup"] = baseline / time_s
    if flops is not None:
        row["gflop"] = flops / 1e9
        row["gflops"] = flops / time_s / 1e9
        precision = "bf16" if "bf16" in name or "fp16" in name else "fp32"
        if precision in peak:
            row["peak_fraction"] = row["gflops"] / peak[precision]
    row.update(extra)
    return row


def case_peak(quick: bool, device: str) -> dict:
    """The 2048³ float32 and bfloat16 matrix-multiply peaks; the machine's peaks and what ``auto``
    picks (:mod:`isnet.deploy.profile`). bfloat16 at 2048³ only where it is not emulated (minutes otherwise)."""
    from isnet.deploy.profile import inference_path, measure_peaks

    peaks = measure_peaks(device)
    result = {"fp32": measure.matmul_peak(torch.float32, device=device), "peaks": peaks}
    native = peaks["matmul"]["bf16"] >= 0.5 * peaks["matmul"]["fp32"]
    result["bf16"] = measure.matmul_peak(torch.bfloat16, device=device) if native else peaks["matmul"]["bf16"]
    result["auto"] = inference_path(device) if torch.device(device).type == "cpu" else "torch fp32"
    return result


def case_infer512(quick: bool, device: str, peak: dict, compile: bool, model: torch.nn.Module) -> dict:
    images = benchmark_image(512, 512).to(device)
    contenders = {
        "published fp32": build_contender(model, "published"),
        "ours fp32": build_contender(model, "ours", "fp32"),
        "ours bf16": build_contender(model, "ours", "bf16"),
    }
    if compile:
        contenders["ours bf16 compiled"] = build_contender(model, "ours", "bf16", compile=True)
        if not quick:
            contenders["ours fp32 compiled"] = build_contender(model, "ours", "fp32", compile=True)
    stage1: list[torch.Tensor] = []  # D, from the published contender (the others run copies)
    hook = model.head.classifier_stage1.register_forward_hook(lambda m, a, out: stage1.append(out.detach()))
    outputs, compile_seconds = {}, {}
    for name, contender in contenders.items():  # warm-up (and compilation), outputs for the checks
        start = time.perf_counter()
        outputs[name] = contender.logits(images)
        if "compiled" in name:
            compile_seconds[name] = time.perf_counter() - start
    hook.remove()
    times, _ = measure.interleaved_times(
        {name: (lambda c=c: c.logits(images)) for name, c in contenders.items()}, rounds=2 if quick else 5, warmup=0, device=device
    )
    flops = {side: _meta_flops(150, tuple(images.shape), side) for side in ("published", "ours")}
    baseline = measure.median(times["published fp32"])
    rows = []
    for name, seconds in times.items():
        extra: dict[str, Any] = {"error_vs_published": relative_error(outputs[name], outputs["published fp32"])}
        if "bf16" in name:
            extra["agreement_vs_fp32"] = agreement(outputs[name], outputs["ours fp32"])
            extra["agreement_vs_fp32_image"] = agreement(outputs[name], outputs["ours fp32"], (512, 512))
        if name in compile_seconds:
            extra["compile_seconds"] = compile_seconds[name]
        rows.append(_row(name, seconds, flops["published" if "published" in name else "ours"], peak, baseline, **extra))
    result = {
        "rows": rows,
        "stage1_classes": classes_present(stage1[0]),
        "stage2_classes": classes_present(outputs["published fp32"]),
    }
    if not quick:
        with torch.no_grad():
            result["published_vs_stock_error"] = relative_error(outputs["published fp32"], model.logits(images))
    return result


def case_slcm(quick: bool, device: str, peak: dict) -> dict:
    channels, num_classes, size, present = 512, 150, (128, 128), 40
    feats, logits = region_inputs(channels, num_classes, size, present)
    feats, logits = feats.to(device), logits.to(device)
    image_context = torch.randn(feats.shape, generator=torch.Generator().manual_seed(1)).to(device)
    module = SemanticLevelContext(channels, 256).to(device).eval()
    # Ours as FastSegmentor prepares it: region attention, BatchNorm folded, channels-last.
    module_cl = fold_batchnorm(use_region_attention(copy.deepcopy(module))).to(memory_format=torch.channels_last)
    feats_cl, context_cl = feats.contiguous(memory_format=torch.channels_last), image_context.contiguous(memory_format=torch.channels_last)

    def ours_context(m, f, precision):
        with torch.no_grad(), autocast(precision, device):
            regions = find_regions(f, logits)
            return m.attention.forward_distinct(f, regions.representations.to(f.dtype), regions.counts, regions.labels).float()

    def ours_module(m, f, c, precision):
        with torch.no_grad(), autocast(precision, device):
            return m(f, logits, c).float()

    with torch.no_grad():
        groups = {
            "region aggregation (the loop)": {
                "published loop": lambda: published_region_map(feats, logits),
                "ours (map)": lambda: region_representations(feats, logits),
                "ours (regions only)": lambda: find_regions(feats, logits),
            },
            "A_sl = aggregation + attention": {
                "published fp32": lambda: published_attention(module.attention, feats, *(2 * [published_region_map(feats, logits)])),
                "ours fp32": lambda: ours_context(module_cl, feats_cl, "fp32"),
                "ours bf16": lambda: ours_context(module_cl, feats_cl, "bf16"),
            },
            "whole SLCM (with the 3×3 fusion conv)": {
                "published fp32": lambda: published_slcm(module, feats, logits, image_context),
                "ours fp32": lambda: ours_module(module_cl, feats_cl, context_cl, "fp32"),
                "ours bf16": lambda: ours_module(module_cl, feats_cl, context_cl, "bf16"),
            },
        }
        result: dict[str, Any] = {"classes_present": int(torch.unique(logits.argmax(1)).numel()), "groups": {}}
        for group, contenders in groups.items():
            times, outputs = measure.interleaved_times(contenders, rounds=1 if quick else 5, device=device)
            baseline_name = next(iter(contenders))
            baseline = measure.median(times[baseline_name])
            rows = []
            for name, seconds in times.items():
                output = outputs[name]
                if isinstance(output, Regions):  # K representations: spread over their regions to compare
                    output = output.to_map(*feats.shape[2:], feats.dtype)
                rows.append(_row(name, seconds, None, peak, baseline, error_vs_published=relative_error(output, outputs[baseline_name])))
            result["groups"][group] = rows
    return result


def case_whole1024(quick: bool, device: str, peak: dict, workdir: Path) -> dict:
    size = (1024, 2048)
    model = benchmark_model(19, calibration_size=(256, 512))
    weights = workdir / "whole1024.pt"
    torch.save(model.state_dict(), weights)
    configurations = [("published", "fp32"), ("ours", "fp32"), ("ours", "bf16")]
    graphs = _whole1024_graphs(model, workdir) if torch.device(device).type == "cpu" else {}
    configurations += list(graphs)
    runs = 1 if quick else 2
    results = {}
    for contender, precision in configurations:
        name = f"{contender} {precision}"
        spec = dict(contender=contender, precision=precision, num_classes=19, size=list(size), batch=1, weights=str(weights),
                    runs=runs, device=device, threads=torch.get_num_threads(), graph=str(graphs.get((contender, precision))),
                    logits=str(workdir / f"whole1024_{contender}_{precision}.npy"))
        results[name] = measure.run_child(spec)
    shape = (1, 3, *size)
    flops = {"published": _meta_flops(19, shape, "published"), "ours": _meta_flops(19, shape, "ours")}
    baseline = measure.median(results["published fp32"]["seconds"])
    baseline_peak = results["published fp32"]["peak_mb"]
    logits = {name: torch.from_numpy(np.load(workdir / f"whole1024_{c}_{p}.npy")) for (c, p), name in zip(configurations, results)}
    rows = []
    for name, result in results.items():
        extra = {
            "peak_mb": result["peak_mb"],
            "before_mb": result["before_mb"],
            "memory_ratio": result["peak_mb"] / baseline_peak,
            "error_vs_published": relative_error(logits[name], logits["published fp32"]),
        }
        if name != "ours fp32":
            extra["agreement_vs_fp32"] = agreement(logits[name], logits["ours fp32"])
        rows.append(_row(name, result["seconds"], flops["published" if "published" in name else "ours"], peak, baseline, **extra))
    hw = (size[0] // 8) * (size[1] // 8)
    return {"rows": rows, "attention_matrix_gb": hw * hw * 4 / 1e9}


def _whole1024_graphs(model: torch.nn.Module, workdir: Path) -> dict[tuple[str, str], Path]:
    """The CPU runtimes' contenders of ``whole1024``: ``isnet export``'s graph in ONNX Runtime and
    OpenVINO, and the INT8 model ``isnet quantize`` makes of it (calibrated on the benchmark
    image at 256×512 and three mirrored / shifted copies). Only the runtimes installed here."""
    from isnet.deploy.export import export_onnx
    from isnet.deploy.quantize import (
        FloatScope,
        ignored_scope,
        quantize_onnx,
        write_int8,
    )
    from isnet.utils.machine import installed_version

    graphs: dict[tuple[str, str], Path] = {}
    if installed_version("onnxruntime") is None and installed_version("openvino") is None:
        return graphs
    onnx_path = export_onnx(model, workdir / "whole1024.onnx", sample_size=(256, 512))
    if installed_version("onnxruntime") is not None:
        graphs["onnxruntime", "fp32"] = onnx_path
    if installed_version("openvino") is not None:
        graphs["openvino", "fp32"] = onnx_path
        copies = benchmark_image(256, 512, batch=4)
        scope = FloatScope()
        quantized = quantize_onnx(onnx_path, [copies[i : i + 1] for i in range(4)], ignored=ignored_scope(model, scope))
        graphs["openvino", "int8"] = write_int8(quantized, model, workdir / "whole1024_int8.xml", scope)
    return graphs


def case_train(quick: bool, device: str, peak: dict, model: torch.nn.Module) -> dict:
    images = benchmark_image(512, 512, batch=2).to(device)
    labels = torch.randint(0, 150, (2, 512, 512), generator=torch.Generator().manual_seed(0)).to(device)
    labels[:, :32] = 255  # some ignored pixels, as in padded crops
    steps = {
        "published fp32": train_step(model, "published", "fp32", images, labels, segmentation_loss),
        "ours bf16": train_step(model, "ours", "bf16", images, labels, segmentation_loss),
    }
    if not quick:
        steps["ours fp32"] = train_step(model, "ours", "fp32", images, labels, segmentation_loss)

    first_losses: dict[str, float] = {}

    def seeded(step, name):
        def run():
            torch.manual_seed(0)  # the same dropout masks on every side
            loss = step()
            first_losses.setdefault(name, float(loss))
            return loss

        return run

    # Quick: one step each, no warm-up (both sides pay their first-step costs alike).
    times, _ = measure.interleaved_times({n: seeded(s, n) for n, s in steps.items()}, rounds=1 if quick else 3, warmup=0 if quick else 1, device=device)
    losses = dict(first_losses)
    baseline = measure.median(times["published fp32"])
    rows = []
    for name, seconds in times.items():
        rows.append(
            _row(name, seconds, None, peak, baseline, images_per_second=images.shape[0] / measure.median(seconds),
                 first_loss=float(losses[name]), loss_relative_difference=abs(float(losses[name]) / float(losses["published fp32"]) - 1))
        )
    return {"rows": rows}


def case_onnx(quick: bool, device: str, workdir: Path, infer512: dict | None, model: torch.nn.Module) -> dict:
    from isnet.deploy.export import export_onnx
    from isnet.deploy.runtimes.onnxruntime import OnnxSegmentor
    from isnet.weights.released import from_released_config, load_released_checkpoint

    directories = [DEFAULT_FIXTURES]
    if os.environ.get("ISNET_REFERENCE_FIXTURES"):
        directories.append(Path(os.environ["ISNET_REFERENCE_FIXTURES"]))
    stems: dict[str, Path] = {}
    for directory in directories:
        for npz in sorted(directory.glob("*.npz")):
            if npz.with_suffix(".pth").exists() and npz.with_suffix(".json").exists():
                stems.setdefault(npz.stem, directory)
    rows = []
    for stem, directory in stems.items():
        meta = json.loads((directory / f"{stem}.json").read_text())
        arrays = np.load(directory / f"{stem}.npz")
        fixture_model = build_model(from_released_config(meta))
        load_released_checkpoint(fixture_model, directory / f"{stem}.pth")
        fixture_model.eval()
        image = torch.from_numpy(arrays["image"])
        path = export_onnx(fixture_model, workdir / f"{stem}.onnx", sample_size=tuple(image.shape[2:]))
        session = OnnxSegmentor(path, threads=torch.get_num_threads())  # the same threads as PyTorch
        reference = torch.from_numpy(arrays["logits_stage2"])
        rows.append(_onnx_row(stem, fixture_model, session, image, reference=reference, repeats=5))
    result: dict[str, Any] = {"fixtures": rows}
    image = benchmark_image(512, 512)
    path = export_onnx(model, workdir / "r50_512.onnx", sample_size=(512, 512))
    session = OnnxSegmentor(path, threads=torch.get_num_threads())
    result["r50_512"] = _onnx_row("ResNet-50-D8 512×512 K=150", model, session, image, repeats=1 if quick else 5)
    if infer512:
        fast = {row["name"]: row["seconds"] for row in infer512["rows"]}
        result["r50_512"]["pytorch_fast_seconds"] = fast
    return result


def _onnx_row(name: str, model, session, image: torch.Tensor, reference: torch.Tensor | None = None, repeats: int = 3) -> dict:
    with torch.no_grad():
        contenders = {"pytorch fp32": lambda: model.logits(image), "onnxruntime fp32": lambda: session.logits(image)}
        times, outputs = measure.interleaved_times(contenders, rounds=repeats)
    row = {
        "name": name,
        "pytorch_seconds": measure.median(times["pytorch fp32"]),
        "onnxruntime_seconds": measure.median(times["onnxruntime fp32"]),
        "max_abs_error_vs_pytorch": float((outputs["onnxruntime fp32"] - outputs["pytorch fp32"]).abs().max()),
        "relative_error_vs_pytorch": relative_error(outputs["onnxruntime fp32"], outputs["pytorch fp32"]),
        "agreement_vs_pytorch": agreement(outputs["onnxruntime fp32"], outputs["pytorch fp32"]),
    }
    if reference is not None:
        row["relative_error_vs_fixture"] = relative_error(outputs["onnxruntime fp32"], reference)
    return row
