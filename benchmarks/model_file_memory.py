"""Peak memory and time of loading a big model file, each load in a fresh child process.

    PYTHONPATH=src python3 benchmarks/model_file_memory.py [--source OTHER/src ...] [--size-mb 200]

Writes a synthetic model file of about ``--size-mb`` MB (an ISNet whose backbone widths are
scaled up until its weights weigh that much; random weights) into a temporary folder, then,
for each ``--source`` (a ``src`` folder of an isnet checkout; default: this one), measures in
a child process: the seal check alone (``check_seal``), ``load_model(FILE)`` and
``create_model(config, weights=FILE)``. Printed: the child's peak RSS (``ru_maxrss``) above
what it held after importing isnet and building nothing, and the wall time. Several sources
side by side compare two versions in one run, on one machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import torch
from isnet.utils.seal import check_seal
from isnet.weights.checkpoint import load_model
from isnet.weights.presets import create_model
from isnet.model.config import ModelConfig

torch.set_num_threads(1)
what, path = sys.argv[1], Path(sys.argv[2])
config = ModelConfig.from_json(sys.argv[3])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
if what == "check_seal":
    check_seal(path)
elif what == "load_model":
    load_model(path)
else:
    create_model(config, weights=path)
seconds = time.perf_counter() - start
print(json.dumps({"peak_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024, "seconds": seconds}))
"""


def big_config(size_mb: float):
    """A ResNet-101 ISNet whose widths grow until its float32 weights weigh about ``size_mb`` MB."""
    import torch

    from isnet.model.config import BackboneConfig, ISNetHeadConfig, ModelConfig
    from isnet.model.segmentor import build_model

    width = 16
    while True:
        config = ModelConfig(num_classes=19, backbone=BackboneConfig("resnet", 101, base_channels=width,
                                                                     stem_channels=width),
                             head=ISNetHeadConfig(channels=4 * width, transform_channels=2 * width))
        with torch.device("meta"):
            megabytes = sum(t.numel() * 4 for t in build_model(config).state_dict().values()) / 1e6
        if megabytes >= size_mb:
            return config, megabytes
        width += 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", action="append", type=Path, help="src folder of an isnet checkout (repeatable)")
    parser.add_argument("--size-mb", type=float, default=200)
    parser.add_argument("--repeats", type=int, default=2, help="children per measurement (the best is printed)")
    args = parser.parse_args()
    sources = args.source or [Path(__file__).resolve().parents[1] / "src"]

    from isnet.model.segmentor import build_model
    from isnet.weights.checkpoint import save_model

    config, megabytes = big_config(args.size_mb)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "big.safetensors"
        save_model(build_model(config), path)
        size = path.stat().st_size / 1e6
        print(f"model file: {size:.0f} MB ({megabytes:.0f} MB of float32 weights, ResNet-101 widths "
              f"{config.backbone.base_channels})")
        print(f"{'source':<40} {'what':<14} {'peak RSS above start (MB)':>26} {'seconds':>8}")
        for source in sources:
            for what in ("check_seal", "load_model", "create_model"):
                runs = []
                for _ in range(args.repeats):
                    result = subprocess.run([sys.executable, "-c", CHILD, what, str(path), config.to_json()],
                                            env={"PYTHONPATH": str(source), "OMP_NUM_THREADS": "1", "PATH": ""},
                                            capture_output=True, text=True, check=True)
                    runs.append(json.loads(result.stdout.strip().splitlines()[-1]))
                peak = min(run["peak_mb"] for run in runs)
                seconds = min(run["seconds"] for run in runs)
                print(f"{str(source):<40} {what:<14} {peak:>26.0f} {seconds:>8.2f}")


if __name__ == "__main__":
    main()
