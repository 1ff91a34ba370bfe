"""``isnet predict``: segment images or folders; under ``torchrun`` the files are split among the processes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from isnet.cli.common import (
    add_inference_arguments,
    add_model_arguments,
    add_threads_argument,
    add_threshold_argument,
    class_names,
    inference_config,
    load_predictor_from_args,
    non_negative_int,
    positive_float,
    positive_int,
    protocol_line,
    resolve_device,
    test_resize,
    thresholded,
    tiled_protocol_line,
    usage_error,
)

if TYPE_CHECKING:
    from isnet.utils.distributed import DistributedContext

HELP = "segment images, folders of images, videos and folders of frames"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from isnet.deploy.fast_paths import add_runtime_arguments

    parser.add_argument("inputs", nargs="+", help="image files or folders")
    add_model_arguments(parser)
    parser.add_argument("--output", default="outputs/predict")
    add_runtime_arguments(parser)
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (pays off for many images of one size)")
    parser.add_argument("--batch-size", type=positive_int, default=1,
                        help="predict this many images of one size together (default 1)")
    parser.add_argument("--max-pixels", type=positive_int,
                        help="refuse larger images (default 100 million, or 4 billion for images streamed tile by tile)")
    add_inference_arguments(parser)
    parser.add_argument("--fit", type=positive_int, nargs=2, metavar=("LONG", "SHORT"),
                        help="test-time resize box (default: the one the model's dataset record carries)")
    add_threshold_argument(parser)
    parser.add_argument("--confidence", action="store_true",
                        help="also write <name>_confidence.png: the probability of the predicted class, 16-bit (p·65535)")
    large = parser.add_argument_group("very large images, streamed tile by tile (labels as --mode slide)")
    large.add_argument("--tile", type=positive_int, nargs=2, metavar=("H", "W"),
                       help="stream every image in windows of H×W; of the class scores only one batch of tiles is held")
    large.add_argument("--overlap", type=non_negative_int, help="pixels shared by neighbouring tiles (default a third)")
    large.add_argument("--blend", choices=("mean", "cosine"), default="mean",
                       help="mean: the sliding-window average (default); cosine: a raised-cosine ramp, no seams")
    large.add_argument("--tile-above", type=positive_int, default=4096 * 4096, metavar="PIXELS",
                       help="without --tile, stream images of more pixels in the --crop/--stride windows (default 4096²)")
    large.add_argument("--spill-dir", type=Path, metavar="DIR",
                       help="where the scores waiting for the next row of tiles are kept while an image streams "
                            "(default: $TMPDIR or /tmp; name a disk folder where that is a tmpfs)")
    video = parser.add_argument_group("videos (.mp4, .avi, .mov, .mkv, ...) and folders of frames")
    video.add_argument("--frames", action="store_true", help="a folder given is the frames of one video, in name order")
    video.add_argument("--fps", type=positive_float, help="frame rate of the videos written (default: the input's, or 25)")
    video.add_argument("--smooth", type=positive_float, default=1.0, metavar="ALPHA",
                       help="temporal smoothing: moving average of probabilities, p̄ = α·p + (1−α)·p̄ (default 1: none)")
    from isnet.cli.labelling_loop import add_labelling_arguments

    add_labelling_arguments(parser)
    ray = parser.add_argument_group("engine")
    ray.add_argument("--engine", choices=("local", "ray"), default="local",
                     help="local (one process, or torchrun's); ray: Ray Data map_batches (needs isnet[ray])")
    ray.add_argument("--ray-address", help="a running Ray cluster (default: start a local one)")
    ray.add_argument("--ray-timeout", type=positive_float, default=30.0, metavar="S",
                     help="give up on --ray-address after S seconds without an answer (default 30)")
    ray.add_argument("--ray-workers", type=positive_int, default=2, help="Ray actors, each with a model (default 2)")
    add_threads_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Segment images; under ``torchrun`` the files are split among the processes.

    Images whose two outputs already exist are skipped, so a killed job run again goes on
    where it stopped; outputs are written atomically, so a file is complete or absent.
    """
    from isnet.apps.predict_files import colliding_inputs, output_files, segment_files
    from isnet.apps.tiled_predict import (
        segment_large_files,
        split_streamed,
        tile_config,
    )
    from isnet.apps.video import is_video
    from isnet.cli.labelling_loop import check_labelling_arguments, labelling_outputs
    from isnet.data.image import find_images
    from isnet.utils.distributed import all_reduce_sum, barrier, init_distributed
    from isnet.utils.errors import ConfigError

    check_labelling_arguments(args)
    output = Path(args.output)
    if output.exists() and not output.is_dir():
        raise ConfigError(f"--output {output}: is a file, not a folder; name a folder for the label maps and overlays")
    config = inference_config(args)
    tiles = None
    if args.tile is not None:
        if config.scales != (1.0,) or config.flip:
            usage_error("--tile streams one scale without flip; leave out --scales / --flip")
        if args.fit is not None:
            usage_error("--tile streams every image at its own size, --fit resizes it first; leave out one of them")
        try:
            tiles = tile_config(args.tile, args.overlap, args.blend)
        except ValueError as error:
            usage_error(str(error))
    if args.spill_dir is not None and not args.spill_dir.is_dir():
        usage_error(f"--spill-dir {args.spill_dir}: not a folder")
    if not 0 < args.smooth <= 1:
        usage_error(f"--smooth {args.smooth}: α must be in (0, 1]; 1 is no smoothing")
    videos = [Path(item) for item in args.inputs if is_video(Path(item)) or (args.frames and Path(item).is_dir())]
    images = [item for item in args.inputs if Path(item) not in videos]
    if (args.export or args.rank) and (videos or args.engine == "ray"):
        usage_error("--export and --rank take image files predicted by --engine local; leave out the videos")
    if videos:
        unused = [option for option, given in (("--confidence", args.confidence), ("--tile", args.tile is not None),
                                               ("--spill-dir", args.spill_dir is not None)) if given]
        if unused:
            usage_error(f"{unused[0]} does not apply to videos ({videos[0]}): predict the videos without it, "
                        "and the images with it in another run")
    if args.engine == "ray":
        if videos or tiles is not None:
            usage_error("--engine ray labels image files; predict videos and --tile images without it")
        return _predict_with_ray(args, find_images(images, exclude=output), output, config)
    context = init_distributed(str(resolve_device(args)))
    args.device = str(context.device)  # under torchrun, this process's GPU
    model = thresholded(load_predictor_from_args(args), args)
    resize = test_resize(args, model)
    print(protocol_line(resize, config) if tiles is None else tiled_protocol_line(resize, tiles), file=sys.stderr)
    classes, palette = class_names(model, args)
    video_failures = _segment_videos(model, videos, context, output, config, palette, args, resize[:2])
    paths = find_images(images, exclude=output) if images else []
    if not paths and not videos:
        print(f"no images found in {', '.join(map(str, args.inputs))}", file=sys.stderr)
        return 2
    todo = [path for path in paths
            if not all(file.exists() for file in output_files(path, output, confidence=args.confidence))]
    todo_count = len(todo) + len(videos)
    if context.is_main and len(todo) < len(paths):
        print(f"{len(paths) - len(todo)} of {len(paths)} image(s) already done in {output}; segmenting the other {len(todo)}")
    collisions = colliding_inputs(paths)  # decided on all files, so that no two processes write one output
    mine = [path for path in todo if path not in collisions][context.rank :: context.world_size]
    on_done = None
    if context.enabled:  # one progress bar, on the first process, counting every process's outputs
        on_done = _shared_progress(len(todo), context)
    whole, streamed = split_streamed(mine, tiles, config, tile_above=args.tile_above, max_pixels=args.max_pixels)
    if streamed and tiles is None and any(resize[:2]):
        print(f"note: the images streamed tile by tile are predicted at their own size; the test resize of "
              f"{resize[2]} applies to the others", file=sys.stderr)
    failures = segment_files(model, whole, output, config, classes, palette, max_pixels=args.max_pixels,
                             batch_size=args.batch_size, on_done=on_done, confidence=args.confidence,
                             resize=resize[:2])
    failures += segment_large_files(model, streamed, output, classes, palette, max_pixels=args.max_pixels,
                                    confidence=args.confidence, on_done=on_done, spill_dir=args.spill_dir)
    failures += video_failures
    if context.is_main:
        failures += [(path, reason) for path, reason in collisions.items() if path in todo]
    failed = int(all_reduce_sum(torch.tensor(len(failures))).item())
    barrier()
    if on_done is not None and context.is_main:
        on_done(None)
    if context.is_main and (args.export or args.rank):
        labelling_outputs(args, paths, output, classes, palette)
    if failures:
        print(f"{len(failures)} of {todo_count} file(s) could not be segmented{' by this process' if context.enabled else ''}:",
              file=sys.stderr)
        for _, reason in failures:
            print(f"  {reason}", file=sys.stderr)
    return 1 if failed else 0


def _predict_with_ray(args: argparse.Namespace, paths: list[Path], output: Path, config) -> int:
    """``--engine ray``: the images on Ray Data actors (see :mod:`isnet.apps.ray_predict`)."""
    from isnet.apps.predict_files import colliding_inputs, output_files
    from isnet.apps.ray_predict import ModelSource, predict_with_ray, summarise

    if args.runtime in ("onnx", "openvino") or args.precision == "fp16" or args.compile:
        usage_error("--engine ray runs our PyTorch model in fp32 or bf16 (no --runtime, fp16 or --compile)")
    if not (args.checkpoint or (args.model and (args.weights or args.allow_random))):
        usage_error("--engine ray: give --checkpoint FILE.safetensors, or --model NAME with --weights")
    if args.precision == "auto":
        print("note: --engine ray runs PyTorch float32 (auto measures this machine, not the cluster's workers)",
              file=sys.stderr)
    source = ModelSource(checkpoint=args.checkpoint, model=args.model, weights=args.weights,
                         precision="bf16" if args.precision == "bf16" else "fp32")
    if not paths:
        print(f"no images found in {', '.join(map(str, args.inputs))}", file=sys.stderr)
        return 2
    todo = [path for path in paths if not all(f.exists() for f in output_files(path, output, confidence=args.confidence))]
    if len(todo) < len(paths):
        print(f"{len(paths) - len(todo)} of {len(paths)} image(s) already done in {output}; segmenting the other {len(todo)}")
    collisions = colliding_inputs(paths)
    todo = [path for path in todo if path not in collisions]
    model = source.load()
    classes, palette = class_names(model, args)
    resize = test_resize(args, model)
    print(protocol_line(resize, config), file=sys.stderr)
    results = predict_with_ray(todo, output, config, source, classes, palette, workers=args.ray_workers,
                               address=args.ray_address, batch_size=args.batch_size, confidence=args.confidence,
                               max_pixels=args.max_pixels, timeout_s=args.ray_timeout, resize=resize[:2])
    for path in collisions:
        print(f"  {collisions[path]}", file=sys.stderr)
    return max(summarise(results), 1 if collisions else 0)


def _segment_videos(model, videos, context, output: Path, config, palette, args: argparse.Namespace,
                    resize: tuple) -> list[tuple[Path, str]]:
    """Each video (or folder of frames) of this process's share to a label video and an overlay video; the ones
    that failed, with why (colliding outputs are decided on all of them, so no two processes write one)."""
    from isnet.apps.predict_files import require_writable_folder
    from isnet.apps.video import colliding_videos, segment_video, video_outputs

    if videos:
        require_writable_folder(output)
    collisions = colliding_videos(videos, output)
    videos = videos[context.rank :: context.world_size]
    failures = [(video, collisions[video]) for video in videos if video in collisions]
    for video in videos:
        if video in collisions:
            continue
        if all(path.exists() for path in video_outputs(video, output)):
            print(f"{video}: its videos are already in {output}; skipped")
            continue
        reason = segment_video(model, video, output, config, palette, batch_size=args.batch_size, smooth=args.smooth,
                               fps=args.fps, resize=resize)
        if reason is not None:
            failures.append((video, reason))
    return failures


def _shared_progress(total: int, context: DistributedContext):
    """``on_done(path)`` for every process: counts the image done (``None``: the end) in a count all
    processes share; the first process shows it as a progress bar. O(1) a call, whatever the number of images."""
    from isnet.utils.distributed import SharedCounter
    from isnet.utils.progress import progress_bar

    counter = SharedCounter(context)
    bar = progress_bar(total=total, desc="predict") if context.is_main else None

    def update(path: Path | None) -> None:
        done = counter.add(1) if path is not None else counter.value
        if bar is not None:
            bar.n = done
            bar.refresh()
            if path is None:
                bar.close()

    return update
