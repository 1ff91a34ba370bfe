"""Where bfloat16 inference loses argmax agreement: each part of the model kept in float32 in turn.

Runs the 512×512, K = 150 benchmark model of ``python -m benchmarks`` (``benchmarks.workload``) in
float32 and then in bfloat16 as ``FastSegmentor`` prepares it (stem and classifiers'
last convolutions in float32), and again with one more part kept in float32 each time.
Prints, per variant, the share of the FLOPs it adds in float32, the fraction of pixels whose argmax agrees with float32 (at the
logits' stride-8 size and resized to the image) and the largest logit error relative to
the largest float32 logit:

    python -m benchmarks.bf16_agreement            # ~1 min on one core
    python -m benchmarks.bf16_agreement --size 1024 2048 --classes 19

With ``--checkpoint`` (one of our safetensors files) and ``--images`` (a folder), the same
for a trained model on real images, every pixel of every image counted:

    python -m benchmarks.bf16_agreement --checkpoint runs/camvid/model.safetensors \
        --images ../shared/data/camvid/images/val
"""

from __future__ import annotations

import argparse
import copy
import operator
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.measure import FLOP_FORMULAS
from benchmarks.workload import benchmark_image, benchmark_model
from isnet.data.image import IMAGE_SUFFIXES, read_image, to_tensor
from isnet.deploy.runtimes.pytorch import FastSegmentor, Float32
from isnet.utils.numerics import agreement, relative_error
from isnet.weights.checkpoint import load_model

# Variant name → the dotted paths (inside the segmentor) computed in float32 on top of ours.
PARTS = {
    "ours (stem, classifiers fp32)": (),
    "backbone layer1": ("backbone.layer1",),
    "backbone layer2": ("backbone.layer2",),
    "backbone layer3": ("backbone.layer3",),
    "backbone layer4": ("backbone.layer4",),
    "head bottleneck (3×3 CBR)": ("head.bottleneck",),
    "ILCM": ("head.image_context",),
    "stage-1 classifier": ("head.classifier_stage1",),
    "SLCM": ("head.semantic_context",),
    "stage-2 decoder": ("head.decoder",),
    "whole backbone": ("backbone",),
    "whole head": ("head.bottleneck", "head.image_context", "head.classifier_stage1", "head.semantic_context", "head.decoder"),
}


def keep_float32(model: nn.Module, path: str) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = operator.attrgetter(parent_path)(model) if parent_path else model
    setattr(parent, name, Float32(getattr(parent, name)))


def has_parts(model: nn.Module, paths: tuple[str, ...]) -> bool:
    """Whether ``model`` has every part in ``paths`` (a baseline has no stage-1 classifier, no SLCM)."""
    try:
        return all(operator.attrgetter(path)(model) is not None for path in paths)
    except AttributeError:
        return False


def flop_shares(model: nn.Module, images: torch.Tensor, parts: dict[str, tuple[str, ...]]) -> dict[str, float]:
    """Each variant's extra float32 part as a share of the model's FLOPs (counted on the meta device)."""
    meta = copy.deepcopy(model).to("meta")
    with FlopCounterMode(display=False, custom_mapping=FLOP_FORMULAS) as counter, torch.no_grad():
        meta.logits(images.to("meta"))
    counts = counter.get_flop_counts()  # keyed by the called module's class name, then the path below it

    def flops(path: str) -> int:
        top, _, rest = path.partition(".")
        key = type(getattr(model, top)).__name__ + (f".{rest}" if rest else "")
        return sum(counts.get(key, {}).values())

    total = counter.get_total_flops()
    return {name: sum(flops(path) for path in paths) / total for name, paths in parts.items()}


def classifiers_in_bf16(model: nn.Module) -> None:
    """Undo ours' float32 classifiers (the state before they were kept in float32)."""
    for module in model.modules():
        if isinstance(module, nn.Sequential) and isinstance(module[-1], Float32):
            module[-1] = module[-1].module


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bf16_agreement", description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, nargs=2, default=(512, 512), help="the benchmark image's size")
    parser.add_argument("--classes", type=int, default=150, help="the benchmark model's classes")
    parser.add_argument("--checkpoint", type=Path, help="a trained model (our safetensors) instead of the benchmark's")
    parser.add_argument("--images", type=Path, help="with --checkpoint: a folder of images to measure on")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if (args.checkpoint is None) != (args.images is None):
        parser.error("--checkpoint and --images go together")
    torch.set_num_threads(args.threads)

    if args.checkpoint:
        model = load_model(args.checkpoint).eval()
        paths = sorted(p for p in args.images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            parser.error(f"{args.images}: no images")
        images = [to_tensor(read_image(path)).unsqueeze(0) for path in paths]
        title = f"{args.checkpoint}, {len(images)} images from {args.images}"
    else:
        model = benchmark_model(args.classes)
        images = [benchmark_image(*args.size)]
        title = f"ResNet-50-D8 benchmark model, {args.size[0]}×{args.size[1]}, K = {args.classes}"
    reference = FastSegmentor(model, precision="fp32")
    expected = [reference.logits(image) for image in images]
    parts = {name: paths for name, paths in PARTS.items() if has_parts(model, paths)}
    shares = flop_shares(model, images[0], parts)

    def row(name: str, share: float, prepare) -> None:
        fast = FastSegmentor(model, precision="bf16")
        prepare(fast.model)
        stride_agree = image_agree = stride_pixels = image_pixels = 0
        error = 0.0
        for image, want in zip(images, expected):
            got = fast.logits(image)
            stride_pixels += want[:, 0].numel()
            image_pixels += image[:, 0].numel()
            stride_agree += agreement(got, want) * want[:, 0].numel()
            image_agree += agreement(got, want, tuple(image.shape[2:])) * image[:, 0].numel()
            error = max(error, relative_error(got, want))
        print(
            f"| {name} | {share:.1%} | {stride_agree / stride_pixels:.2%} | {image_agree / image_pixels:.2%} | {error:.1e} |",
            flush=True,
        )

    print(f"{title}, {args.threads} thread(s)\n")
    print("| kept in float32 | its share of the FLOPs | agreement (head's stride) | agreement (image) | max logit error |")
    print("|---|---|---|---|---|")
    row("classifiers in bf16 too", 0.0, classifiers_in_bf16)
    for name, paths in parts.items():
        row(name, shares[name], lambda m, paths=paths: [keep_float32(m, path) for path in paths])


if __name__ == "__main__":
    main()
