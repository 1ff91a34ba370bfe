"""The ``isnet`` command line: ``demo``, ``predict``, ``presets``."""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import torch

SAMPLE_IMAGE = "sample.jpg"


def _sample_path() -> Path:
    return Path(str(resources.files("isnet") / "assets" / SAMPLE_IMAGE))


def _load_model(args: argparse.Namespace) -> torch.nn.Module:
    from .checkpoint import load_model
    from .presets import create_model

    if args.checkpoint:
        return load_model(args.checkpoint)
    return create_model(args.model, weights=args.weights)


def _class_names(num_classes: int, args: argparse.Namespace) -> tuple[list[str], list[tuple[int, int, int]]]:
    from .visualize import generic_palette

    return [f"class {k}" for k in range(num_classes)], generic_palette(num_classes)


def _add_inference_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", choices=("whole", "slide"), default="whole")
    parser.add_argument("--crop", type=int, nargs=2, default=(512, 512), metavar=("H", "W"))
    parser.add_argument("--stride", type=int, nargs=2, default=(341, 341), metavar=("H", "W"))
    parser.add_argument("--scales", type=float, nargs="+", default=(1.0,))
    parser.add_argument("--flip", action="store_true", help="average with the mirrored image")


def _inference_config(args: argparse.Namespace, flip_pairs=()):
    from .inference import InferenceConfig

    return InferenceConfig(
        mode=args.mode,
        crop=tuple(args.crop),
        stride=tuple(args.stride),
        scales=tuple(args.scales),
        flip=args.flip,
        flip_pairs=tuple(flip_pairs),
        probs_before_resize=len(args.scales) > 1 or args.flip,
    )


def segment_files(model, paths, output: Path, config, classes, palette) -> list[tuple[Path, str]]:
    """Segment each image, writing ``<stem>_labels.png`` and ``<stem>_overlay.png``.

    Returns the files that could not be read, with the reason; the others are written.
    """
    from PIL import Image

    from .data.image import ImageReadError, read_image, to_tensor
    from .inference import predict_labels
    from .visualize import save_overlay_with_legend

    output.mkdir(parents=True, exist_ok=True)
    failures = []
    model.eval()
    for path in paths:
        try:
            image = read_image(path)
        except ImageReadError as error:
            failures.append((path, str(error)))
            print(f"skipped {error}", file=sys.stderr)
            continue
        labels = predict_labels(model, to_tensor(image).unsqueeze(0), config)[0].numpy().astype(np.uint8)
        Image.fromarray(labels).save(output / f"{path.stem}_labels.png")
        save_overlay_with_legend(output / f"{path.stem}_overlay.png", image, labels, classes, palette, title=path.name)
        print(f"{path} → {output / (path.stem + '_overlay.png')}")
    return failures


def cmd_predict(args: argparse.Namespace) -> int:
    from .data.image import find_images

    model = _load_model(args)
    classes, palette = _class_names(model.config.num_classes, args)
    paths = find_images(args.inputs)
    if not paths:
        print(f"no images found in {', '.join(map(str, args.inputs))}", file=sys.stderr)
        return 2
    failures = segment_files(model, paths, Path(args.output), _inference_config(args), classes, palette)
    if failures:
        print(f"{len(failures)} of {len(paths)} file(s) could not be segmented:", file=sys.stderr)
        for path, reason in failures:
            print(f"  {reason}", file=sys.stderr)
        return 1
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Build a preset model, segment the bundled sample image, write labels and an overlay."""
    from .inference import InferenceConfig
    from .presets import create_model

    torch.manual_seed(0)
    model = create_model(args.model)
    classes, palette = _class_names(model.config.num_classes, args)
    print(f"model {args.model} (random weights: pass real ones to `isnet predict --weights`)")
    failures = segment_files(model, [_sample_path()], Path(args.output), InferenceConfig(), classes, palette)
    return 1 if failures else 0


def cmd_presets(args: argparse.Namespace) -> int:
    from .presets import PRESETS

    for name in sorted(PRESETS):
        print(name)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="isnet", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="segment the bundled sample image")
    demo.add_argument("--model", default="isnet_resnet50os8_ade20k")
    demo.add_argument("--output", default="outputs/demo")
    demo.set_defaults(run=cmd_demo)

    predict = commands.add_parser("predict", help="segment images or folders of images")
    predict.add_argument("inputs", nargs="+", help="image files or folders")
    source = predict.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", help="one of our .safetensors checkpoints (carries its configuration)")
    source.add_argument("--model", default="isnet_resnet50os8_ade20k", help="preset name (see `isnet presets`)")
    predict.add_argument("--weights", help="weights for --model: a released .pth or a .safetensors")
    predict.add_argument("--output", default="outputs/predict")
    _add_inference_arguments(predict)
    predict.set_defaults(run=cmd_predict)

    presets = commands.add_parser("presets", help="list the named model configurations")
    presets.set_defaults(run=cmd_presets)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
