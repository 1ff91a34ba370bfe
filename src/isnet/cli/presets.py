"""``isnet presets``: the named models, their dataset records and the released weights' scores."""

from __future__ import annotations

import argparse

HELP = "list the named model configurations"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options."""


def run(args: argparse.Namespace) -> int:
    """Each named model with its dataset record; released weights with the scores they were published with."""
    from isnet.weights.presets import PRESETS
    from isnet.weights.released import WEIGHTS

    def score(value: float | None) -> str:
        return "—" if value is None else f"{value:.2f}"

    for name in sorted(PRESETS):
        dataset = PRESETS[name].dataset
        line = f"{name:42s} {dataset.name} ({dataset.num_classes} classes)"
        if name in WEIGHTS:
            weights = WEIGHTS[name]
            single, multi = weights.zoo_miou
            line += f"; released weights: mIoU {score(single)} single-scale / {score(multi)} ms+flip (model zoo)"
            if weights.paper_miou is not None:
                line += f", {score(weights.paper_miou)} in the paper"
        print(line)
    return 0
