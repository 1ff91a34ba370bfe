"""Table 2 of the paper: size, multiply-adds and latency of ISNet's context modules and its peers.

Each row runs one head on a Table 2 input (a 1×2048×H×W layer4 feature, 128×128 in the
paper, with a 1×1024×H×W layer3 for the heads that read it) and counts only the parts of the
head the paper counted (:data:`PAPER_COUNTED_PARTS`):

- ``params_m``: parameters of those parts, in millions.
- ``macs_paper_g``: multiply-adds as the paper counts them: Conv2d/Linear layers only
  (forward hooks, ``output elements × in_channels/groups × kernel area``; no bias, no BN,
  ReLU, pooling or interpolation), in G.
- ``macs_full_g``: every multiply-add, i.e. also the attention's matrix products (``bmm``,
  ``matmul``, ``einsum`` and fused scaled-dot-product attention), counted with
  :class:`torch.utils.flop_counter.FlopCounterMode` (2 FLOPs per multiply-add) within the
  counted parts. Softmax, normalisation and element-wise ops are not multiply-adds of a
  product and are left out, as FlopCounterMode does.
- ``latency_ms``: median wall time of the whole head's forward pass (eval mode, no grad,
  after a warm-up run), uncounted parts and classifier included.

The paper's multiply-adds sit 0.10–0.33 G (at most 0.08 %) above ``macs_paper_g`` in every
row. Its counter evidently was mmcv's ``get_model_complexity_info``, which also adds conv
biases, BatchNorm (2 per element), ReLU (1 per element) and pooling layers (1 per input
element): counted that way, the rows here reproduce Table 2 to within 0.01 G (0.06 G for ASPP
and ANN, whose pooling is a function here, not a layer). Those element-wise terms are not
multiply-adds of a product and are left out.

Counts are shape arithmetic, so they run on the ``meta`` device: instant at any size. Only
the latency executes the network. :mod:`benchmarks.complexity_report` prints and plots the
rows beside the paper's. ``python -m benchmarks.complexity`` or ``python -m benchmarks.complexity``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.complexity_report import (
    ComplexityRow,
    format_csv,
    format_table,
    plot_rows,
)
from benchmarks.measure import FLOP_FORMULAS
from isnet.model.config import PEER_HEAD_CONFIGS
from isnet.model.context.ilcm import ImageLevelContext
from isnet.model.context.slcm import SemanticLevelContext
from isnet.model.heads.isnet_head import ISNetHead, PlainDecoder
from isnet.model.heads.peers import build_peer_head

ISNET_MODULES = ("ilcm", "slcm", "ilcm+slcm")
PEER_ORDER = ("aspp", "ppm", "ccnet", "ocr", "danet", "ann", "dnl", "apcnet", "nonlocal")
TABLE2_MODULES = ISNET_MODULES + PEER_ORDER

# The sub-modules of each row's network that the paper counted, as its numbers show:
# - ISNet rows: the 2048→512 bottleneck and the attention blocks with their projections;
#   not the concat 3×3 convs, not the stage-1 classifier.
# - PSP, ASPP, APCNet: the whole module; its 3×3 conv over the concatenation is the
#   module's 2048→512 reduction.
# - CCNet, DANet, NL, DNL, ANN: the whole module, the convs after the attention and the
#   concat/fusion convs included. Leaving out any one of them misses the paper's
#   parameters by 3–60 %; with all of them every row matches to 0.01 M.
PAPER_COUNTED_PARTS: dict[str, tuple[str, ...]] = {
    "ilcm": ("bottleneck", "image_context.attention"),
    "slcm": ("bottleneck", "semantic_context.attention"),
    "ilcm+slcm": ("bottleneck", "image_context.attention", "semantic_context.attention"),
    "aspp": ("context",),
    "ppm": ("context",),
    "ccnet": ("context",),
    # OCR: bottleneck, object attention and the soft-region 3×3 CBR(1024→512) on layer3, but
    # not the concat 1×1 CBR(1024→512): 14.82 M exactly (with it, or without the layer3
    # conv, the count is 3.5 % or 32 % off).
    "ocr": ("context.bottleneck", "context.object_context.attention", "stage1_features"),
    "danet": ("context",),
    "ann": ("context",),
    "dnl": ("context",),
    "nonlocal": ("context",),
    "apcnet": ("context",),
}



def build_table2_model(name: str, num_classes: int = 150) -> nn.Module:
    """The head in which the Table 2 row ``name`` is counted (standard 2048 → 512 widths).

    ISNet rows are the ISNet head configured as the paper's ablations: ILCM alone, SLCM
    alone (``R_il = R``) or both; the peers are built from their configs (:data:`~isnet.model.config.PEER_HEAD_CONFIGS`).
    """
    if name in PEER_HEAD_CONFIGS:
        return build_peer_head(PEER_HEAD_CONFIGS[name](), (256, 512, 1024, 2048), num_classes)
    if name not in ISNET_MODULES:
        raise KeyError(f"unknown Table 2 module {name!r}; choose from {', '.join(TABLE2_MODULES)}")
    channels, transform_channels = 512, 256
    image_context = (
        ImageLevelContext(channels, transform_channels) if "ilcm" in name else nn.Identity()
    )
    # Counted as published: SLCM attends over every pixel (the full count shows its HW×HW products).
    semantic_context = (
        SemanticLevelContext(channels, transform_channels, attend_over="pixels") if "slcm" in name else None
    )
    return ISNetHead(
        2048,
        channels,
        num_classes,
        image_context=image_context,
        semantic_context=semantic_context,
        decoder=PlainDecoder(channels, num_classes),
    )


def table2_features(
    size: tuple[int, int] = (128, 128), device: torch.device | str = "cpu"
) -> list[Tensor]:
    """Random stand-ins for the four ResNet-50-D8 stage outputs with layer4 of ``size``."""
    height, width = size
    shapes = [
        (256, 2 * height, 2 * width),
        (512, height, width),
        (1024, height, width),
        (2048, height, width),
    ]
    return [torch.randn(1, *shape, device=device) for shape in shapes]


def counted_parts(model: nn.Module, name: str) -> list[nn.Module]:
    """The sub-modules of ``model`` that the paper counts for row ``name``."""
    return [model.get_submodule(path) for path in PAPER_COUNTED_PARTS[name]]


def count_parameters(parts: Iterable[nn.Module]) -> int:
    """Number of distinct parameters in ``parts`` (a shared parameter counts once)."""
    unique = {id(p): p for part in parts for p in part.parameters()}
    return sum(p.numel() for p in unique.values())


def _conv_macs(module: nn.Module, output: Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        kernel_area = module.kernel_size[0] * module.kernel_size[1]
        return output.numel() * (module.in_channels // module.groups) * kernel_area
    return output.numel() * module.in_features  # nn.Linear


def count_macs(model: nn.Module, inputs: object, parts: Sequence[nn.Module]) -> tuple[int, int]:
    """(paper-convention MACs, full MACs) of ``parts`` during one ``model(inputs)``.

    Paper convention: Conv2d and Linear layers inside ``parts``, by forward hooks, every
    call counted (so a block applied twice counts twice). Full: every FLOP that
    FlopCounterMode attributes to the time spent inside ``parts``, halved. ``parts`` must
    not be nested in one another.
    """
    conv_macs = 0
    full_flops = 0
    counter = FlopCounterMode(display=False, custom_mapping=FLOP_FORMULAS)
    flops_at_entry: list[int] = []

    def on_conv(module: nn.Module, args: tuple, output: Tensor) -> None:
        nonlocal conv_macs
        conv_macs += _conv_macs(module, output)

    def on_enter(module: nn.Module, args: tuple) -> None:
        flops_at_entry.append(counter.get_total_flops())

    def on_exit(module: nn.Module, args: tuple, output: object) -> None:
        nonlocal full_flops
        full_flops += counter.get_total_flops() - flops_at_entry.pop()

    handles = []
    layers = {
        id(m): m for part in parts for m in part.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
    }
    handles += [layer.register_forward_hook(on_conv) for layer in layers.values()]
    for part in parts:
        handles.append(part.register_forward_pre_hook(on_enter))
        handles.append(part.register_forward_hook(on_exit))
    try:
        with torch.no_grad(), counter:
            model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return conv_macs, full_flops // 2


def measure_latency_ms(
    model: nn.Module, inputs: object, repeats: int = 3, warmup: int = 1
) -> float:
    """Median wall time of ``model(inputs)`` in ms, in eval mode without autograd."""
    model.eval()
    device = next(model.parameters()).device

    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    timings = []
    with torch.no_grad():
        for run in range(warmup + repeats):
            synchronize()
            start = time.perf_counter()
            model(inputs)
            synchronize()
            if run >= warmup:
                timings.append(time.perf_counter() - start)
    return statistics.median(timings) * 1e3


def _count_row(name: str, size: tuple[int, int], num_classes: int) -> tuple[int, int, int]:
    """(parameters, paper MACs, full MACs), on the meta device (shapes only, no data)."""
    with torch.device("meta"):
        model = build_table2_model(name, num_classes).eval()
        features = table2_features(size, "meta")
    parts = counted_parts(model, name)
    return (count_parameters(parts), *count_macs(model, features, parts))


def table2_rows(
    modules: Sequence[str] = TABLE2_MODULES,
    *,
    size: tuple[int, int] = (128, 128),
    latency: bool = True,
    repeats: int = 3,
    device: str = "cpu",
    num_classes: int = 150,
    progress: bool = False,
) -> list[ComplexityRow]:
    """Measure Table 2 for ``modules`` on a ``1×2048×size`` feature.

    ``num_classes`` only changes the classifiers (never counted) and OCR's number of
    object regions.
    """
    rows = []
    for name in modules:
        if progress:
            print(f"[complexity] {name}", file=sys.stderr, flush=True)
        params, macs_paper, macs_full = _count_row(name, size, num_classes)
        latency_ms = None
        if latency:
            model = build_table2_model(name, num_classes).to(device)
            latency_ms = measure_latency_ms(model, table2_features(size, device), repeats)
            del model
        rows.append(
            ComplexityRow(name, params / 1e6, macs_paper / 1e9, macs_full / 1e9, latency_ms)
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.complexity``: print Table 2 as measured here, optionally plot it."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.complexity",
        description="Parameters, multiply-adds and latency of ISNet's context modules and its "
        "peers on a 1×2048×H×W feature (paper Table 2).",
    )
    parser.add_argument("--format", choices=("table", "csv"), default="table")
    parser.add_argument("--plot", type=Path, metavar="PATH", help="also write a bar chart (PNG)")
    parser.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=(128, 128),
                        help="layer4 size (default: the paper's 128 128)")
    parser.add_argument("--no-latency", action="store_true", help="count only; do not time")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per module (median)")
    parser.add_argument("--device", default="cpu", help="device for the latency runs")
    parser.add_argument(
        "--modules", nargs="+", choices=TABLE2_MODULES, default=list(TABLE2_MODULES)
    )
    parser.add_argument("--num-classes", type=int, default=150)
    args = parser.parse_args(argv)

    rows = table2_rows(
        args.modules,
        size=tuple(args.size),
        latency=not args.no_latency,
        repeats=args.repeats,
        device=args.device,
        num_classes=args.num_classes,
        progress=not args.no_latency,
    )
    sys.stdout.write(format_csv(rows) if args.format == "csv" else format_table(rows))
    if args.plot is not None:
        plot_rows(rows, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
