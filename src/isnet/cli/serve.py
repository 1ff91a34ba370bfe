"""``isnet serve``: one of our checkpoints over HTTP (see :mod:`isnet.apps.serve`)."""

from __future__ import annotations

import argparse
import sys

from isnet.cli.common import add_threshold_argument, calibrated, class_names, thresholded

HELP = "serve a checkpoint over HTTP, with a web page (needs isnet[serve])"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="one of our .safetensors checkpoints")
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to listen on every interface")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="auto (default): the fastest float32-accurate path measured on this machine (cached)")
    parser.add_argument("--max-batch", type=int, default=8, help="images of one size per model call (1: no batching)")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a request waits for others to batch with")
    parser.add_argument("--max-queue", type=int, default=32, help="requests waiting for the model; more get 503")
    parser.add_argument("--max-upload-mb", type=float, default=20.0, help="larger uploads get 413")
    parser.add_argument("--max-pixels", type=int, default=4096 * 4096, help="larger images get 413")
    parser.add_argument("--request-timeout", type=float, default=30.0, metavar="S",
                        help="a request's headers, then its body, must arrive within S seconds: slower clients are dropped")
    add_threshold_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Serve one of our checkpoints over HTTP: ``POST /predict``, a web page at ``/``, ``GET /healthz``."""
    from isnet.apps.serve.app import (  # without the serve extra: named by the boundary
        ServeConfig,
        create_app,
        run,
    )
    from isnet.cli.common import usage_error
    from isnet.weights.checkpoint import load_model

    if not str(args.checkpoint).endswith(".safetensors"):
        usage_error(f"--checkpoint {args.checkpoint}: expected one of our .safetensors checkpoints "
                    "(written by `isnet train` or isnet.weights.checkpoint.save_model)")
    model = load_model(args.checkpoint)  # a damaged or mistaken file: one line naming it (the error boundary)
    if model.config.backbone.in_channels != 3:
        usage_error(f"--checkpoint {args.checkpoint} takes {model.config.backbone.in_channels} image channels; "
                    "the server decodes uploads as RGB: segment such images with `isnet predict`")
    classes, palette = class_names(model, args)
    if args.precision == "auto":  # the fastest float32-accurate path measured on this machine
        from isnet.deploy.fast_paths import fast_model

        model = fast_model(model, log=lambda line: print(line, file=sys.stderr))
    elif args.precision != "fp32":
        from isnet.deploy.runtimes.pytorch import FastSegmentor

        model = FastSegmentor(model, precision=args.precision)
    model = thresholded(calibrated(model, args), args)  # the temperature and threshold `isnet calibrate` stored
    config = ServeConfig(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_queue=args.max_queue,
                         max_upload_bytes=int(args.max_upload_mb * 2**20), max_pixels=args.max_pixels,
                         request_timeout_s=args.request_timeout)
    run(create_app(model, classes, palette, config), host=args.host, port=args.port, request_timeout_s=args.request_timeout)
    return 0
