"""Labelling a folder on several processes (torchrun): the same files as one process, and a
killed job resumes without redoing what it finished."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from isnet.weights.checkpoint import save_model
from isnet.model.config import BackboneConfig, ISNetHeadConfig, ModelConfig
from isnet.model.segmentor import build_model

SOURCE = Path(__file__).resolve().parents[1] / "src"
ENV = {**os.environ, "PYTHONPATH": str(SOURCE), "OMP_NUM_THREADS": "1"}  # torchrun's per-process default
TINY = ModelConfig(
    num_classes=5,
    backbone=BackboneConfig("resnet", 18, base_channels=8, stem_channels=8),
    head=ISNetHeadConfig(channels=16, transform_channels=8),
)
NUM_IMAGES = 24


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("sharded")
    checkpoint = save_model(build_model(TINY), root / "tiny.safetensors")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for index in range(NUM_IMAGES):
        height, width = (40, 56) if index % 3 else (48, 48)  # two sizes, so batches group by size
        Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(images / f"img{index:02d}.png")
    return checkpoint, images


def predict_command(checkpoint: Path, images: Path, output: Path, processes: int, *extra: str) -> list[str]:
    arguments = ["predict", str(images), "--checkpoint", str(checkpoint), "--output", str(output), "--device", "cpu", *extra]
    if processes == 1:
        return [sys.executable, "-m", "isnet.cli", *arguments]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
            "-m", "isnet.cli", *arguments]


def kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants (torchrun's workers run in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    doomed, queue = [], [pid]
    while queue:
        current = queue.pop()
        doomed.append(current)
        queue += children.get(current, [])
    for victim in doomed:
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            pass


def outputs(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if not path.name.startswith(".")}


def test_two_processes_write_the_same_files_as_one(setup, tmp_path):
    checkpoint, images = setup
    single = subprocess.run(predict_command(checkpoint, images, tmp_path / "one", 1), env=ENV,
                            capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-2000:]
    sharded = subprocess.run(predict_command(checkpoint, images, tmp_path / "two", 2), env=ENV,
                             capture_output=True, text=True, timeout=600)
    assert sharded.returncode == 0, sharded.stderr[-2000:]
    one, two = outputs(tmp_path / "one"), outputs(tmp_path / "two")
    assert len(one) == 2 * NUM_IMAGES and one.keys() == two.keys()
    assert [name for name in one if one[name] != two[name]] == []  # byte for byte


def test_batches_of_equal_sizes_give_the_same_labels(setup, tmp_path):
    checkpoint, images = setup
    for name, extra in (("single", ()), ("batched", ("--batch-size", "4"))):
        result = subprocess.run(predict_command(checkpoint, images, tmp_path / name, 1, *extra), env=ENV,
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-2000:]
    for path in sorted((tmp_path / "single").glob("*_labels.png")):
        single = np.asarray(Image.open(path))
        batched = np.asarray(Image.open(tmp_path / "batched" / path.name))
        assert (single == batched).mean() > 0.999, path.name  # batched kernels may differ in round-off


def test_killed_job_resumes_without_redoing_finished_files(setup, tmp_path):
    checkpoint, images = setup
    output = tmp_path / "out"
    job = subprocess.Popen(predict_command(checkpoint, images, output, 2), env=ENV, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(list(output.glob("*_overlay.png"))) < 6:
        time.sleep(0.2)
    kill_tree(job.pid)
    job.wait()
    time.sleep(1)
    finished = {path.name: path.stat().st_mtime_ns for path in output.glob("*.png")}
    assert 6 <= len(finished) // 2 < NUM_IMAGES, "the job should be killed halfway"

    rerun = subprocess.run(predict_command(checkpoint, images, output, 2), env=ENV, capture_output=True,
                           text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    done_before = {name for name in finished if name.endswith("_overlay.png") and name.replace("_overlay", "_labels") in finished}
    assert f"{len(done_before)} of {NUM_IMAGES} image(s) already done" in rerun.stdout
    assert len(list(output.glob("*_labels.png"))) == len(list(output.glob("*_overlay.png"))) == NUM_IMAGES
    for name in done_before:  # not rewritten
        assert (output / name).stat().st_mtime_ns == finished[name]
    assert not list(output.glob(".*partial*"))


@pytest.mark.parametrize("count", [NUM_IMAGES])
def test_shared_progress_costs_the_same_per_image_for_n_and_2n_images(count, tmp_path, monkeypatch):
    """The progress shared by torchrun's processes counts each image once (O(N) in all), where it
    once looked at every output of every image after each image (O(N²) file-system calls)."""
    from isnet.cli.predict import _shared_progress
    from isnet.utils.distributed import DistributedContext

    calls = []
    real_stat = os.stat
    monkeypatch.setattr(os, "stat", lambda *args, **kwargs: calls.append(args[0]) or real_stat(*args, **kwargs))
    costs = {}
    for images in (count, 2 * count):
        paths = [tmp_path / f"{images}_{index}.png" for index in range(images)]
        on_done = _shared_progress(images, DistributedContext())
        calls.clear()
        for path in paths:
            (tmp_path / f"{path.stem}_labels.png").write_bytes(b"")  # its outputs, as predict writes them
            (tmp_path / f"{path.stem}_overlay.png").write_bytes(b"")
            on_done(path)
        on_done(None)
        costs[images] = len(calls)
    assert costs[2 * count] <= 2 * costs[count], costs  # linear (in fact no call at all), not quadratic


def test_every_process_tears_its_group_down_before_the_interpreter_ends(tmp_path):
    """Left to the interpreter's shutdown, gloo's threads sometimes outlive it and a worker whose
    work is done ends in SIGABRT (once in CI, 2 of 60 bare runs here), which torchrun reports
    as a failed job. The group ``init_distributed`` made must be gone before Python finalises:
    an exit handler registered before it runs after its own and looks."""
    script = tmp_path / "job.py"
    script.write_text(
        "import atexit, torch, torch.distributed as dist\n"
        "from isnet.utils.distributed import all_reduce_sum, barrier, init_distributed\n"
        "atexit.register(lambda: print('still initialised at exit:', dist.is_initialized(), flush=True))\n"
        "context = init_distributed('cpu')\n"
        "print('sum', int(all_reduce_sum(torch.tensor(context.rank + 1)).item()), flush=True)\n"
        "barrier()\n"
    )
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)]
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("sum 3") == 2
    assert result.stdout.count("still initialised at exit: False") == 2, result.stdout
