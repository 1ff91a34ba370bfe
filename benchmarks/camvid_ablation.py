"""Tables 1 and 3 in miniature on CamVid, two seeds each.

Every model is the ``camvid_<variant>`` recipe (a small ResNet-18 segmentor from scratch,
one budget for all), trained on the train split and scored on val. Runs resume if
interrupted, and finished runs are not repeated.

    # Table 1: baseline, ILCM only, SLCM only, ISNet
    python benchmarks/camvid_ablation.py --data-root ../shared/data/camvid --output runs/camvid_ablation
    # Table 3: the peer context modules beside ISNet, same budget
    python benchmarks/camvid_ablation.py --data-root ../shared/data/camvid --output runs/camvid_table3 \
        --variants ppm aspp ocr ccnet danet ann nonlocal dnl apcnet isnet
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

from isnet.presets import PEERS
from isnet.recipes import camvid_recipe
from isnet.train import train, with_overrides

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
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
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
    print(table)


if __name__ == "__main__":
    main()
