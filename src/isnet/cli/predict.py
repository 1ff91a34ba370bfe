"""``isnet predict``: segment images or folders; under ``torchrun`` the files are split among the processes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from isnet.cli.common import (
    add_inference_arguments,
    add_model_arguments,
    class_names,
    inference_config,
    load_model_from_args,
    positive_int,
    resolve_device,
)

HELP = "segment images or folders of images"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from isnet.deploy.fast_paths import add_runtime_arguments

    parser.add_argument("inputs", nargs="+", help="image files or folders")
    add_model_arguments(parser)
    parser.add_argument("--output", default="outputs/predict")
    add_runtime_arguments(parser)
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (pays off for many images of one size)")
    parser.add_argument("--batch-size", type=positive_int, default=1,
                        help="predict this many images of one size together (default 1)")
    parser.add_argument("--max-pixels", type=positive_int, help="refuse larger images (default 100 million)")
    add_inference_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Segment images; under ``torchrun`` the files are split among the processes.

    Images whose two outputs already exist are skipped, so a killed job run again goes on
    where it stopped; outputs are written atomically, so a file is complete or absent.
    """
    from isnet.apps.predict_files import colliding_inputs, output_files, segment_files
    from isnet.data.image import find_images
    from isnet.utils.distributed import all_reduce_sum, barrier, init_distributed
    from isnet.utils.errors import ConfigError

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
