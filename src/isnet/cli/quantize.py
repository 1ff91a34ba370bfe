"""``isnet quantize``: an INT8 model for CPUs, calibrated on the user's images and checked.

    isnet quantize --checkpoint model.safetensors --calibration images/train --output int8/model.xml \
        [--size H W] [--dataset camvid --data-root data/camvid | --holdout DIR [--labels-dir DIR]]

Calibrates :func:`isnet.deploy.quantize.quantize_model` on (at most ``--subset-size``) images of
``--calibration``, resized as the model is tested (its dataset record's test resize) or to
``--size``; writes the OpenVINO IR with the model's configuration and dataset record; then
prints the INT8 model's pixel agreement with float32 and, with labels, both mIoUs, on
held-out images: a dataset's validation split (``--dataset``/``--data-root``, resized by its
test protocol as ``isnet eval`` does), a folder (``--holdout``, with ``--labels-dir`` for
mIoU), or else the calibration images themselves (said so: they are not held out).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


from isnet.cli.common import (
    add_model_arguments,
    add_threads_argument,
    float_model,
    load_predictor_from_args,
    positive_int,
    protocol_line,
)

HELP = "INT8 model for CPUs (OpenVINO + NNCF), calibrated on your images"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from isnet.data import DATASET_NAMES

    add_model_arguments(parser, device=False)
    parser.add_argument("--calibration", required=True, help="folder of images like those the model will see")
    parser.add_argument("--output", required=True, help="MODEL.xml (OpenVINO IR; its weights go to MODEL.bin)")
    parser.add_argument("--size", type=positive_int, nargs=2, metavar=("H", "W"),
                        help="calibrate (and check) at this size; default: the model's test resize, else the images' own")
    parser.add_argument("--subset-size", type=positive_int, default=300, help="at most this many calibration images (spread evenly)")
    parser.add_argument("--holdout", help="folder of held-out images to check agreement with float32 on")
    parser.add_argument("--labels-dir", help="with --holdout: label PNGs (<stem>.png, class indices; the model record's "
                             "ignore_index, 255 by default, ignored) for mIoU")
    parser.add_argument("--dataset", choices=DATASET_NAMES, help="check on this dataset's split (with --data-root)")
    parser.add_argument("--data-root")
    parser.add_argument("--split", help="with --dataset: default its validation split")
    parser.set_defaults(fit=None)  # read by the evaluation data settings (`isnet eval --fit`)
    add_threads_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Quantise the model as ``args`` say; checked on held-out data set up as ``isnet eval`` does."""
    from isnet.cli.evaluate import eval_data
    from isnet.data.image import find_images
    from isnet.deploy.quantize import (
        FloatScope,
        calibration_subset,
        model_resize,
        prepare_image,
        quantize_model,
        write_int8,
    )
    from isnet.deploy.quantize_check import (
        compare,
        dataset_samples,
        image_samples,
        labelled_samples,
    )
    from isnet.deploy.runtimes.openvino import OpenVinoSegmentor
    from isnet.utils.atomic_files import require_replaceable
    from isnet.inference.engine import InferenceConfig
    from isnet.utils.errors import ConfigError

    predictor = load_predictor_from_args(args, precision="fp32", runtime="auto", device="cpu")
    model = float_model(predictor, "quantize")
    if model.config.backbone.in_channels != 3:
        raise ConfigError(f"the model takes {model.config.backbone.in_channels} image channels; INT8 calibration "
                          "reads RGB images, so only 3-channel models are quantised")
    if (args.dataset is None) != (args.data_root is None):
        raise ConfigError("--dataset and --data-root go together")
    if not str(args.output).endswith(".xml"):  # before the calibration, not after it
        raise ConfigError(f"--output {args.output}: the INT8 model is an OpenVINO IR; name it MODEL.xml "
                          "(its weights go to MODEL.bin)")
    for written in (Path(args.output), Path(args.output).with_suffix(".bin")):
        require_replaceable(written)  # a link there is refused before the calibration, not after it
    resize = {"size": tuple(args.size)} if args.size else model_resize(model)
    calibration = Path(args.calibration)
    if not calibration.is_dir():
        raise ConfigError(f"--calibration {calibration}: " + ("not a folder of images" if calibration.exists() else "no such folder"))
    paths = calibration_subset(find_images([calibration]), args.subset_size)
    if not paths:
        raise ConfigError(f"--calibration {calibration}: no images there")
    how = ", ".join(f"{key} {value[0]}×{value[1]}" for key, value in resize.items()) or "as they are"
    source = "--size" if args.size else f"the dataset record of {predictor.source}" if resize else "nothing recorded"
    print(f"test resize: {how} (from {source})", file=sys.stderr)
    print(f"calibrating on {len(paths)} image(s) from {args.calibration} ({how})", flush=True)
    images = [prepare_image(path, **resize) for path in paths]
    scope = FloatScope()
    path = write_int8(quantize_model(model, images, scope=scope), model, args.output, scope)
    print(f"wrote {path} and {path.with_suffix('.bin').name}: INT8; float kept for {scope.describe()}")

    def prepare(image_path):
        return prepare_image(image_path, **resize)

    if args.dataset:
        if args.fit is None and "fit" in resize:
            args.fit = resize["fit"]  # checked at the size it was calibrated at
            args.fit_source = "the model's test resize, as calibrated"
        data, test_resize = eval_data(args, predictor)
        protocol = protocol_line(test_resize, InferenceConfig())
        samples, where = dataset_samples(data.build(args.split or data.val_split, train=False)), f"{args.dataset} ({protocol})"
    elif args.holdout:
        held_out = find_images([args.holdout])
        samples = (labelled_samples(held_out, args.labels_dir, prepare, getattr(model, "dataset", None)) if args.labels_dir
                   else image_samples(held_out, prepare))
        where = args.holdout + (f", labels from {args.labels_dir}" if args.labels_dir else "")
    else:
        samples, where = ((image, None) for image in images), "the calibration images (not held out: give --dataset or --holdout)"
    comparison = compare(model, {"INT8": OpenVinoSegmentor(path)}, samples, model.config.num_classes)["INT8"]
    print(f"checked on {where}")
    print(comparison.describe())
    return 0
