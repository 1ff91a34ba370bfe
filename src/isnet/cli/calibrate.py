"""``isnet calibrate``: fit a temperature on a validation split and store it in the model file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from isnet.cli.common import (
    add_threads_argument,
    load_predictor_from_args,
    positive_int,
    protocol_line,
    usage_error,
)

HELP = "fit a temperature on a validation split (confidence you can trust); stored in the checkpoint"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from isnet.data import DATASET_NAMES

    parser.add_argument("--checkpoint", required=True, help="one of our .safetensors checkpoints")
    parser.add_argument("--dataset", required=True, choices=DATASET_NAMES)
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--split", help="the held-out split to fit on (default: the dataset's validation split)")
    parser.add_argument("--fit", type=positive_int, nargs=2, metavar=("LONG", "SHORT"), help="test-time resize box")
    parser.add_argument("--output", help="write the calibrated checkpoint here (default: into --checkpoint itself)")
    parser.add_argument("--pixels", type=positive_int, default=1_000_000,
                        help="labelled pixels drawn from the split to fit on (default 1 million)")
    parser.add_argument("--mode", choices=("whole", "slide"), default="whole")
    parser.add_argument("--crop", type=positive_int, nargs=2, default=(512, 512), metavar=("H", "W"))
    parser.add_argument("--stride", type=positive_int, nargs=2, default=(341, 341), metavar=("H", "W"))
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    add_threads_argument(parser)
    parser.add_argument("--threshold-for", choices=("f1",),
                        help="binary models: also fit the foreground threshold that maximises F1 on the split "
                             "(on the calibrated probabilities); predict, eval and serve then use it")


def run(args: argparse.Namespace) -> int:
    """Fit T by LBFGS on the NLL of sampled pixels' logits (Guo et al. 2017); report NLL and ECE before and after."""
    from isnet.cli.evaluate import eval_data
    from isnet.evaluation.calibration import (
        collect_logits,
        ece_of_logits,
        fit_temperature,
        nll,
    )
    from isnet.inference.engine import InferenceConfig
    from isnet.utils.atomic_files import require_replaceable
    from isnet.weights.calibration import store_calibration

    if not str(args.checkpoint).endswith(".safetensors"):
        usage_error(f"--checkpoint {args.checkpoint}: expected one of our .safetensors checkpoints (the temperature "
                    "is stored in its metadata)")
    if args.output is not None and not str(args.output).endswith(".safetensors"):
        usage_error(f"--output {args.output}: name a .safetensors file")
    require_replaceable(Path(args.output or args.checkpoint))  # a link there is refused before the fit, not after
    args.model = args.weights = None
    # float32 PyTorch, and the logits as the network gives them: a temperature (and threshold) stored before is fitted anew
    predictor = load_predictor_from_args(args, precision="fp32", runtime="torch").with_temperature(1.0).with_threshold(0.5)
    data, resize = eval_data(args, predictor)
    split = args.split or data.val_split
    dataset = data.build(split, train=False)
    if args.threshold_for and predictor.config.num_classes != 2:
        usage_error(f"--threshold-for {args.threshold_for}: {args.checkpoint} has {predictor.config.num_classes} classes; "
                    "a threshold is for binary models (background, foreground)")
    if dataset.info.num_classes != predictor.config.num_classes:
        print(f"isnet calibrate: {args.checkpoint} predicts {predictor.config.num_classes} classes but {args.data_root} "
              f"({args.dataset}) has {dataset.info.num_classes}; nothing was fitted", file=sys.stderr)
        return 1
    config = InferenceConfig(mode=args.mode, crop=tuple(args.crop), stride=tuple(args.stride))
    print(protocol_line(resize, config), file=sys.stderr)
    logits, labels = collect_logits(predictor, dataset, config, max_pixels=args.pixels, device=predictor.device,
                                    progress=True)
    if not len(labels):
        print(f"isnet calibrate: {args.data_root} {split}: no labelled pixels to fit on", file=sys.stderr)
        return 1
    temperature = fit_temperature(logits, labels)
    record = {
        "temperature": temperature, "dataset": args.dataset, "split": split, "pixels": len(labels),
        "nll_before": nll(logits, labels), "nll_after": nll(logits, labels, temperature),
        "ece_before": ece_of_logits(logits, labels), "ece_after": ece_of_logits(logits, labels, temperature),
    }
    written = store_calibration(args.checkpoint, record, args.output)
    print(f"temperature {temperature:.4f} fitted on {len(labels):,} labelled pixels of {split} "
          f"({len(dataset)} images)")
    print(f"NLL {record['nll_before']:.4f} → {record['nll_after']:.4f}; "
          f"ECE {100 * record['ece_before']:.2f} % → {100 * record['ece_after']:.2f} % (15 bins, on those pixels)")
    print(f"stored in {Path(written)}: isnet predict, eval and serve divide its logits by {temperature:.4f}")
    if args.threshold_for:
        store_f1_threshold(written, logits / temperature, labels, split, args.dataset)
    return 0


def store_f1_threshold(path, logits, labels, split: str, dataset: str) -> None:
    """Fit the F1-optimal foreground threshold on these pixels and store it in ``path``."""
    from isnet.evaluation.threshold import f1_at, f1_optimal_threshold
    from isnet.weights.decision_threshold import store_threshold

    foreground = logits.float().softmax(dim=1)[:, 1]
    threshold, f1 = f1_optimal_threshold(foreground, labels == 1)
    at_half = f1_at(foreground, labels == 1, 0.5)
    store_threshold(path, {"threshold": threshold, "for": "f1", "f1": f1, "f1_at_0.5": at_half, "split": split,
                           "dataset": dataset, "pixels": len(labels)})
    print(f"foreground threshold {threshold:.4f}: F1 {100 * at_half:.2f} % at 0.5 → {100 * f1:.2f} % "
          f"(on those pixels); stored in {path}")
