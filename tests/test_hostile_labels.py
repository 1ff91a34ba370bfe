"""Label maps of more than 256 classes (issue 27, points 3 and 4): a model of 300 classes (random weights)
gives 16-bit label PNGs equal to its argmax in ``predict`` and ``--tile``, exact class indices from
``serve``'s routes, and a stated refusal for videos; videos whose outputs collide, whose frames change
size, or given options that do not apply to them are refused by name.

Run the reliability suite with ``pytest -k "hostile or corrupt or fault or resume or malformed"``.
"""

from __future__ import annotations

import base64
import io
import json
import sys
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from cli_helpers import first_line, isnet  # noqa: E402
from test_hostile_options import tiny_checkpoint  # noqa: E402

from isnet.data.image import read_image, to_tensor  # noqa: E402
from isnet.inference.engine import predict  # noqa: E402
from isnet.weights.checkpoint import load_model  # noqa: E402

K = 300


@pytest.fixture(scope="module")
def many_classes(tmp_path_factory) -> tuple[Path, Path, np.ndarray]:
    """A 300-class checkpoint, an image, and the model's label map of it (some classes above 255)."""
    folder = tmp_path_factory.mktemp("k300")
    checkpoint = tiny_checkpoint(folder, K)
    image = folder / "street.png"
    rng = np.random.default_rng(3)
    Image.fromarray((rng.random((40, 56, 3)) * 255).astype(np.uint8)).save(image)
    scores = predict(load_model(checkpoint).eval(), to_tensor(read_image(image))[None])[0]
    labels = scores.argmax(0).numpy()
    assert labels.max() > 255, "the test needs a class above 255 in the prediction"
    return checkpoint, image, labels


def test_hostile_300_classes_give_16_bit_label_pngs(many_classes, tmp_path):
    checkpoint, image, labels = many_classes
    for extra in ([], ["--tile", "32", "32"]):
        out = tmp_path / ("tiled" if extra else "whole")
        result = isnet("predict", image, "--checkpoint", checkpoint, "--device", "cpu", "--precision", "fp32",
                       "--mode", "slide", "--crop", "32", "32", "--stride", "21", "21", *extra, "--output", out)
        assert result.returncode == 0, result.stderr
        written = Image.open(out / "street_labels.png")
        assert written.mode.startswith("I;16") or written.mode == "I", written.mode
        slide = predict(load_model(checkpoint).eval(), to_tensor(read_image(image))[None],
                        _slide()).argmax(1)[0].numpy()
        assert np.array_equal(np.asarray(written), slide), extra
        assert np.asarray(written).max() > 255
        assert (out / "street_overlay.png").is_file()


def _slide():
    from isnet.inference.engine import InferenceConfig

    return InferenceConfig(mode="slide", crop=(32, 32), stride=(21, 21))


def test_hostile_300_classes_in_serve(many_classes, tmp_path):
    pytest.importorskip("starlette")
    from isnet.apps.serve.client import running_server

    checkpoint, image, labels = many_classes
    with running_server(checkpoint, "--precision", "fp32", log=tmp_path / "server.log") as server:
        status, _, body = server.post(image.read_bytes(), "street.png", query="?format=labels")
        assert status == 200
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(body))), labels)
        status, _, body = server.post(image.read_bytes(), "street.png", query="?format=json")
        areas = {entry["index"]: entry["pixels"] for entry in json.loads(body)["classes"]}
        assert areas == {k: int((labels == k).sum()) for k in range(K)}
        request = urllib.request.Request(server.url + "/", data=image.read_bytes(), method="POST",
                                         headers={"Content-Type": "image/png"})
        with urllib.request.urlopen(request, timeout=120) as response:
            answer = json.loads(response.read())
        present = np.unique(labels)
        assert [entry["label"] for entry in answer] == [f"class {k}" for k in present]
        for entry, k in zip(answer, present):
            mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(entry["mask"]))))
            assert np.array_equal(mask > 0, labels == k)


def write_clip(path: Path, sizes: list[tuple[int, int]]) -> Path:
    """A clip of frames of the given (height, width) sizes, as cv2 writes them frame by frame."""
    writer = None
    rng = np.random.default_rng(0)
    for height, width in sizes:
        if writer is None:
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 10, (width, height))
        writer.write((rng.random((height, width, 3)) * 255).astype(np.uint8))
    writer.release()
    return path


def test_hostile_video_of_300_classes_is_refused_by_name(many_classes, tmp_path):
    checkpoint, _, _ = many_classes
    clip = write_clip(tmp_path / "clip.mkv", [(32, 40)] * 3)
    result = isnet("predict", clip, "--checkpoint", checkpoint, "--device", "cpu", "--precision", "fp32",
                   "--output", tmp_path / "out")
    assert result.returncode == 1
    assert (f"{clip}: the label video holds one byte a pixel, and the model has {K} classes (at most 256)"
            in result.stderr)
    assert not list((tmp_path / "out").glob("clip_*"))


def test_hostile_videos_with_one_stem_are_both_refused(tmp_path):
    checkpoint = tiny_checkpoint(tmp_path, 4)
    first = write_clip(tmp_path / "a" / "walk.mkv", [(32, 40)] * 2)
    second = write_clip(tmp_path / "b" / "walk.avi", [(32, 40)] * 2) if (tmp_path / "b").mkdir() is None else None
    result = isnet("predict", first, second, "--checkpoint", checkpoint, "--device", "cpu", "--precision", "fp32",
                   "--output", tmp_path / "out")
    assert result.returncode == 1
    assert f"{first}: {second} would write the same walk_labels.mkv; rename one" in result.stderr
    assert f"{second}: {first} would write the same walk_labels.mkv; rename one" in result.stderr
    assert not list((tmp_path / "out").glob("walk_*"))


def test_hostile_video_frames_of_another_size_are_refused(tmp_path):
    checkpoint = tiny_checkpoint(tmp_path, 4)
    frames = tmp_path / "frames"
    frames.mkdir()
    for number, (height, width) in enumerate([(32, 40), (32, 40), (48, 40)]):
        Image.fromarray(np.full((height, width, 3), 40 * number, np.uint8)).save(frames / f"f{number}.png")
    result = isnet("predict", frames, "--frames", "--batch-size", "1", "--checkpoint", checkpoint, "--device", "cpu",
                   "--precision", "fp32", "--output", tmp_path / "out")
    assert result.returncode == 1
    assert f"{frames}: frame 3 is 40×48 but the frames before it are 40×32" in result.stderr
    assert not list((tmp_path / "out").glob("frames_*"))


@pytest.mark.parametrize("option", [["--confidence"], ["--tile", "32", "32"]], ids=lambda o: o[0])
def test_hostile_video_options_that_do_not_apply_are_refused(option, tmp_path):
    clip = write_clip(tmp_path / "clip.mkv", [(32, 40)] * 2)
    result = isnet("predict", clip, "--model", "x", "--allow-random", *option, "--output", tmp_path / "out")
    assert first_line(result, "predict", 2) == (
        f"{option[0]} does not apply to videos ({clip}): predict the videos without it, and the images with it "
        "in another run")
    assert not (tmp_path / "out").exists()


def test_label_dtype_and_colours_of_many_classes():
    from isnet.utils.visualize import colourise, label_dtype, label_image

    assert label_dtype(256) == np.uint8 and label_dtype(257) == np.uint16
    palette = [(k % 256, k // 256, 7) for k in range(K)]
    labels = np.array([[0, 255, 299]], np.uint16)
    assert colourise(labels, palette).tolist() == [[[0, 0, 7], [255, 0, 7], [43, 1, 7]]]  # 255 is a class here
    assert np.array_equal(np.asarray(label_image(labels, palette)), labels)
    assert torch.equal(torch.from_numpy(np.asarray(label_image(labels, palette)).astype(np.int64)),
                       torch.tensor([[0, 255, 299]]))
