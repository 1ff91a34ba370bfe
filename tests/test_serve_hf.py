"""``isnet serve`` answers the Hugging Face Inference image-segmentation shape on ``POST /``, over real HTTP."""

from __future__ import annotations

import base64
import io
import json
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette", reason="isnet serve needs the serve extra: pip install -e '.[serve]'")

from scene_helpers import responsive_checkpoint, scene  # noqa: E402

from isnet.apps.serve.client import running_server  # noqa: E402
from isnet.data.image import read_image, to_tensor  # noqa: E402
from isnet.inference.engine import predict  # noqa: E402
from isnet.weights.checkpoint import load_model  # noqa: E402


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve_hf")
    checkpoint = responsive_checkpoint(folder / "tiny.safetensors")
    with running_server(checkpoint, "--precision", "fp32", "--max-pixels", str(300 * 300),
                        log=folder / "server.log") as server:
        yield server, checkpoint, folder


def post(url: str, body: bytes, content_type: str) -> tuple[int, object]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def expected_segments(checkpoint, path):
    scores = predict(load_model(checkpoint).eval(), to_tensor(read_image(path))[None])[0]
    return scores.argmax(0).numpy(), scores.softmax(0).amax(0).numpy()


def check_answer(answer, labels, confidence, classes):
    present = np.unique(labels)
    assert [entry["label"] for entry in answer] == [classes[k] for k in present] and len(present) > 1
    for entry, index in zip(answer, present):
        assert set(entry) == {"label", "score", "mask"}
        mask = Image.open(io.BytesIO(base64.b64decode(entry["mask"])))
        assert mask.mode == "L" and mask.size == (labels.shape[1], labels.shape[0])
        assert np.array_equal(np.asarray(mask), np.where(labels == index, 255, 0))
        assert entry["score"] == pytest.approx(float(confidence[labels == index].mean()), abs=1e-5)


def test_base64_json_and_raw_bytes_get_label_score_mask(served, tmp_path):
    server, checkpoint, _ = served
    path = tmp_path / "street.png"
    Image.fromarray(scene(60, 80, seed=4)).save(path)
    labels, confidence = expected_segments(checkpoint, path)
    classes = json.loads(urllib.request.urlopen(server.url + "/healthz", timeout=10).read())["classes"]
    body = json.dumps({"inputs": base64.b64encode(path.read_bytes()).decode(), "parameters": {"threshold": 0.9}})
    for payload, content_type in ((body.encode(), "application/json"), (path.read_bytes(), "image/png"),
                                  (path.read_bytes(), "application/octet-stream")):
        status, answer = post(server.url + "/", payload, content_type)
        assert status == 200, answer
        check_answer(answer, labels, confidence, classes)


def test_the_huggingface_hub_client_works_unchanged(served, tmp_path):
    hub = pytest.importorskip("huggingface_hub", reason="the client check needs huggingface_hub (the hub extra)")
    server, checkpoint, _ = served
    path = tmp_path / "street.jpg"
    Image.fromarray(scene(60, 80, seed=6)).save(path, quality=95)
    labels, _ = expected_segments(checkpoint, path)
    segments = hub.InferenceClient(model=server.url + "/").image_segmentation(str(path))
    present = np.unique(labels)
    assert len(segments) == len(present) > 1
    for segment, index in zip(segments, present):
        assert np.array_equal(np.asarray(segment.mask) > 0, labels == index) and 0 < segment.score <= 1


def test_bad_requests_get_4xx_with_the_error_in_words(served):
    server, _, _ = served
    status, answer = post(server.url + "/", b'{"inputs": 3}', "application/json")
    assert status == 400 and "base64" in answer["error"]
    status, answer = post(server.url + "/", b'{"inputs": "not base64!"}', "application/json")
    assert status == 400 and '"inputs" is not base64' in answer["error"]
    status, answer = post(server.url + "/", b"{not json", "application/json")
    assert status == 400 and "JSON" in answer["error"]
    status, answer = post(server.url + "/", b"plain words", "text/plain")
    assert status == 400 and "inputs: not an image" in answer["error"]
    big = io.BytesIO()
    Image.new("RGB", (400, 400)).save(big, format="PNG")
    status, answer = post(server.url + "/", big.getvalue(), "image/png")
    assert status == 413 and "400×400" in answer["error"]
    with urllib.request.urlopen(server.url + "/", timeout=10) as response:  # GET / is still the page
        assert "<html" in response.read().decode().lower()
