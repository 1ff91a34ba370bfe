"""Tables 1 and 3 in miniature on CamVid, two seeds each.

Every model is the ``camvid_<variant>`` recipe (a small ResNet-18 segmentor from scratch,
one budget for all), trained on the train split and scored on val. Runs resume if
interrupted, and finished runs are not repeated, so several processes (one thread each)
can share the output folder. Writes ``table.md`` and ``table.png``. The tables in
docs/benchmarks.md use ``--iters 800`` (half the recipe's budget).

    # Table 1: baseline, ILCM only, SLCM only, ISNet
    python -m benchmarks.camvid_ablation --data-root ../shared/data/camvid --output runs/camvid_ablation --iters 800
    # Table 3: the peer context modules beside ISNet, same budget (the ISNet runs are shared)
    python -m benchmarks.camvid_ablation --data-root ../shared/data/camvid --output runs/camvid_ablation \
        --variants ppm aspp ocr ccnet danet ann nonlocal dnl apcnet isnet --iters 800
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from isnet.training.loop import train
from isnet.training.overrides import with_overrides
from isnet.training.recipes import camvid_recipe
from isnet.weights.presets import PEERS

VARIANTS = ("baseline", "ilcm", "slcm", "isnet")


def record_result(results_path: Path, key: str, record: dict) -> dict:
    """Add one run to results.json, keeping what other processes wrote meanwhile."""
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    results[key] = record
    results_path.parent.mkdir(parents=True, exist_ok=True)
    partial = results_path.with_name(f"results.{os.getpid()}.partial")
    partial.write_text(json.dumps(results, indent=2))
    partial.replace(results_path)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.camvid_ablation", description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", default="../shared/data/camvid")
    parser.add_argument("--output", default="runs/camvid_ablation")
    parser.add_argument("--variants", nargs="+", default=VARIANTS, choices=(*VARIANTS, *PEERS))
    parser.add_argument("--seeds", type=int, nargs="+", default=(0, 1))
    parser.add_argument("--iters", type=int, default=None, help="override the recipe's budget")
    args = parser.parse_args()

    output = Path(args.output)
    results_path = output / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for seed in args.seeds:
        for variant in args.variants:
            key = f"{variant}/seed{seed}"
            if key in results:
                continue
            config = camvid_recipe(variant, seed=seed, output_dir=str(output / variant / f"seed{seed}"),
                                   num_workers=1, progress=False)
            overrides = {"data.root": args.data_root}
            if args.iters:
                overrides["max_iters"] = args.iters
            config = with_overrides(config, overrides)
            started = time.perf_counter()
            summary = train(config)
            record = {"mIoU": summary["mIoU"], "minutes": (time.perf_counter() - started) / 60,
                      "iters": config.max_iters, "threads": torch.get_num_threads()}
            results = record_result(results_path, key, record)
            print(f"{key}: mIoU {100 * summary['mIoU']:.2f}", flush=True)

    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    lines = [
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "",
        "| model | " + " | ".join(f"seed {s}" for s in args.seeds) + " | mean | minutes / run |",
        "|---|" + "---|" * (len(args.seeds) + 2),
    ]
    for variant in args.variants:
        runs = [results[f"{variant}/seed{s}"] for s in args.seeds if f"{variant}/seed{s}" in results]
        if not runs:
            continue
        scores = [100 * r["mIoU"] for r in runs]
        cells = " | ".join(f"{v:.2f}" for v in scores)
        lines.append(f"| {variant} | {cells} | {statistics.mean(scores):.2f} | "
                     f"{statistics.mean(r['minutes'] for r in runs):.1f} |")
    table = "\n".join(lines)
    (output / "table.md").write_text(table + "\n")
    plot_results(results, args.variants, args.seeds, output / "table.png")
    print(table)
    print(f"wrote {output / 'table.md'} and {output / 'table.png'}")


def plot_results(results: dict, variants: list[str], seeds: list[int], path: Path) -> None:
    """One bar per variant (mean mIoU over seeds), each seed's mIoU as a dot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shown = [v for v in variants if any(f"{v}/seed{s}" in results for s in seeds)]
    figure = Figure(figsize=(1.0 + 0.8 * len(shown), 3.6))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for x, variant in enumerate(shown):
        scores = [100 * results[f"{variant}/seed{s}"]["mIoU"] for s in seeds if f"{variant}/seed{s}" in results]
        axes.bar(x, statistics.mean(scores), color="#8fb3d9", width=0.6)
        axes.plot([x] * len(scores), scores, "o", color="#1f4e79", markersize=4)
        axes.annotate(f"{statistics.mean(scores):.1f}", (x, max(scores)), textcoords="offset points",
                      xytext=(0, 4), ha="center", fontsize=8)
    all_scores = [100 * r["mIoU"] for k, r in results.items() if k.split("/")[0] in shown]
    axes.set_ylim(max(0.0, min(all_scores) - 5), max(all_scores) + 2)
    axes.set_xticks(range(len(shown)), shown, rotation=30, ha="right")
    axes.set_ylabel("val mIoU (%)")
    axes.set_title(f"CamVid val, {len(seeds)} seed(s): bars = mean, dots = seeds", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
