"""The speed and memory benchmarks: ours against the published computation, side by side.

``isnet bench`` runs every case; ``isnet bench --quick`` the same cases with fewer
repetitions (under 10 minutes on 2 CPU cores), and prints its headline ratios on its last
line. Cases:

- ``peak``: the machine's float32 and bfloat16 matrix-multiply peaks (GFLOP/s);
- ``infer512``: ResNet-50-D8, 512×512, K = 150, stage-1 argmax over ≥ 30 classes: the
  published forward (float32) against ours in float32 and bfloat16 (and compiled);
- ``slcm``: SLCM alone (C = 512, 128×128, K = 150, ≥ 30 classes): the region aggregation,
  ``A_sl`` (aggregation + attention) and the whole module with its fusion conv;
- ``whole1024``: ResNet-50-D8, one 1024×2048 image, K = 19: time and peak memory, each
  configuration in a fresh process;
- ``train``: one SGD step on 2×512×512 crops (K = 150), images per second;
- ``onnx``: ONNX Runtime against PyTorch float32 on the reference fixtures and on the
  512×512 model: agreement and latency.

Every figure of :func:`run` lands in one JSON document (``--output``) and in a Markdown
table (``--markdown``), which ``docs/benchmarks.md`` reproduces.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..context.slcm import Regions, SemanticLevelContext, find_regions, region_representations
from ..losses import segmentation_loss
from ..numerics import agreement, relative_error
from ..presets import get_config
from ..runtime import fold_batchnorm, use_region_attention
from ..segmentor import build_model
from . import CASES, add_arguments, measure
from .contenders import build_contender, train_step
from .published import PublishedISNet, published_attention, published_region_map, published_slcm
from .workload import PRESET_FOR_CLASSES, benchmark_image, benchmark_model, classes_present, region_inputs

DEFAULT_FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "reference"


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


# ----------------------------------------------------------------------------- cases


def case_peak(quick: bool, device: str) -> dict:
    result = {"fp32": measure.matmul_peak(torch.float32, device=device)}
    result["bf16"] = measure.matmul_peak(torch.bfloat16, device=device)
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
        with torch.no_grad(), _autocast(device, precision):
            regions = find_regions(f, logits)
            return m.attention.forward_distinct(f, regions.representations.to(f.dtype), regions.counts, regions.labels).float()

    def ours_module(m, f, c, precision):
        with torch.no_grad(), _autocast(device, precision):
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


def _autocast(device: str, precision: str):
    from contextlib import nullcontext

    from ..runtime import AUTOCAST_DTYPES

    if precision == "fp32":
        return nullcontext()
    return torch.autocast(torch.device(device).type, dtype=AUTOCAST_DTYPES[precision])


def case_whole1024(quick: bool, device: str, peak: dict, workdir: Path) -> dict:
    size = (1024, 2048)
    model = benchmark_model(19, calibration_size=(256, 512))
    weights = workdir / "whole1024.pt"
    torch.save(model.state_dict(), weights)
    configurations = [("published", "fp32"), ("ours", "fp32"), ("ours", "bf16")]
    runs = 1 if quick else 2
    results = {}
    for contender, precision in configurations:
        name = f"{contender} {precision}"
        spec = dict(contender=contender, precision=precision, num_classes=19, size=list(size), batch=1, weights=str(weights),
                    runs=runs, device=device, threads=torch.get_num_threads(), logits=str(workdir / f"whole1024_{contender}_{precision}.npy"))
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
        if "bf16" in name:
            extra["agreement_vs_fp32"] = agreement(logits[name], logits["ours fp32"])
        rows.append(_row(name, result["seconds"], flops["published" if "published" in name else "ours"], peak, baseline, **extra))
    hw = (size[0] // 8) * (size[1] // 8)
    return {"rows": rows, "attention_matrix_gb": hw * hw * 4 / 1e9}


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
    from ..checkpoint import load_released_checkpoint
    from ..config import from_released_config
    from ..export import export_onnx
    from ..onnx_runtime import OnnxSegmentor

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


# ----------------------------------------------------------------------------- report


def run(cases: tuple[str, ...] = CASES, *, quick: bool = False, device: str = "cpu", compile: bool = True, log=print) -> dict:
    """Run the benchmark cases; return every figure (see the module docstring)."""
    started = time.perf_counter()
    report: dict[str, Any] = {
        "machine": machine_description(device),
        "quick": quick,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cases": {},
    }
    peak = case_peak(quick, device)
    report["cases"]["peak"] = peak
    log(f"[peak] fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s")
    model150: torch.nn.Module | None = None

    def ade_model() -> torch.nn.Module:  # shared by infer512, train and onnx
        nonlocal model150
        if model150 is None:
            model150 = benchmark_model(150).to(device)
        return model150

    with tempfile.TemporaryDirectory(prefix="isnet-bench-") as tmp:
        workdir = Path(tmp)
        for case in cases:
            if case == "peak":
                continue
            start = time.perf_counter()
            if case == "infer512":
                result = case_infer512(quick, device, peak, compile and not quick, ade_model())
            elif case == "slcm":
                result = case_slcm(quick, device, peak)
            elif case == "whole1024":
                result = case_whole1024(quick, device, peak, workdir)
            elif case == "train":
                result = case_train(quick, device, peak, ade_model())
            elif case == "onnx":
                result = case_onnx(quick, device, workdir, report["cases"].get("infer512"), ade_model().cpu())
            else:
                raise ValueError(f"unknown case {case!r}; choose from {', '.join(CASES)}")
            result["case_seconds"] = time.perf_counter() - start
            report["cases"][case] = result
            log(f"[{case}] done in {result['case_seconds']:.0f} s")
    report["seconds"] = time.perf_counter() - started
    report["headline"] = headline(report)
    return report


def machine_description(device: str) -> str:
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name()
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        flags = " ".join(f for f in ("avx512f", "avx512_bf16", "amx_bf16") if f" {f} " in text or f" {f}\n" in text)
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical cores ({flags}), torch {torch.__version__}"


def _find(rows: list[dict], name: str) -> dict | None:
    return next((row for row in rows if row["name"] == name), None)


def headline(report: dict) -> str:
    """One line of the ratios the targets are stated in."""
    cases = report["cases"]
    parts = []
    if "infer512" in cases:
        rows = cases["infer512"]["rows"]
        fp32 = _find(rows, "ours fp32")
        best = max((r for r in rows if "bf16" in r["name"]), key=lambda r: r["speedup"])
        parts.append(
            f"512² K150: bf16 {best['speedup']:.2f}x ({best['name']}, agree {100 * best['agreement_vs_fp32']:.2f}%), "
            f"fp32 {fp32['speedup']:.2f}x, stage-1 classes {cases['infer512']['stage1_classes']}"
        )
    if "whole1024" in cases:
        rows = cases["whole1024"]["rows"]
        bf16 = _find(rows, "ours bf16")
        fp32 = _find(rows, "ours fp32")
        parts.append(
            f"1024x2048: memory {bf16['memory_ratio']:.3f}x (fp32 {fp32['memory_ratio']:.3f}x), bf16 {bf16['speedup']:.2f}x, fp32 {fp32['speedup']:.2f}x"
        )
    if "slcm" in cases:
        groups = cases["slcm"]["groups"]
        context = _find(groups["A_sl = aggregation + attention"], "ours fp32")
        aggregation = _find(groups["region aggregation (the loop)"], "ours (regions only)")
        module = _find(groups["whole SLCM (with the 3×3 fusion conv)"], "ours bf16")
        parts.append(
            f"SLCM: A_sl {context['speedup']:.0f}x, aggregation {aggregation['speedup']:.0f}x, module bf16 {module['speedup']:.1f}x"
        )
    if "train" in cases:
        bf16 = _find(cases["train"]["rows"], "ours bf16")
        parts.append(f"train 2x512²: {bf16['speedup']:.2f}x images/s")
    if "onnx" in cases:
        worst = max((row["relative_error_vs_pytorch"] for row in cases["onnx"]["fixtures"]), default=float("nan"))
        r50 = cases["onnx"]["r50_512"]
        parts.append(f"ONNX: max rel. error {worst:.1e}, R50 512² ORT {r50['onnxruntime_seconds']:.2f} s vs PyTorch {r50['pytorch_seconds']:.2f} s")
    return "HEADLINE " + " | ".join(parts)


def markdown(report: dict) -> str:
    """The report as Markdown tables."""
    lines = [f"Machine: {report['machine']}; {report['threads']} threads; {'quick' if report['quick'] else 'full'} run, {report['seconds'] / 60:.1f} min.", ""]
    cases = report["cases"]
    peak = cases["peak"]
    lines += [f"Matrix-multiply peak (2048³): float32 {peak['fp32']:.0f} GFLOP/s, bfloat16 {peak['bf16']:.0f} GFLOP/s.", ""]

    def table(title: str, rows: list[dict], columns: list[tuple[str, str, str]]) -> None:
        lines.append(f"**{title}**")
        lines.append("")
        lines.append("| " + " | ".join(header for header, _, _ in columns) + " |")
        lines.append("|" + "---|" * len(columns))
        for row in rows:
            cells = []
            for _, key, fmt in columns:
                value = row.get(key)
                cells.append("–" if value is None else (fmt.format(value) if fmt else str(value)))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")

    timing = [("configuration", "name", ""), ("time (s)", "seconds", "{:.3f}"), ("speed-up", "speedup", "{:.2f}×")]
    if "infer512" in cases:
        c = cases["infer512"]
        table(
            f"Inference, ResNet-50-D8, 1×512×512, K = 150 (stage-1 argmax: {c['stage1_classes']} classes; stage 2: {c['stage2_classes']})",
            c["rows"],
            timing + [("GFLOP", "gflop", "{:.0f}"), ("GFLOP/s", "gflops", "{:.0f}"), ("of peak", "peak_fraction", "{:.0%}"),
                      ("error vs published", "error_vs_published", "{:.1e}"), ("argmax agreement vs ours fp32", "agreement_vs_fp32", "{:.2%}"),
                      ("compile (s)", "compile_seconds", "{:.0f}")],
        )
    if "whole1024" in cases:
        c = cases["whole1024"]
        table(
            f"Whole-image inference, ResNet-50-D8, 1×1024×2048, K = 19 (one HW×HW attention matrix: {c['attention_matrix_gb']:.1f} GB)",
            c["rows"],
            timing + [("peak RSS (MiB)", "peak_mb", "{:.0f}"), ("memory vs published", "memory_ratio", "{:.3f}"),
                      ("GFLOP", "gflop", "{:.0f}"), ("GFLOP/s", "gflops", "{:.0f}"), ("of peak", "peak_fraction", "{:.0%}"),
                      ("error vs published", "error_vs_published", "{:.1e}"), ("argmax agreement vs ours fp32", "agreement_vs_fp32", "{:.2%}")],
        )
    if "slcm" in cases:
        c = cases["slcm"]
        for group, rows in c["groups"].items():
            table(f"SLCM alone, C = 512, 128×128, K = 150 ({c['classes_present']} classes present): {group}", rows,
                  timing + [("error vs published", "error_vs_published", "{:.1e}")])
    if "train" in cases:
        table("Training step, ResNet-50-D8, 2×512×512 crops, K = 150, SGD", cases["train"]["rows"],
              timing + [("images/s", "images_per_second", "{:.3f}"), ("first loss", "first_loss", "{:.4f}"),
                        ("loss vs published", "loss_relative_difference", "{:.1e}")])
    if "onnx" in cases:
        c = cases["onnx"]
        table("ONNX Runtime vs PyTorch float32", c["fixtures"] + [c["r50_512"]],
              [("model", "name", ""), ("PyTorch (s)", "pytorch_seconds", "{:.3f}"), ("ONNX Runtime (s)", "onnxruntime_seconds", "{:.3f}"),
               ("max abs error", "max_abs_error_vs_pytorch", "{:.1e}"), ("rel. error", "relative_error_vs_pytorch", "{:.1e}"),
               ("rel. error vs fixture", "relative_error_vs_fixture", "{:.1e}"), ("argmax agreement", "agreement_vs_pytorch", "{:.2%}")])
    lines.append(report["headline"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="isnet bench", description="speed and memory against the published implementation")
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


def run_from_args(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    report = run(tuple(args.cases), quick=args.quick, device=args.device, compile=not args.no_compile)
    text = markdown(report)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(report, indent=1))
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(text + "\n")
    print(text)  # ends with the headline line
    return 0


__all__ = ["CASES", "run", "main", "markdown", "headline"]
