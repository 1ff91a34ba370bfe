"""The report of ``python -m benchmarks``: the machine, Markdown tables and the headline line."""

from __future__ import annotations

import os

import torch


def machine_description(device: str) -> str:
    """The device, with (on a CPU) the flags that decide its fast paths, and torch's version."""
    from isnet.utils.machine import cpu_name_and_flags

    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name()
    cpu, flags = cpu_name_and_flags()
    return f"{cpu}, {os.cpu_count()} logical cores ({' '.join(flags) or 'no AVX2'}), torch {torch.__version__}"


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
        others = ", ".join(f"{row['name']} {row['memory_ratio']:.3f}x" for row in rows
                           if row["name"] not in ("published fp32", "ours fp32", "ours bf16"))
        parts.append(
            f"1024x2048: memory {bf16['memory_ratio']:.3f}x (fp32 {fp32['memory_ratio']:.3f}x{', ' + others if others else ''}), "
            f"bf16 {bf16['speedup']:.2f}x, fp32 {fp32['speedup']:.2f}x"
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
    for case, label in (("runtimes", "R50 512²"), ("trained", "trained")):
        if case in cases:
            rows = cases[case]["rows"]
            auto = next(row for row in rows if row["name"].startswith("auto"))
            ours, nncf = _find(rows, "ours int8 (isnet quantize)"), _find(rows, "openvino int8 (NNCF defaults)")
            parts.append(
                f"{label}: INT8 (ours) {ours['speedup']:.2f}x published, agree {100 * ours['agreement_vs_fp32']:.2f}%; "
                f"OpenVINO INT8 {nncf['speedup']:.2f}x; {auto['name']} {auto['vs_ours_fp32']:.2f}x ours fp32"
            )
    if "onnx" in cases:
        fixtures = cases["onnx"]["fixtures"]
        worst = f"max rel. error {max(row['relative_error_vs_pytorch'] for row in fixtures):.1e}" if fixtures else "no reference fixtures found"
        r50 = cases["onnx"]["r50_512"]
        parts.append(f"ONNX: {worst}, R50 512² ORT {r50['onnxruntime_seconds']:.2f} s vs PyTorch {r50['pytorch_seconds']:.2f} s")
    return "HEADLINE " + " | ".join(parts)


def markdown(report: dict) -> str:
    """The report as Markdown tables."""
    lines = [f"Machine: {report['machine']}; {report['threads']} threads; {'quick' if report['quick'] else 'full'} run, {report['seconds'] / 60:.1f} min.", ""]
    cases = report["cases"]
    peak = cases["peak"]
    lines += [f"Matrix-multiply peak (2048³): float32 {peak['fp32']:.0f} GFLOP/s, bfloat16 {peak['bf16']:.0f} GFLOP/s.", ""]
    if "peaks" in peak:
        precisions = sorted({p for values in peak["peaks"].values() for p in values}, key=["fp32", "bf16", "fp16", "int8"].index)
        lines += [f"**Peaks, GFLOP/s ({report['machine']}); `precision=auto` picks: {peak['auto']}**", "",
                  "| kernel | " + " | ".join(precisions) + " |", "|---|" + "---|" * len(precisions)]
        for kind, values in peak["peaks"].items():
            lines.append(f"| {kind} | " + " | ".join(f"{values[p]:.1f}" if p in values else "–" for p in precisions) + " |")
        lines.append("")

    def table(title: str, rows: list[dict], columns: list[tuple[str, str, str]]) -> None:
        lines.append(f"**{title}** — {report['machine']}, {report['threads']} thread(s)")
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
    paths = [("speed-up vs published", "speedup", "{:.2f}×"), ("vs ours fp32", "vs_ours_fp32", "{:.2f}×"),
             ("argmax agreement vs ours fp32", "agreement_vs_fp32", "{:.2%}")]
    if "runtimes" in cases:
        table("Every CPU path, ResNet-50-D8, 1×512×512, K = 150 (INT8 calibrated on the benchmark image and 3 copies)",
              cases["runtimes"]["rows"], timing[:2] + paths + [("error vs published", "error_vs_published", "{:.1e}")])
    if "trained" in cases:
        c = cases["trained"]
        table(f"Every CPU path on {c['checkpoint']}: {c['dataset']} val, {c['images']} images at {c['size']} "
              f"(INT8 calibrated on {c['calibration_images']} images)", c["rows"],
              [("configuration", "name", ""), ("time / image (s)", "seconds", "{:.4f}")] + paths
              + [("mIoU", "miou", "{:.2f}"), ("mIoU change", "miou_change", "{:+.2f}")])
    lines.append(report["headline"])
    return "\n".join(lines)
