"""Labelling collections on Ray Data: ``isnet predict photos/ --engine ray`` (``pip install 'isnet[ray]'``).

:class:`RayPredictor` is a callable class for ``ray.data.Dataset.map_batches``: each Ray
actor loads the model once, and each batch of rows ``{"path": [...]}`` is segmented by
:func:`isnet.apps.predict_files.segment_files`, the function one-process ``isnet predict``
runs, so the files written are byte for byte the same. Each row comes back as
``{"path", "status", "reason"}`` with status ``written``, ``done`` (its outputs were there
already) or ``failed``. In Python, on a cluster you already run::

    import ray
    from isnet.apps.ray_predict import ModelSource, RayPredictor
    from isnet.inference.engine import InferenceConfig
from isnet.inference.predictor import Predictor

    ray.init(address="auto")
    rows = ray.data.from_items([{"path": str(p)} for p in sorted(Path("photos").glob("*.jpg"))])
    results = rows.map_batches(RayPredictor, batch_size=4, concurrency=8, num_cpus=1,
                               fn_constructor_kwargs={"source": ModelSource(checkpoint="model.safetensors"),
                                                      "output": "/shared/labels", "config": InferenceConfig()})
    results.take_all()

A worker that dies (killed, out of memory, its node lost) is restarted by Ray and the batch
it held is run again; outputs are written under temporary names and renamed when complete,
so a batch run twice writes the same bytes again, never half a file, and each image is one
row of the result. The output folder must be one that every node writes (a shared file
system), as with ``torchrun``.
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from isnet.apps.predict_files import output_files, segment_files
from isnet.inference.engine import InferenceConfig
from isnet.utils.child_process import child_environment
from isnet.inference.predictor import Predictor


@dataclass(frozen=True)
class ModelSource:
    """Which model each actor loads: one of our checkpoints, or a preset with weights; at what precision."""

    checkpoint: str | None = None
    model: str | None = None
    weights: str | None = None
    precision: str = "fp32"  # or bf16

    def load(self) -> Predictor:
        """The model on this worker (:func:`isnet.deploy.load_predictor`: the file's temperature applied, if any)."""
        from isnet.deploy.predictor import load_predictor

        source = self.checkpoint or self.model
        return load_predictor(source, weights=None if self.checkpoint else self.weights, precision=self.precision,
                              runtime="torch", device="cpu")


class RayPredictor:
    """For ``Dataset.map_batches``: rows ``{"path": [...]}`` → their outputs written, a status per row."""

    def __init__(
        self,
        source: ModelSource,
        output: str,
        config: InferenceConfig,
        classes: Sequence[str] | None = None,
        palette: Sequence[tuple[int, int, int]] | None = None,
        *,
        batch_size: int = 1,
        confidence: bool = False,
        max_pixels: int | None = None,
        resize: tuple = (None, None),
    ) -> None:
        from isnet.apps.predict_files import model_classes

        self.model = source.load()
        default_classes, default_palette = model_classes(self.model)
        self.classes, self.palette = list(classes or default_classes), [tuple(c) for c in (palette or default_palette)]
        self.output, self.config = Path(output), config
        self.batch_size, self.confidence, self.max_pixels, self.resize = batch_size, confidence, max_pixels, resize

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        paths = [Path(str(path)) for path in batch["path"]]
        done = {path for path in paths if all(f.exists() for f in output_files(path, self.output, confidence=self.confidence))}
        failures = dict(segment_files(self.model, [p for p in paths if p not in done], self.output, self.config,
                                      self.classes, self.palette, max_pixels=self.max_pixels, batch_size=self.batch_size,
                                      on_done=lambda path: None, confidence=self.confidence, resize=self.resize))
        status = ["done" if p in done else "failed" if p in failures else "written" for p in paths]
        return {"path": np.array([str(p) for p in paths]), "status": np.array(status),
                "reason": np.array([failures.get(p, "") for p in paths]), "worker": np.array([os.getpid()] * len(paths))}


def predict_with_ray(
    paths: Sequence[Path],
    output: Path,
    config: InferenceConfig,
    source: ModelSource,
    classes: Sequence[str],
    palette: Sequence[tuple[int, int, int]],
    *,
    workers: int = 2,
    address: str | None = None,
    batch_size: int = 1,
    rows_per_call: int = 2,
    confidence: bool = False,
    max_pixels: int | None = None,
    timeout_s: float = 30.0,
    resize: tuple = (None, None),
) -> list[dict]:
    """Segment ``paths`` on Ray Data with ``workers`` actors (a local Ray unless ``address``, joined within
    ``timeout_s``: see :func:`connect_to_cluster`); one result row per path.

    Raises ``RuntimeError`` if a path comes back missing or twice (it never should: Ray Data
    drops the output of a failed attempt when it retries).
    """
    import ray

    from isnet.apps.predict_files import require_writable_folder
    from isnet.utils.progress import progress_bar

    require_writable_folder(output)
    if not ray.is_initialized():
        if address:
            connect_to_cluster(address, timeout_s)
        else:
            ray.init(num_cpus=max(workers, os.cpu_count() or 1), include_dashboard=False, logging_level="warning",
                     log_to_driver=False)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # ours counts images
    rows = ray.data.from_items([{"path": str(path)} for path in paths], override_num_blocks=max(1, len(paths)))
    results = rows.map_batches(
        # Ray Data's actor pool restarts a dead actor and retries the batch it held (max_restarts and
        # max_task_retries default to -1 there: without limit), dropping the failed attempt's output.
        RayPredictor, batch_size=rows_per_call, compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1,
        fn_constructor_kwargs={"source": source, "output": str(output), "config": config, "classes": list(classes),
                               "palette": [list(c) for c in palette], "batch_size": batch_size,
                               "confidence": confidence, "max_pixels": max_pixels, "resize": resize},
    )
    collected = []
    with progress_bar(total=len(paths), desc="predict (ray)", unit="image") as bar:
        for row in results.iter_rows():
            collected.append({key: (value.item() if hasattr(value, "item") else value) for key, value in row.items()})
            bar.update(1)
    seen = [row["path"] for row in collected]
    if sorted(seen) != sorted(str(path) for path in paths):
        raise RuntimeError(f"Ray returned {len(seen)} results for {len(paths)} images "
                           f"({len(set(seen))} distinct): an image was lost or duplicated")
    order = {str(path): index for index, path in enumerate(paths)}
    return sorted(collected, key=lambda row: order[row["path"]])


def connect_to_cluster(address: str, timeout_s: float) -> None:
    """``ray.init(address)``, given up after ``timeout_s`` with a ``ConnectionError`` naming the address.

    Ray retries a cluster that does not answer for ever, inside native code where neither a
    timeout nor a SIGTERM reaches it. So the address is first tried with plain TCP connections
    until the deadline (an address nothing listens on fails here), then joined by a child process
    that is killed at the deadline (something listening that is not a Ray cluster fails there);
    while waiting for either, this process stays in Python, where SIGTERM stops it at once.
    """
    import ray

    deadline = time.monotonic() + timeout_s
    host, port = _host_and_port(address)
    if port is not None:  # "auto" and the like are found by Ray itself
        while True:
            try:
                with socket.create_connection((host, port), timeout=max(0.1, min(5.0, deadline - time.monotonic()))):
                    break
            except OSError as error:
                if time.monotonic() >= deadline:
                    raise ConnectionError(f"--ray-address {address}: no Ray cluster answered within {timeout_s:g} s "
                                          f"({error.strerror or error}); start one there (ray start --head), or "
                                          "leave out --ray-address to start a local one") from None
                time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
    left = max(1, math.ceil(deadline - time.monotonic()))
    probe = ("import signal, sys, ray\nsignal.alarm(int(sys.argv[2]) + 5)  # ends it even if the parent is gone\n"
             "ray.init(address=sys.argv[1], logging_level='error', log_to_driver=False)\nray.shutdown()\n")
    try:
        joined = subprocess.run([sys.executable, "-c", probe, address, str(left)], capture_output=True, text=True,
                                timeout=left, env=child_environment())
    except subprocess.TimeoutExpired:
        raise ConnectionError(f"--ray-address {address}: something listens there, but no Ray cluster answered within "
                              f"{timeout_s:g} s (--ray-timeout)") from None
    if joined.returncode != 0:
        lines = [line for line in joined.stderr.splitlines() if line.strip()]
        raise ConnectionError(f"--ray-address {address}: Ray could not join it: {lines[-1] if lines else joined.returncode}")
    ray.init(address=address, logging_level="warning", log_to_driver=False)


def _host_and_port(address: str) -> tuple[str, int | None]:
    """``ray://10.0.0.5:10001`` or ``10.0.0.5:6379`` → (host, port); (address, None) when it names no port."""
    host, sep, port = address.split("://", 1)[-1].rstrip("/").rpartition(":")
    if not sep or not port.isdigit():
        return address, None
    return host.strip("[]"), int(port)


def summarise(results: Sequence[dict]) -> int:
    """Print what each image came to (failures with their reason); the exit status."""
    counts = {status: sum(row["status"] == status for row in results) for status in ("written", "done", "failed")}
    workers = len({row["worker"] for row in results if row["status"] == "written"})
    print(f"ray: {len(results)} image(s), each once: {counts['written']} written by {workers} worker process(es), "
          f"{counts['done']} already done, {counts['failed']} failed")
    for row in results:
        if row["status"] == "failed":
            print(f"  {row['reason']}", file=sys.stderr)
    return 1 if counts["failed"] else 0
