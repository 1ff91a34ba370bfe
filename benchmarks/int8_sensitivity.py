"""Which parts of the model INT8 quantisation must leave in float: one scope after another.

Quantises the model with OpenVINO + NNCF (as ``isnet quantize`` does) once per variant of
the float scope (:class:`isnet.deploy.quantize.FloatScope`) and prints, per variant, the share of
the FLOPs left in float, the pixel agreement with float32, the mIoU change (with labels)
and the time per image relative to our float32 PyTorch path:

    python -m benchmarks.int8_sensitivity --checkpoint runs/camvid_isnet/model.safetensors \
        --calibration ../shared/data/camvid/images/train --dataset camvid --data-root ../shared/data/camvid

Without ``--checkpoint``, the benchmark's ResNet-50-D8 (``benchmarks.workload``) at
512×512, calibrated on the benchmark image and its mirrored / shifted copies, agreement on
the image (a synthetic model is far more sensitive than a trained one: see
``docs/benchmarks.md``).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from isnet.deploy.quantize import NOTHING_FLOAT, FloatScope, quantize_model

# Variant → the float scope it quantises with.
OURS = FloatScope()
VARIANTS: dict[str, FloatScope] = {
    "everything INT8 (NNCF defaults)": NOTHING_FLOAT,
    "SLCM's region statistics": FloatScope(attention_products=False, classifiers=False),
    "region statistics + attention products": FloatScope(classifiers=False),
    "region statistics + classifiers": FloatScope(attention_products=False),
    "ours: region statistics + attention products + classifiers": OURS,
    "ours + stem": replace(OURS, modules=("backbone.stem",)),
    "ours + backbone layer1": replace(OURS, modules=("backbone.layer1",)),
    "ours + backbone layer4": replace(OURS, modules=("backbone.layer4",)),
    "ours + head bottleneck": replace(OURS, modules=("head.bottleneck",)),
    "ours + ILCM": replace(OURS, modules=("head.image_context",)),
    "ours + stage-1 classifier (whole)": replace(OURS, modules=("head.classifier_stage1",)),
    "ours + SLCM (the issue's middle scope)": replace(OURS, modules=("head.semantic_context",)),
    "ours + stage-2 decoder": replace(OURS, modules=("head.decoder",)),
    "backbone only INT8": replace(OURS, modules=("head",)),
}


def float_paths(model: torch.nn.Module, scope: FloatScope) -> tuple[str, ...]:
    """The module paths a scope keeps in float (for the FLOP shares; the attention products are counted apart)."""
    from isnet.deploy.quantize import classifier_convolutions

    return (tuple(classifier_convolutions(model)) if scope.classifiers else ()) + scope.modules


def main(argv: list[str] | None = None) -> None:
    from benchmarks.bf16_agreement import flop_shares, has_parts
    from benchmarks.workload import benchmark_image, benchmark_model
    from isnet.data.image import find_images
    from isnet.deploy.quantize import calibration_subset, model_resize, prepare_image
    from isnet.deploy.quantize_check import compare, dataset_samples, image_samples
    from isnet.deploy.runtimes.onnxruntime import RuntimeSegmentor
    from isnet.deploy.runtimes.openvino import OpenVinoSegmentor
    from isnet.deploy.runtimes.pytorch import FastSegmentor
    from isnet.weights.checkpoint import load_model

    parser = argparse.ArgumentParser(prog="python -m benchmarks.int8_sensitivity", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", help="a trained model (our safetensors) instead of the benchmark's")
    parser.add_argument("--calibration", help="with --checkpoint: folder of calibration images")
    parser.add_argument("--subset-size", type=int, default=300)
    parser.add_argument("--dataset", help="with --checkpoint: held-out split of this dataset (with --data-root)")
    parser.add_argument("--data-root")
    parser.add_argument("--holdout", help="with --checkpoint: held-out images without labels (agreement only)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    if args.checkpoint:
        if not args.calibration or not (args.dataset or args.holdout):
            parser.error("--checkpoint needs --calibration and --dataset/--data-root or --holdout")
        model = load_model(args.checkpoint).eval()
        resize = model_resize(model)
        calibration = [prepare_image(p, **resize) for p in calibration_subset(find_images([args.calibration]), args.subset_size)]
        if args.dataset:
            from isnet.data import DATASETS
            from isnet.training.config import DataConfig

            data = DataConfig.of(DATASETS[args.dataset], root=args.data_root, eval_fit_size=resize.get("fit"))
            dataset = data.build(data.val_split, train=False)
            held_out = [(image, label) for image, label in dataset_samples(dataset)]
        else:
            held_out = list(image_samples(find_images([args.holdout]), lambda p: prepare_image(p, **resize)))
        title = f"{args.checkpoint}: calibrated on {len(calibration)} images of {args.calibration}, checked on {len(held_out)}"
    else:
        model = benchmark_model(150)
        batch = benchmark_image(512, 512, batch=4)
        calibration = [batch[i : i + 1] for i in range(4)]
        held_out = [(calibration[0], None)]
        title = "ResNet-50-D8 benchmark model, 512×512, K = 150, calibrated on the benchmark image and 3 copies"
    reference = FastSegmentor(model, precision="fp32")
    shares = flop_shares(model, held_out[0][0], {name: float_paths(model, scope) for name, scope in VARIANTS.items()
                                                  if has_parts(model, float_paths(model, scope))})

    def seconds(runner) -> float:
        start = time.perf_counter()
        for image, _ in held_out:
            runner.logits(image)
        return time.perf_counter() - start

    from benchmarks.report import machine_description

    print(f"{title}; {machine_description('cpu')}; {args.threads} thread(s)\n")
    print("| kept in float | its share of the FLOPs (+ attention products) | pixel agreement | mIoU change | time vs our fp32 |")
    print("|---|---|---|---|---|")
    fp32_seconds = seconds(reference)
    for name in args.variants:
        scope = VARIANTS[name]
        if name not in shares:
            continue
        int8: RuntimeSegmentor = OpenVinoSegmentor(quantize_model(model, calibration, scope=scope), threads=args.threads)
        result = compare(reference, {name: int8}, held_out, model.config.num_classes)[name]
        change = "–" if result.reference_miou is None else f"{100 * (result.candidate_miou - result.reference_miou):+.2f}"
        fp32_seconds = min(fp32_seconds, seconds(reference))  # the float side measured between variants, its best
        print(f"| {name} | {shares[name]:.1%} | {result.agreement:.2%} | {change} | {fp32_seconds / seconds(int8):.2f}× |", flush=True)


if __name__ == "__main__":
    main()
