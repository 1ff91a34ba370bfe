"""``isnet serve`` over real HTTP: same labels as ``isnet predict``, limits, errors, batching, queue, SIGTERM."""

from __future__ import annotations

import io
import json
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("starlette", reason="isnet serve needs the serve extra: pip install -e '.[serve]'")
pytest.importorskip("uvicorn", reason="isnet serve needs the serve extra: pip install -e '.[serve]'")

from cli_helpers import without_busy_note  # noqa: E402
from serve_helpers import ENV, module_server, predict_classes, random_image, tiny_checkpoint  # noqa: E402

from isnet.weights.checkpoint import load_model  # noqa: E402
from isnet.data.image import read_image, to_tensor  # noqa: E402
from isnet.inference.engine import predict_labels  # noqa: E402
from isnet.apps.serve.client import running_server  # noqa: E402

MAX_UPLOAD_BYTES = int(0.05 * 2**20)
MAX_PIXELS = 200 * 200


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("serve") / "tiny.safetensors")


@pytest.fixture(scope="module")
def server(checkpoint, tmp_path_factory):
    """One server for the tests that do not stop it; a long batching window makes batching testable."""
    yield from module_server(tmp_path_factory, checkpoint, "--max-upload-mb", "0.05", "--max-pixels", str(MAX_PIXELS),
                             "--max-wait-ms", "300")


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def decompression_bomb() -> bytes:
    """A 200-byte PNG whose header declares 100 000 × 100 000 pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")


@pytest.mark.slow  # over 15 s on the shared 2-core machine (load 10-15)
def test_labels_and_overlay_equal_isnet_predict(server, checkpoint, tmp_path):
    image = random_image(tmp_path / "street.png", 48, 64)
    output = tmp_path / "predicted"
    result = subprocess.run(
        [sys.executable, "-m", "isnet.cli", "predict", str(image), "--checkpoint", str(checkpoint), "--output", str(output)],
        env=ENV, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr

    status, headers, body = server.post(image.read_bytes(), "street.png")
    assert status == 200 and headers["content-type"] == "image/png"
    assert body == (output / "street_labels.png").read_bytes()
    served = Image.open(io.BytesIO(body))
    assert served.mode == "P" and served.getpalette()[:12] == Image.open(output / "street_labels.png").getpalette()[:12]

    status, headers, body = server.post(image.read_bytes(), "street.png", query="?format=overlay")
    assert status == 200 and headers["content-type"] == "image/png"
    expected = np.asarray(Image.open(output / "street_overlay.png"))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(body))), expected)


def test_json_gives_every_class_with_its_name_and_area(server, checkpoint, tmp_path):
    image = random_image(tmp_path / "a.png", 40, 56, seed=1)
    labels = predict_labels(load_model(checkpoint).eval(), to_tensor(read_image(image)).unsqueeze(0))[0].numpy()
    for query, headers in (("?format=json", {}), ("", {"Accept": "application/json"})):
        status, response_headers, body = server.post(image.read_bytes(), "a.png", query=query, headers=headers)
        assert status == 200 and response_headers["content-type"] == "application/json"
        result = json.loads(body)
        assert (result["height"], result["width"]) == (40, 56)
        assert [entry["name"] for entry in result["classes"]] == predict_classes(checkpoint)
        assert [entry["pixels"] for entry in result["classes"]] == np.bincount(labels.ravel(), minlength=4).tolist()
        assert sum(entry["fraction"] for entry in result["classes"]) == pytest.approx(1.0)
        assert "overlay" not in result
    status, _, body = server.post(image.read_bytes(), "a.png", query="?format=json&overlay=1")
    overlay = json.loads(body)["overlay"]
    assert status == 200 and overlay.startswith("data:image/png;base64,")


def test_bad_requests_get_4xx_with_a_message(server):
    status, _, body = server.post(b"these bytes are no image", "notes.txt")
    assert status == 400 and "notes.txt: not an image" in json.loads(body)["error"]
    status, _, body = server.post(png(Image.new("RGB", (8, 8))), field="picture")
    assert status == 400 and "'image'" in json.loads(body)["error"]
    status, _, body = server.post(png(Image.new("RGB", (8, 8))), query="?format=jpeg")
    assert status == 400 and "labels, overlay, json" in json.loads(body)["error"]
    status, _, body = server.post(png(Image.new("RGB", (8, 8))), headers={"Accept": "text/html"})
    assert status == 406 and "application/json" in json.loads(body)["error"]


def test_oversized_uploads_and_images_get_413(server):
    status, _, body = server.post(np.random.RandomState(0).bytes(2 * MAX_UPLOAD_BYTES), "huge.png")
    assert status == 413 and "limit" in json.loads(body)["error"]
    status, _, body = server.post(png(Image.new("RGB", (250, 250))), "wide.png")  # a small file of many pixels
    assert status == 413 and "wide.png: 250×250 = 62,500 pixels is over" in json.loads(body)["error"]
    status, _, body = server.post(decompression_bomb(), "bomb.png")
    assert status == 413 and "bomb.png" in json.loads(body)["error"]


def test_web_page_and_health(server):
    import urllib.request

    with urllib.request.urlopen(server.url + "/", timeout=10) as response:
        page = response.read().decode()
        policy = response.headers["Content-Security-Policy"]
    assert 'type="file"' in page and "predict?format=json" in page
    assert "http://" not in page and "https://" not in page  # nothing from elsewhere: works offline
    assert "default-src 'none'" in policy
    health = server.health()
    assert health["status"] == "ok" and health["max_queue"] >= 1


def test_concurrent_requests_of_one_size_share_a_model_call(server, checkpoint, tmp_path):
    """Six clients at once (one batching window): fewer model calls than images, each answer its own."""
    paths = [random_image(tmp_path / f"{k}.png", 32, 48, seed=10 + k) for k in range(6)]
    model = load_model(checkpoint).eval()
    expected = [predict_labels(model, to_tensor(read_image(path)).unsqueeze(0))[0].numpy() for path in paths]
    before = server.health()
    with ThreadPoolExecutor(len(paths)) as pool:
        answers = list(pool.map(lambda path: server.post(path.read_bytes(), path.name), paths))
    after = server.health()
    for (status, _, body), labels in zip(answers, expected):
        assert status == 200 and np.array_equal(np.asarray(Image.open(io.BytesIO(body))), labels)
    images, batches = after["images"] - before["images"], after["batches"] - before["batches"]
    assert images == len(paths) and batches < images


def test_a_full_queue_answers_503_with_retry_after(checkpoint, tmp_path):
    image = png(Image.fromarray(np.random.RandomState(0).randint(0, 255, (384, 384, 3), np.uint8)))
    options = ("--max-queue", "1", "--max-batch", "1", "--max-wait-ms", "0")
    with running_server(checkpoint, *options, log=tmp_path / "server.log") as server:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: server.post(image), range(8)))
    statuses = [status for status, _, _ in answers]
    assert 503 in statuses and 200 in statuses and set(statuses) == {200, 503}
    refused = next(answer for answer in answers if answer[0] == 503)
    assert refused[1]["retry-after"] == "1" and "--max-queue 1" in json.loads(refused[2])["error"]


@pytest.mark.slow  # over 15 s on the shared 2-core machine (load 10-15)
def test_sigterm_lets_the_request_in_flight_finish(checkpoint, tmp_path):
    path = random_image(tmp_path / "big.png", 1024, 1024, seed=3)  # long enough to be in flight when SIGTERM comes
    expected = predict_labels(load_model(checkpoint).eval(), to_tensor(read_image(path)).unsqueeze(0))[0].numpy()
    with running_server(checkpoint, log=tmp_path / "server.log") as server:
        answer = {}
        client = threading.Thread(target=lambda: answer.update(status_and_body=server.post(path.read_bytes())))
        client.start()
        deadline = time.monotonic() + 60
        while (health := server.health())["running"] + health["queued"] == 0:  # wait until the model has it
            assert time.monotonic() < deadline and client.is_alive(), "the request never reached the model"
            time.sleep(0.01)
        server.process.send_signal(signal.SIGTERM)
        client.join(120)
        # uvicorn shuts down gracefully, then re-raises SIGTERM so a supervisor sees how the process ended.
        assert server.process.wait(60) in (0, -signal.SIGTERM)
    status, _, body = answer["status_and_body"]
    assert status == 200 and np.array_equal(np.asarray(Image.open(io.BytesIO(body))), expected)
    log = (tmp_path / "server.log").read_text()
    assert log.index("Shutting down") < log.index('"POST /predict HTTP/1.1" 200') < log.index("Finished server process")


def test_serve_refuses_what_is_not_our_checkpoint(tmp_path, capsys):
    from isnet.cli import main

    released = tmp_path / "released.pth"
    torch.save({"state_dict": {}}, released)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x08" + b"\0" * 7 + b"not json")
    for path, status, message in (
        (released, 2, f"--checkpoint {released}: expected one of our .safetensors checkpoints"),
        (broken, 1, f"{broken}: not a safetensors model file"),
    ):
        assert main(["serve", "--checkpoint", str(path)]) == status
        assert without_busy_note(capsys.readouterr().err).startswith(f"isnet serve: error: {message}")
