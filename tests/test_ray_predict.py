"""``isnet predict --engine ray``: Ray Data on a local Ray with 2 workers; outputs byte-equal to one process,
a killed worker's images redone, nothing duplicated."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("ray.data", reason="--engine ray needs the ray extra: pip install -e '.[ray]'")

from cli_helpers import environment, first_line, isnet, isnet_command  # noqa: E402
from scene_helpers import responsive_checkpoint, scene  # noqa: E402

IMAGES = 12


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    """12 images, a checkpoint, and the outputs of one-process ``isnet predict`` to compare with."""
    root = tmp_path_factory.mktemp("ray")
    checkpoint = responsive_checkpoint(root / "tiny.safetensors")
    (root / "photos").mkdir()
    for k in range(IMAGES):
        Image.fromarray(scene(192, 256, seed=20 + k)).save(root / "photos" / f"photo_{k:02d}.png")
    result = isnet("predict", root / "photos", "--checkpoint", checkpoint, "--precision", "fp32",
                   "--output", root / "one_process")
    assert result.returncode == 0, result.stderr[-2000:]
    return root, checkpoint


def ray_workers() -> list[int]:
    """Process ids of the Ray Data actors running our predictor."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "MapWorker" in command and "RayPredictor" in command:
            found.append(int(entry.name))
    return found


def outputs(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_ray_outputs_equal_one_process_and_a_killed_worker_is_redone(collection):
    root, checkpoint = collection
    output = root / "ray_out"
    command = isnet_command("predict", root / "photos", "--checkpoint", checkpoint, "--precision", "fp32",
                            "--engine", "ray", "--ray-workers", 2, "--output", output)
    log = open(root / "ray.log", "w+")
    process = subprocess.Popen(command, env=environment(), stdout=log, stderr=subprocess.STDOUT, text=True)
    killed = None
    deadline = time.monotonic() + 240
    try:
        while killed is None:  # once a first image is written, kill one of the two workers mid-run
            assert process.poll() is None, f"finished before a worker could be killed:\n{open(root / 'ray.log').read()}"
            assert time.monotonic() < deadline, open(root / "ray.log").read()[-3000:]
            workers = ray_workers()
            if len(workers) == 2 and output.is_dir() and any(output.glob("*_labels.png")):
                killed = workers[0]
                os.kill(killed, signal.SIGKILL)
            time.sleep(0.05)
        assert process.wait(300) == 0, open(root / "ray.log").read()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
    text = (root / "ray.log").read_text()
    assert killed not in ray_workers()
    assert len(list((root / "one_process").glob("*_labels.png"))) == IMAGES
    assert outputs(output) == outputs(root / "one_process")  # every file, byte for byte; no partial file left
    # each image once in the result, none failed; the killed worker's batch ran again (Ray says so), and an image
    # it had finished before it died counts as already done, not twice
    line = next(line for line in text.splitlines() if line.startswith("ray: "))
    match = re.fullmatch(r"ray: (\d+) image\(s\), each once: (\d+) written by \d+ worker process\(es\), "
                         r"(\d+) already done, 0 failed", line)
    assert match and int(match[1]) == IMAGES and int(match[2]) + int(match[3]) == IMAGES, line
    assert "will be retried" in text, text[-3000:]


def test_ray_goes_on_where_it_stopped_and_refuses_what_it_cannot_run(collection):
    root, checkpoint = collection
    output = root / "resumed"
    output.mkdir()
    for name, data in outputs(root / "one_process").items():
        if name < "photo_06":
            (output / name).write_bytes(data)
    result = isnet("predict", root / "photos", "--checkpoint", checkpoint, "--precision", "fp32",
                   "--engine", "ray", "--output", output, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"6 of {IMAGES} image(s) already done" in result.stdout
    assert "ray: 6 image(s), each once: 6 written" in result.stdout
    assert outputs(output) == outputs(root / "one_process")
    result = isnet("predict", root / "photos", "--checkpoint", checkpoint, "--engine", "ray", "--runtime", "onnx")
    assert first_line(result, "predict", 2).startswith("--engine ray runs our PyTorch model in fp32 or bf16")
