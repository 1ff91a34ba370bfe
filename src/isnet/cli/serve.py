"""``isnet serve``: one of our checkpoints over HTTP (see :mod:`isnet.apps.serve`)."""

from __future__ import annotations

import argparse
import sys

from isnet.cli.common import (
    add_threads_argument,
    add_threshold_argument,
    class_names,
    non_negative_float,
    port_number,
    positive_float,
    positive_int,
    thresholded,
)

HELP = "serve a checkpoint over HTTP, with a web page (needs isnet[serve])"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="one of our .safetensors checkpoints")
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to listen on every interface")
    parser.add_argument("--port", type=port_number, default=8000)
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="auto (default): the fastest float32-accurate path measured on this machine (cached)")
    parser.add_argument("--fit", type=positive_int, nargs=2, metavar=("LONG", "SHORT"),
                        help="test-time resize box (default: the one the model's dataset record carries)")
    parser.add_argument("--max-batch", type=positive_int, default=8, help="images of one size per model call (1: no batching)")
    parser.add_argument("--max-wait-ms", type=non_negative_float, default=5.0, help="how long a request waits for others to batch with")
    parser.add_argument("--max-queue", type=positive_int, default=32, help="requests waiting for the model; more get 503")
    parser.add_argument("--max-upload-mb", type=positive_float, default=20.0, help="larger uploads get 413")
    parser.add_argument("--max-pixels", type=positive_int, default=4096 * 4096, help="larger images get 413")
    parser.add_argument("--request-timeout", type=positive_float, default=30.0, metavar="S",
                        help="a request's headers, then its body, must arrive within S seconds: slower clients are dropped")
    add_threads_argument(parser)
    add_threshold_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Serve one of our checkpoints over HTTP: ``POST /predict``, a web page at ``/``, ``GET /healthz``."""
    from isnet.apps.serve.app import (  # without the serve extra: named by the boundary
        ServeConfig,
        create_app,
        run,
    )
    from isnet.cli.common import load_predictor_from_args, protocol_line, test_resize, usage_error
    from isnet.inference.engine import InferenceConfig

    if not str(args.checkpoint).endswith(".safetensors"):
        usage_error(f"--checkpoint {args.checkpoint}: expected one of our .safetensors checkpoints "
                    "(written by `isnet train` or isnet.weights.checkpoint.save_model)")
    # a damaged or mistaken file: one line naming it (the error boundary); its temperature applied, when it has one
    model = load_predictor_from_args(args, runtime="auto")
    if model.config.backbone.in_channels != 3:
        usage_error(f"--checkpoint {args.checkpoint} takes {model.config.backbone.in_channels} image channels; "
                    "the server decodes uploads as RGB: segment such images with `isnet predict`")
    classes, palette = class_names(model, args)
    model = thresholded(model, args)  # --threshold over the one `isnet calibrate` stored (applied by the loader)
    resize = test_resize(args, model)
    print(f"serving {model.describe()}; {protocol_line(resize, InferenceConfig())}", file=sys.stderr)
    config = ServeConfig(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_queue=args.max_queue,
                         max_upload_bytes=int(args.max_upload_mb * 2**20), max_pixels=args.max_pixels, resize=resize[:2],
                         request_timeout_s=args.request_timeout)
    run(create_app(model, classes, palette, config), host=args.host, port=args.port, request_timeout_s=args.request_timeout)
    return 0
