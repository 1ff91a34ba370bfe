"""The ``isnet`` command line: ``demo``, ``train``, ``eval``, ``predict``, ``serve``, ``export``, ``quantize``, ``bench``, ``presets``, ``recipes``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from isnet.cli.common import (
    Parser,
    add_inference_arguments,
    add_model_arguments,
    class_names,
    inference_config,
    key_value,
    load_model_from_args,
    non_negative_int,
    positive_int,
    recipe_name,
    resolve_device,
)
from isnet.cli.training import cmd_demo, cmd_eval, cmd_presets, cmd_recipes, cmd_train

def cmd_predict(args: argparse.Namespace) -> int:
    """Segment images; under ``torchrun`` the files are split among the processes.

    Images whose two outputs already exist are skipped, so a killed job run again goes on
    where it stopped; outputs are written atomically, so a file is complete or absent.
    """
    from isnet.data.image import find_images
    from isnet.utils.distributed import all_reduce_sum, barrier, init_distributed
    from isnet.utils.errors import ConfigError
    from isnet.apps.predict_files import colliding_inputs, output_files, segment_files

    output = Path(args.output)
    if output.exists() and not output.is_dir():
        raise ConfigError(f"--output {output}: is a file, not a folder; name a folder for the label maps and overlays")
    device = resolve_device(args)
    context = init_distributed(str(device))
    model = load_model_from_args(args)
    if isinstance(model, torch.nn.Module):
        model = model.to(context.device)
    classes, palette = class_names(model, args)
    paths = find_images(args.inputs, exclude=output)
    if not paths:
        print(f"no images found in {', '.join(map(str, args.inputs))}", file=sys.stderr)
        return 2
    todo = [path for path in paths if not all(file.exists() for file in output_files(path, output))]
    if context.is_main and len(todo) < len(paths):
        print(f"{len(paths) - len(todo)} of {len(paths)} image(s) already done in {output}; segmenting the other {len(todo)}")
    collisions = colliding_inputs(paths)  # decided on all files, so that no two processes write one output
    mine = [path for path in todo if path not in collisions][context.rank :: context.world_size]
    on_done = None
    if context.enabled:  # one progress bar, on the first process, counting every process's outputs
        on_done = _shared_progress(todo, output) if context.is_main else (lambda path: None)
    failures = segment_files(model, mine, output, inference_config(args), classes, palette,
                             max_pixels=args.max_pixels, batch_size=args.batch_size, on_done=on_done)
    if context.is_main:
        failures += [(path, reason) for path, reason in collisions.items() if path in todo]
    failed = int(all_reduce_sum(torch.tensor(len(failures))).item())
    barrier()
    if on_done is not None and context.is_main:
        on_done(None)
    if failures:
        print(f"{len(failures)} of {len(todo)} file(s) could not be segmented{' by this process' if context.enabled else ''}:",
              file=sys.stderr)
        for _, reason in failures:
            print(f"  {reason}", file=sys.stderr)
    return 1 if failed else 0


def _shared_progress(todo: list[Path], output: Path):
    """A progress bar of the images of ``todo`` whose outputs exist, refreshed after each image here."""
    from isnet.apps.predict_files import output_files
    from isnet.utils.progress import progress_bar

    bar = progress_bar(total=len(todo), desc="predict")

    def update(_path: Path | None) -> None:
        bar.n = sum(all(file.exists() for file in output_files(path, output)) for path in todo)
        bar.refresh()
        if _path is None:
            bar.close()

    return update


def cmd_bench(args: argparse.Namespace) -> int:
    """Speed and memory against the published implementation (see :mod:`isnet.apps.bench.suite`)."""
    from isnet.apps.bench.suite import run_from_args

    return run_from_args(args)


def cmd_export(args: argparse.Namespace) -> int:
    """Write the model as ONNX or as a ``torch.export`` program, with dynamic batch and size."""
    from isnet.deploy.export import export_onnx, export_program
    from isnet.utils.numerics import relative_error

    model = load_model_from_args(args).eval()
    output = Path(args.output)
    fmt = args.format or ("torch-export" if output.suffix == ".pt2" else "onnx")
    if fmt == "onnx":
        path = export_onnx(model, output, sample_size=tuple(args.size))
    else:
        path = export_program(model, output, sample_size=tuple(args.size))
    print(f"wrote {path} ({fmt}, dynamic batch and size)")
    if args.check:
        image = torch.randn(1, 3, *args.size)
        with torch.no_grad():
            expected = model.logits(image)
        if fmt == "onnx":
            from isnet.deploy.runtimes.onnxruntime import OnnxSegmentor

            actual = OnnxSegmentor(path).logits(image)
        else:
            with torch.no_grad():
                actual = torch.export.load(str(path)).module()(image)
        error = relative_error(actual, expected)
        print(f"check: exported vs PyTorch, max error {error:.1e} of the largest logit")
        return 0 if error <= 1e-3 else 1
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve one of our checkpoints over HTTP: ``POST /predict``, a web page at ``/``, ``GET /healthz``."""
    from isnet.weights.checkpoint import CheckpointError, load_model

    try:
        from isnet.apps.serve.app import ServeConfig, create_app, run
    except ImportError as error:
        raise SystemExit(f"isnet serve needs the serve extra ({error}): pip install 'isnet[serve]'") from None
    if not str(args.checkpoint).endswith(".safetensors"):
        raise SystemExit(f"isnet serve: {args.checkpoint}: expected one of our .safetensors checkpoints "
                         "(written by `isnet train` or isnet.weights.checkpoint.save_model)")
    try:
        model = load_model(args.checkpoint)
    except CheckpointError as error:
        raise SystemExit(f"isnet serve: {error}") from None
    classes, palette = class_names(model, args)
    if args.precision == "auto":  # the fastest float32-accurate path measured on this machine
        from isnet.deploy.fast_paths import fast_model

        model = fast_model(model, log=lambda line: print(line, file=sys.stderr))
    elif args.precision != "fp32":
        from isnet.deploy.runtimes.pytorch import FastSegmentor

        model = FastSegmentor(model, precision=args.precision)
    config = ServeConfig(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_queue=args.max_queue,
                         max_upload_bytes=int(args.max_upload_mb * 2**20), max_pixels=args.max_pixels)
    run(create_app(model, classes, palette, config), host=args.host, port=args.port)
    return 0


def cmd_quantize(args: argparse.Namespace) -> int:
    """INT8 for CPUs (OpenVINO + NNCF), calibrated on your images, checked against float32 (:mod:`isnet.cli.quantize`)."""
    from isnet.cli.training import eval_data
    from isnet.cli.quantize import run

    return run(args, load_model_from_args(args).eval(), eval_data)


def build_parser() -> argparse.ArgumentParser:
    from isnet.data import DATASET_NAMES
    from isnet.deploy.fast_paths import add_runtime_arguments
    from isnet import __version__

    parser = Parser(prog="isnet", description=__doc__)
    parser.add_argument("--version", action="version", version=f"isnet {__version__} (torch {torch.__version__})")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (also: ISNET_DEBUG=1)")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="train a small ISNet on generated scenes (offline, a few minutes)")
    demo.add_argument("--output", default="outputs/demo")
    demo.add_argument("--iters", type=positive_int, default=600)
    demo.set_defaults(run=cmd_demo)

    train = commands.add_parser("train", help="train (or resume) a recipe; use torchrun for several processes")
    train.add_argument("--recipe", required=True, type=recipe_name, help="see `isnet recipes`")
    train.add_argument("--data-root")
    train.add_argument("--dataset", choices=DATASET_NAMES,
                       help="train the recipe's model on another dataset (its data settings and class count)")
    train.add_argument("--init-from", metavar="WEIGHTS",
                       help="start from these weights (a .safetensors, a released .pth or name), re-initialising "
                            "the tensors whose shape differs (e.g. the classifiers, for other classes)")
    train.add_argument("--output", help="run folder; an existing run there is resumed")
    train.add_argument("--max-iters", type=positive_int)
    train.add_argument("--batch-size", type=positive_int, help="global batch size")
    train.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"),
                       help="autocast; auto: bf16 where this machine's measured peaks say it pays, else fp32")
    train.add_argument("--weights-backbone", help="ImageNet checkpoint for the backbone")
    train.add_argument("--workers", type=non_negative_int)
    train.add_argument("--seed", type=non_negative_int)
    train.add_argument("--set", action="append", metavar="KEY=VALUE", type=key_value,
                       help="override any TrainConfig field, e.g. --set lr=0.02 --set data.crop_size=[256,256]")
    train.set_defaults(run=cmd_train)

    evaluate = commands.add_parser("eval", help="score a model on a dataset; writes a report with plots")
    add_model_arguments(evaluate)
    evaluate.add_argument("--dataset", required=True, choices=DATASET_NAMES)
    evaluate.add_argument("--data-root", required=True)
    evaluate.add_argument("--split", help="default: the dataset's validation split")
    evaluate.add_argument("--fit", type=positive_int, nargs=2, metavar=("LONG", "SHORT"), help="test-time resize box")
    evaluate.add_argument("--protocol", choices=("released", "custom"), default="custom",
                          help="released: the dataset's published ms+flip protocol; custom: the flags below")
    evaluate.add_argument("--output", default="outputs/eval")
    add_runtime_arguments(evaluate)
    add_inference_arguments(evaluate)
    evaluate.set_defaults(run=cmd_eval)

    complexity = commands.add_parser(
        "complexity", help="Table 2: parameters, multiply-adds and latency of ILCM, SLCM and the peer modules",
        add_help=False,
    )
    complexity.set_defaults(run=None)

    recipes = commands.add_parser("recipes", help="list the training recipes")
    recipes.set_defaults(run=cmd_recipes)

    predict = commands.add_parser("predict", help="segment images or folders of images")
    predict.add_argument("inputs", nargs="+", help="image files or folders")
    add_model_arguments(predict)
    predict.add_argument("--output", default="outputs/predict")
    add_runtime_arguments(predict)
    predict.add_argument("--compile", action="store_true", help="torch.compile the model (pays off for many images of one size)")
    predict.add_argument("--batch-size", type=positive_int, default=1,
                         help="predict this many images of one size together (default 1)")
    predict.add_argument("--max-pixels", type=positive_int, help="refuse larger images (default 100 million)")
    add_inference_arguments(predict)
    predict.set_defaults(run=cmd_predict)

    export = commands.add_parser("export", help="export a model to ONNX or torch.export (dynamic batch and size)")
    add_model_arguments(export, device=False)
    export.add_argument("--output", required=True, help="MODEL.onnx or PROGRAM.pt2")
    export.add_argument("--format", choices=("onnx", "torch-export"), help="default: from the output's suffix")
    export.add_argument("--size", type=positive_int, nargs=2, default=(512, 512), metavar=("H", "W"), help="sample size for tracing")
    export.add_argument("--check", action="store_true", help="compare the exported model with PyTorch on a random image")
    export.set_defaults(run=cmd_export)

    from isnet.cli.quantize import add_arguments as add_quantize_arguments

    quantize = commands.add_parser("quantize", help="INT8 model for CPUs (OpenVINO + NNCF), calibrated on your images")
    add_model_arguments(quantize, device=False)
    add_quantize_arguments(quantize, DATASET_NAMES)
    quantize.set_defaults(run=cmd_quantize)

    from isnet.apps.bench import add_arguments as add_bench_arguments

    bench = commands.add_parser("bench", help="speed and memory against the published implementation")
    add_bench_arguments(bench)
    bench.set_defaults(run=cmd_bench)

    serve = commands.add_parser("serve", help="serve a checkpoint over HTTP, with a web page (needs isnet[serve])")
    serve.add_argument("--checkpoint", required=True, help="one of our .safetensors checkpoints")
    serve.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to listen on every interface")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                       help="auto (default): the fastest float32-accurate path measured on this machine (cached)")
    serve.add_argument("--max-batch", type=int, default=8, help="images of one size per model call (1: no batching)")
    serve.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a request waits for others to batch with")
    serve.add_argument("--max-queue", type=int, default=32, help="requests waiting for the model; more get 503")
    serve.add_argument("--max-upload-mb", type=float, default=20.0, help="larger uploads get 413")
    serve.add_argument("--max-pixels", type=int, default=4096 * 4096, help="larger images get 413")
    serve.set_defaults(run=cmd_serve)

    presets = commands.add_parser("presets", help="list the named model configurations")
    presets.set_defaults(run=cmd_presets)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a command. A known error (a bad file, bad data, a bad option, a mismatched checkpoint,
    a full disk, a refused permission) is printed in a few lines naming the file or option and
    the problem: exit status 2 for usage errors, 1 otherwise. ``--debug`` (anywhere on the
    command line) or ``ISNET_DEBUG=1`` lets the traceback through instead."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("ISNET_DEBUG", "") not in ("", "0")
    argv = [arg for arg in argv if arg != "--debug"]
    if argv[:1] == ["complexity"]:  # has its own argument parser
        from isnet.apps.bench.complexity import main as complexity_main

        return complexity_main(argv[1:])
    args = build_parser().parse_args(argv)
    if debug:
        return args.run(args)
    from isnet.utils.errors import report_error

    try:
        return args.run(args)
    except BaseException as error:  # noqa: B036 - the error boundary: every known error in words
        return report_error(error, f"isnet {args.command}")

