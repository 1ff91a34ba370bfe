"""Peak memory of ``isnet predict --tile`` against whole-image sliding windows, by image size.

For each side S it writes an S×S RGB PNG (libvips, streamed: the generator holds no image
either), then runs ``isnet predict`` in a fresh process on it, streamed (``--tile``) and,
for the sizes given to ``--whole-up-to``, whole (``--mode slide`` with the same windows),
and reports each process's resident peak (``ru_maxrss`` from ``wait4``) and wall time. The
model is a tiny ISNet (19 classes, or ``--classes K``: ADE20K's 150, say), so the numbers show
what the inference holds, not a backbone's activations. ``--against DIR`` also runs the
streamed prediction with another version's code (``DIR/src``, a checkout or a ``git archive``
of it), side by side on the same image and checkpoint:

    python -m benchmarks.tiled_memory --whole-up-to 0         # 5000², 10000², 20000² streamed; ~15 min on 2 cores
    python -m benchmarks.tiled_memory --sides 2000 4000 --whole-up-to 4000
    git archive --prefix=before/ HEAD~1 src | tar -x -C /tmp
    python -m benchmarks.tiled_memory --classes 150 --whole-up-to 5000 --against /tmp/before   # ~35 min
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from isnet.model.config import BackboneConfig, ISNetHeadConfig, ModelConfig
from isnet.model.segmentor import build_model
from isnet.weights.checkpoint import save_model

TINY = ModelConfig(
    num_classes=19,
    backbone=BackboneConfig("resnet", 18, base_channels=8, stem_channels=8),
    head=ISNetHeadConfig(channels=16, transform_channels=8),
)


def tiny_model(classes: int) -> ModelConfig:
    """The benchmark's tiny ISNet with ``classes`` output classes."""
    return replace(TINY, num_classes=classes)


def write_image(path: Path, side: int) -> None:
    """An S×S RGB PNG of smooth noise, written by libvips a band at a time."""
    import pyvips

    noise = pyvips.Image.gaussnoise(side // 16 + 1, side // 16 + 1, sigma=60, mean=128)
    bands = noise.bandjoin([noise.rot90().crop(0, 0, noise.width, noise.height), noise.flip("horizontal")])
    bands.resize(16, kernel="linear").crop(0, 0, side, side).cast("uchar").write_to_file(str(path), compression=1)


def peak_of(command: list[str], source: Path | None = None) -> tuple[int, float, int]:
    """(exit status, wall seconds, resident peak in MiB) of ``command`` run in a fresh process
    (importing isnet from ``source`` when given)."""
    environment = None if source is None else {**os.environ, "PYTHONPATH": str(source)}
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=environment)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    error = process.stderr.read().decode()
    process.stderr.close()
    if process.returncode:
        print(error[-2000:], file=sys.stderr)
    return process.returncode, time.perf_counter() - start, usage.ru_maxrss // 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", type=int, nargs="+", default=(5000, 10000, 20000))
    parser.add_argument("--whole-up-to", type=int, default=10000, help="also run whole-image slide mode up to this side")
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--classes", type=int, default=TINY.num_classes, help="the tiny model's class count")
    parser.add_argument("--against", type=Path, help="also stream with the isnet code in DIR/src (another version)")
    args = parser.parse_args(argv)
    if args.against is not None and not (args.against / "src" / "isnet").is_dir():
        parser.error(f"--against {args.against}: no src/isnet in it")
    stride = args.tile - args.overlap
    rows = []
    with tempfile.TemporaryDirectory(prefix="isnet-tiled-") as folder:
        folder = Path(folder)
        checkpoint = save_model(build_model(tiny_model(args.classes)), folder / "tiny.safetensors")
        base = [sys.executable, "-m", "isnet.cli", "predict", "--checkpoint", str(checkpoint), "--precision", "fp32",
                "--max-pixels", str(10**10)]
        for side in args.sides:
            image = folder / f"side{side}.png"
            write_image(image, side)
            tiled = ["--tile", str(args.tile), str(args.tile), "--overlap", str(args.overlap)]
            runs = [("tiled", tiled, None)]
            if args.against is not None:
                runs.append((f"tiled ({args.against.name})", tiled, args.against.resolve() / "src"))
            if side <= args.whole_up_to:
                runs.append(("whole slide", ["--mode", "slide", "--crop", str(args.tile), str(args.tile),
                                             "--stride", str(stride), str(stride), "--tile-above", str(10**11)], None))
            for number, (name, options, source) in enumerate(runs):
                status, seconds, peak = peak_of(base + [str(image), "--output", str(folder / f"run{number}"), *options],
                                                source)
                row = {"side": side, "classes": args.classes, "mode": name, "status": status,
                       "seconds": round(seconds, 1), "peak_mib": peak}
                print(json.dumps(row), flush=True)
                rows.append(row)
            image.unlink()
    print("| image | classes | mode | peak RSS | time |\n|---|---|---|---|---|")
    for row in rows:
        result = f"{row['peak_mib']:,} MiB" if row["status"] == 0 else f"failed ({row['status']})"
        print(f"| {row['side']}×{row['side']} | {row['classes']} | {row['mode']} | {result} | {row['seconds']} s |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
