"""Load test of ``isnet serve``: concurrent clients against a small model, with and without dynamic batching.

    python -m benchmarks.serve_load [--clients 8] [--requests 50] [--max-batch 1 8]

For each ``--max-batch`` it starts ``isnet serve`` on a free loopback port (nothing leaves
the machine), warms it up, then lets ``--clients`` threads each send ``--requests`` images
of one size, one at a time. It records throughput, p50/p95/p99 latency, requests lost
(no 200 answer) and answered wrongly (a label map other than the single-image prediction
of the same checkpoint in this process), and the mean batch the server formed. Bounded:
at most ``clients × requests`` requests per setting, none started after ``--time-limit``.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from isnet.apps.serve.client import Server, running_server
from isnet.data.image import read_image, to_tensor
from isnet.inference.engine import predict_labels
from isnet.model.config import BackboneConfig, ISNetHeadConfig, ModelConfig
from isnet.model.segmentor import build_model
from isnet.weights.checkpoint import load_model, save_model

SMALL = ModelConfig(
    num_classes=8,
    backbone=BackboneConfig("resnet", 18, base_channels=16, stem_channels=16),
    head=ISNetHeadConfig(channels=32, transform_channels=16),
)
WARMUP_REQUESTS = 8


@dataclass
class LoadResult:
    max_batch: int
    planned: int
    latencies_s: list[float]
    lost: int
    wrong: int
    wall_s: float
    mean_batch: float

    def row(self) -> str:
        answered = len(self.latencies_s)
        p50, p95, p99 = (1000 * np.percentile(self.latencies_s, q) for q in (50, 95, 99)) if answered else (np.nan,) * 3
        not_sent = self.planned - answered - self.lost
        return (f"| {self.max_batch} | {self.planned} | {answered} | {self.lost} | {self.wrong} | {not_sent} "
                f"| {answered / self.wall_s:.1f} | {p50:.0f} | {p95:.0f} | {p99:.0f} | {self.mean_batch:.2f} |")


HEADER = ("| max batch | requests | answered 200 | lost | wrong | not sent (time limit) | throughput (req/s) "
          "| p50 (ms) | p95 (ms) | p99 (ms) | mean batch |\n|" + "---|" * 11)


def make_inputs(folder: Path, count: int, size: tuple[int, int]) -> list[tuple[bytes, np.ndarray]]:
    """``count`` PNG images of one size, with the labels the checkpoint gives each alone."""
    model = load_model(folder / "small.safetensors").eval()
    inputs = []
    for seed in range(count):
        path = folder / f"image{seed}.png"
        Image.fromarray(np.random.RandomState(seed).randint(0, 255, (*size, 3), np.uint8)).save(path)
        labels = predict_labels(model, to_tensor(read_image(path)).unsqueeze(0))[0].numpy().astype(np.uint8)
        inputs.append((path.read_bytes(), labels))
    return inputs


def run_load(server: Server, inputs, *, clients: int, requests: int, time_limit_s: float) -> tuple[list[float], int, int, float]:
    """(latencies of the 200 answers, lost, wrong, wall seconds) of ``clients`` × ``requests``."""
    latencies: list[float] = []
    counts = {"lost": 0, "wrong": 0}
    lock = threading.Lock()
    stop_at = time.monotonic() + time_limit_s

    def client(index: int) -> None:
        for step in range(requests):
            if time.monotonic() > stop_at:
                return
            data, expected = inputs[(index + step) % len(inputs)]
            start = time.perf_counter()
            try:
                status, _, body = server.post(data, f"image{index}.png", timeout=60)
            except OSError:
                status, body = None, b""
            elapsed = time.perf_counter() - start
            with lock:
                if status != 200:
                    counts["lost"] += 1
                    continue
                latencies.append(elapsed)
                if not np.array_equal(np.asarray(Image.open(io.BytesIO(body))), expected):
                    counts["wrong"] += 1

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    return latencies, counts["lost"], counts["wrong"], time.perf_counter() - start


def measure(checkpoint: Path, inputs, max_batch: int, args: argparse.Namespace, log: Path) -> LoadResult:
    options = ("--max-batch", str(max_batch), "--max-wait-ms", str(args.max_wait_ms), "--max-queue", str(4 * args.clients))
    with running_server(checkpoint, *options, log=log) as server:
        for data, _ in inputs[:WARMUP_REQUESTS]:
            server.post(data)
        before = server.health()
        latencies, lost, wrong, wall_s = run_load(
            server, inputs, clients=args.clients, requests=args.requests, time_limit_s=args.time_limit
        )
        after = server.health()
    batches = after["batches"] - before["batches"]
    mean_batch = (after["images"] - before["images"]) / batches if batches else 0.0
    return LoadResult(max_batch, args.clients * args.requests, latencies, lost, wrong, wall_s, mean_batch)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    import platform

    return platform.processor() or "unknown CPU"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serve_load", description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=50, help="per client")
    parser.add_argument("--size", type=int, nargs=2, default=(128, 128), metavar=("H", "W"))
    parser.add_argument("--max-batch", type=int, nargs="+", default=(1, 8), help="one run per value")
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--time-limit", type=float, default=300, help="seconds per setting; no request starts later")
    parser.add_argument("--images", type=int, default=8, help="distinct images the clients cycle through")
    args = parser.parse_args(argv)
    import torch

    with tempfile.TemporaryDirectory(prefix="isnet-serve-load-") as folder:
        folder = Path(folder)
        torch.manual_seed(0)
        checkpoint = save_model(build_model(SMALL), folder / "small.safetensors")
        inputs = make_inputs(folder, args.images, tuple(args.size))
        results = [measure(checkpoint, inputs, max_batch, args, folder / f"server{max_batch}.log")
                   for max_batch in args.max_batch]
    print(f"isnet serve load test: {args.clients} clients × {args.requests} requests, {args.size[0]}×{args.size[1]} "
          f"images, small ISNet (ResNet-18 width 16), fp32, batching window {args.max_wait_ms:g} ms, loopback")
    print(f"CPU: {cpu_model()}, {torch.get_num_threads()} torch threads\n")
    print(HEADER)
    for result in results:
        print(result.row())
    return 0 if all(result.lost == 0 and result.wrong == 0 for result in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
