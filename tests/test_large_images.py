"""``isnet predict --tile``: very large images streamed window by window, equal to sliding-window inference."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from cli_helpers import first_line, isnet
from scene_helpers import responsive_checkpoint, responsive_model, scene

from isnet.data.image import read_image, to_tensor
from isnet.data.large_image import open_rows
from isnet.inference.engine import InferenceConfig, predict, sliding_windows
from isnet.inference.streaming import SpillError, ramp, stream_slide
from isnet.weights.checkpoint import load_model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return responsive_checkpoint(tmp_path_factory.mktemp("large") / "tiny.safetensors")


@pytest.mark.slow  # over 15 s on the shared 2-core machine (load 10-15)
def test_tiled_predict_of_a_4000x3000_image_equals_whole_image_sliding_windows(checkpoint, tmp_path):
    image = tmp_path / "aerial.png"
    Image.fromarray(scene(3000, 4000)).save(image)
    result = isnet("predict", image, "--checkpoint", checkpoint, "--tile", 512, 512, "--overlap", 64,
                   "--confidence", "--precision", "fp32", "--output", tmp_path / "out", timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    labels = Image.open(tmp_path / "out" / "aerial_labels.png")
    assert labels.mode == "P" and labels.size == (4000, 3000)

    model = load_model(checkpoint).eval()
    config = InferenceConfig(mode="slide", crop=(512, 512), stride=(448, 448))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the command ran (OMP_NUM_THREADS=1): the same kernels, the same bits
    try:
        scores = predict(model, to_tensor(read_image(image))[None], config)[0]
    finally:
        torch.set_num_threads(threads)
    expected = scores.argmax(0).numpy()
    assert np.array_equal(np.asarray(labels), expected)
    assert len(np.unique(expected)) > 1  # a model whose labels follow the image
    confidence = np.asarray(Image.open(tmp_path / "out" / "aerial_confidence.png"))
    assert confidence.dtype == np.uint16 and confidence.shape == (3000, 4000)
    expected_confidence = (scores.softmax(0).amax(0) * 65535).round().numpy()
    assert np.abs(confidence.astype(np.int64) - expected_confidence).max() <= 1
    overlay = Image.open(tmp_path / "out" / "aerial_overlay.png")
    assert overlay.size[0] > overlay.size[1]  # image | overlay side by side, drawn scaled down
    assert not list((tmp_path / "out").glob(".*partial*"))


def test_streaming_holds_a_band_of_rows_not_the_image():
    model = responsive_model()
    height, width = 900, 700
    image = torch.randn(3, height, width)
    calls = []

    def read_rows(start: int, stop: int) -> torch.Tensor:
        calls.append((start, stop))
        return image[:, start:stop]

    crop, stride = (128, 128), (96, 96)
    bands = [(top, scores) for top, (scores,) in stream_slide(model, height, width, read_rows, crop=crop, stride=stride)]
    # read top to bottom, each row once
    assert calls[0][0] == 0 and calls[-1][1] == height and all(a[1] == b[0] for a, b in zip(calls, calls[1:]))
    # a batch of 8 windows spans two rows of 7 windows: at most a window's height and one stride are read at once
    assert max(stop - start for start, stop in calls) <= crop[0] + stride[0]
    tops = [top for top, _ in bands]
    assert tops[0] == 0 and all(scores.shape[1:] == (next_top - top, width)
                                for (top, scores), next_top in zip(bands, tops[1:] + [height]))
    assert len(bands) >= 5 and max(scores.shape[1] for _, scores in bands) <= crop[0] + stride[0]
    reference = predict(model, image[None], InferenceConfig(mode="slide", crop=crop, stride=stride))[0]
    assert torch.equal(torch.cat([scores for _, scores in bands], 1), reference)


def test_cosine_blend_weighs_windows_by_a_raised_cosine_ramp():
    model = responsive_model(seed=1)
    image = to_tensor(scene(300, 260, seed=1))
    crop, stride = (128, 128), (80, 80)
    bands = stream_slide(model, 300, 260, lambda a, b: image[:, a:b], crop=crop, stride=stride, blend="cosine",
                         max_batch=1)  # one window a call, as below: batches of other sizes differ by ~1e-4
    streamed = torch.cat([scores for _, (scores,) in bands], 1)
    weight = ramp(crop[0])[:, None] * ramp(crop[1])[None, :]
    total, weights = torch.zeros(4, 300, 260), torch.zeros(300, 260)
    for t, b, l, r in sliding_windows(300, 260, crop, stride):  # the definition, one window at a time
        logits = model.logits(image[None, :, t:b, l:r])
        window = torch.nn.functional.interpolate(logits, size=crop, mode="bilinear", align_corners=False)[0]
        total[:, t:b, l:r] += window * weight
        weights[t:b, l:r] += weight
    assert torch.allclose(streamed, total / weights, rtol=0, atol=1e-6)
    assert ramp(4).tolist() == pytest.approx([np.sin(np.pi * (i + 0.5) / 4) ** 2 for i in range(4)])
    assert ramp(128).min() > 0


def test_images_over_the_pixel_budget_are_streamed_in_the_sliding_windows(checkpoint, tmp_path):
    image = tmp_path / "field.png"
    Image.fromarray(scene(400, 520, seed=2)).save(image)
    result = isnet("predict", image, "--checkpoint", checkpoint, "--tile-above", 100_000, "--crop", 192, 192,
                   "--stride", 128, 128, "--precision", "fp32", "--output", tmp_path / "out")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "field.png: 520×400 is over --tile-above 100,000 pixels; predicting it tile by tile" in result.stderr
    model = load_model(checkpoint).eval()
    expected = predict(model, to_tensor(read_image(image))[None],
                       InferenceConfig(mode="slide", crop=(192, 192), stride=(128, 128)))[0].argmax(0).numpy()
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "field_labels.png")), expected)


@pytest.mark.parametrize("kind", ["tiled tiff", "16-bit grey png", "rgba png"])
def test_streamed_rows_are_the_pixels_read_image_gives(tmp_path, kind):
    import pyvips

    generator = np.random.RandomState(3)
    if kind == "tiled tiff":
        path = tmp_path / "slide.tif"
        pyvips.Image.new_from_array(generator.randint(0, 255, (300, 410, 3), np.uint8)).write_to_file(
            str(path), tile=True, tile_width=64, tile_height=64, compression="deflate")
    elif kind == "16-bit grey png":
        path = tmp_path / "depth.png"
        Image.fromarray(generator.randint(0, 65535, (300, 410), np.uint16)).save(path)
    else:
        path = tmp_path / "cutout.png"
        Image.fromarray(generator.randint(0, 255, (300, 410, 4), np.uint8), "RGBA").save(path)
    reader = open_rows(path, 10**9)
    assert reader.streamed and (reader.height, reader.width) == (300, 410)
    rows = np.concatenate([reader.rows(start, min(start + 70, 300)) for start in range(0, 300, 70)])
    assert np.array_equal(rows, read_image(path))


def test_bad_tile_options_are_usage_errors(checkpoint, tmp_path):
    image = tmp_path / "a.png"
    Image.fromarray(scene(64, 64)).save(image)
    result = isnet("predict", image, "--checkpoint", checkpoint, "--tile", 64, 64, "--overlap", 64)
    assert first_line(result, "predict", 2) == "--overlap 64 must be smaller than the tile (64×64)"
    result = isnet("predict", image, "--checkpoint", checkpoint, "--tile", 64, 64, "--flip")
    assert first_line(result, "predict", 2) == "--tile streams one scale without flip; leave out --scales / --flip"


@pytest.mark.slow  # over 15 s on the shared 2-core machine (load 10-15)
def test_tiles_are_normalised_as_the_models_record_says(tmp_path):
    """A model whose dataset record normalises with its own mean and std: the streamed tiles
    use them, as whole-image prediction does (not ImageNet's)."""
    from isnet.data.info import DatasetInfo, make_palette
    from isnet.weights.checkpoint import save_model

    model = responsive_model(seed=2)
    classes = tuple(f"class {k}" for k in range(model.config.num_classes))
    model.dataset = DatasetInfo(name="bright", classes=classes, palette=make_palette(len(classes)),
                                mean=(30.0, 40.0, 50.0), std=(20.0, 25.0, 30.0))
    checkpoint = save_model(model, tmp_path / "bright.safetensors")
    image = tmp_path / "field.png"
    Image.fromarray(scene(300, 400, seed=2)).save(image)
    outputs = {}
    for name, options in (("tiled", ("--tile", 128, 128, "--overlap", 32)), ("slide", ("--mode", "slide", "--crop", 128, 128, "--stride", 96, 96))):
        result = isnet("predict", image, "--checkpoint", checkpoint, "--precision", "fp32", *options, "--output", tmp_path / name)
        assert result.returncode == 0, result.stderr[-2000:]
        outputs[name] = np.asarray(Image.open(tmp_path / name / "field_labels.png"))
    assert np.array_equal(outputs["tiled"], outputs["slide"])
    ours = to_tensor(read_image(image), model.dataset.mean, model.dataset.std)[None]
    expected = predict(model.eval(), ours, InferenceConfig(mode="slide", crop=(128, 128), stride=(96, 96)))[0].argmax(0)
    assert (outputs["tiled"] == expected.numpy()).mean() > 0.999  # the record's normalisation, not ImageNet's


class _ManyClasses(torch.nn.Module):
    """A K-class model at 1/8 resolution that costs next to nothing, so what the streamer holds is what a profile shows."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, classes, 1)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.nn.functional.avg_pool2d(images, 8))


def _peak_tensor_bytes(run) -> int:
    """The most bytes of torch tensors alive at once while ``run()`` runs (the profiler's allocation records)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as profile:
        run()
    held = peak = 0
    for event in sorted(profile.events(), key=lambda event: event.time_range.start):
        held += event.self_cpu_memory_usage
        peak = max(peak, held)
    return peak


@pytest.mark.slow  # over 15 s on the shared 2-core machine (load 10-15)
def test_the_held_class_scores_do_not_grow_with_the_image_width(tmp_path):
    """A 300-row image 2000 and 8000 wide, K = 128 classes, 64² windows every 48: what the
    streamer holds grows with the width by a few bytes a pixel of a band of rows (the input
    rows as bytes, the reduced labels and confidences), not by K floats a column: the scores
    waiting for the next row of tiles are in the spill folder, not in memory."""
    from isnet.apps.tiled_predict import TileConfig, segment_large_image

    classes = 128
    torch.manual_seed(0)
    model = _ManyClasses(classes).eval()
    names, palette = [f"class {k}" for k in range(classes)], [(k, 255 - k, 2 * k % 256) for k in range(classes)]
    tiles = TileConfig(tile=(64, 64), stride=(48, 48), max_batch=2)
    peaks = {}
    for width in (2000, 8000):
        image = tmp_path / f"strip{width}.png"
        Image.fromarray(scene(300, width, seed=4)).save(image)
        outputs = [tmp_path / f"strip{width}_{kind}.png" for kind in ("labels", "overlay", "confidence")]
        peaks[width] = _peak_tensor_bytes(lambda: segment_large_image(
            model, image, outputs, tiles, names, palette, max_pixels=10**8, confidence=True, progress=False,
            spill_dir=tmp_path))
        assert np.asarray(Image.open(outputs[0])).shape == (300, width) and outputs[2].exists()
    assert not list(tmp_path.glob("isnet-tiles-*"))  # the spill folder went with the run
    per_column = (peaks[8000] - peaks[2000]) / 6000
    windows = sliding_windows(300, 8000, tiles.tile, tiles.stride)
    tops = sorted({(t, b) for t, b, _, _ in windows})
    front = max(bottom - next_top for (_, bottom), (next_top, _) in zip(tops, tops[1:]))  # 20: the last row's overlap
    assert per_column < classes * front * 4 / 4, per_column  # a fraction of the front's K floats (10 kB a column)
    # input rows, 3 bytes a pixel of a window's height and a stride (twice while joined), and the reduced rows
    assert per_column <= 8 * 3 * (tiles.tile[0] + tiles.stride[0]), per_column


def test_the_rows_waiting_for_the_next_row_of_tiles_go_to_the_spill_folder_and_come_back_exact(tmp_path):
    model = responsive_model(seed=3)
    image = torch.randn(3, 400, 900)
    crop, stride = (128, 128), (96, 96)
    seen = []

    def read_rows(start: int, stop: int) -> torch.Tensor:
        seen.append(len(list(tmp_path.glob("isnet-tiles-*/*.bin"))))
        return image[:, start:stop]

    bands = stream_slide(model, 400, 900, read_rows, crop=crop, stride=stride, max_batch=2, spill_dir=tmp_path)
    streamed = torch.cat([scores for _, (scores,) in bands], 1)
    assert max(seen) > 0 and not list(tmp_path.iterdir())  # cells were spilled while it ran, and nothing is left
    killed = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    stale = tmp_path / f"isnet-tiles-{socket.gethostname()}-{killed.stdout.strip()}-x1"  # a killed run's folder
    stale.mkdir()
    (stale / "0-0.bin").write_bytes(b"1" * 100)
    alive = tmp_path / f"isnet-tiles-{socket.gethostname()}-{os.getpid()}-x2"
    alive.mkdir()
    reference = predict(model, image[None], InferenceConfig(mode="slide", crop=crop, stride=stride))[0]
    held = torch.cat([scores for _, (scores,) in stream_slide(model, 400, 900, lambda a, b: image[:, a:b],
                                                               crop=crop, stride=stride, max_batch=2, spill=False)], 1)
    assert torch.equal(streamed, held)  # bit for bit through the files
    again = torch.cat([scores for _, (scores,) in stream_slide(model, 400, 900, lambda a, b: image[:, a:b], crop=crop,
                                                                stride=stride, max_batch=2, spill_dir=tmp_path)], 1)
    assert torch.equal(again, streamed)
    assert not stale.exists() and alive.exists()  # a dead process's spill is removed, a live one's kept
    assert torch.allclose(streamed, reference, rtol=0, atol=1e-4)  # batches of 2, not 8: other kernels


def test_a_spill_folder_that_cannot_be_written_is_named(checkpoint, tmp_path):
    with pytest.raises(SpillError, match=f"cannot keep the pending tile scores in {tmp_path / 'gone'}: "):
        list(stream_slide(responsive_model(), 300, 900, lambda a, b: torch.zeros(3, b - a, 900), crop=(128, 128),
                          stride=(96, 96), max_batch=2, spill_dir=tmp_path / "gone"))
    from isnet.apps.tiled_predict import TileConfig, segment_large_image

    image = tmp_path / "a.png"
    Image.fromarray(scene(300, 900)).save(image)
    outputs = [tmp_path / f"a_{kind}.png" for kind in ("labels", "overlay")]
    reason = segment_large_image(load_model(checkpoint).eval(), image, outputs, TileConfig((128, 128), (96, 96), max_batch=2),
                                 ["a", "b", "c", "d"], [(0, 0, 0)] * 4, max_pixels=10**8, progress=False,
                                 spill_dir=tmp_path / "gone")
    assert reason == (f"{image}: cannot keep the pending tile scores in {tmp_path / 'gone'}: No such file or directory "
                      "(--spill-dir names another folder)")
    assert not any(path.exists() for path in outputs) and not list(tmp_path.glob(".*partial*"))
    result = isnet("predict", image, "--checkpoint", checkpoint, "--tile", 64, 64, "--spill-dir", image)
    assert first_line(result, "predict", 2) == f"--spill-dir {image}: not a folder"


def test_an_image_that_breaks_off_while_it_streams_is_named_and_the_run_goes_on(checkpoint, tmp_path):
    """A PNG cut short after its header: the rows stop coming in the middle of the image. The
    label writer (a thread) is stopped, the file named, the next image done, exit 1."""
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(scene(300, 900, seed=5)).save(folder / "cut.png", compress_level=0)
    data = (folder / "cut.png").read_bytes()
    (folder / "cut.png").write_bytes(data[: len(data) * 6 // 10])
    Image.fromarray(scene(200, 200, seed=6)).save(folder / "whole.png")
    spill = tmp_path / "spill"
    spill.mkdir()
    result = isnet("predict", folder, "--checkpoint", checkpoint, "--tile", 128, 128, "--precision", "fp32",
                   "--spill-dir", spill, "--output", tmp_path / "out", timeout=120)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    reason = f"{folder / 'cut.png'}: unreadable rows "
    named = [line for line in result.stderr.splitlines() if reason in line]
    assert len(named) == 2, result.stderr[-2000:]  # as it was skipped, and in the summary
    assert named[1].strip().startswith(reason) and "libpng read error" in named[1]  # the cause, on its one line
    assert (tmp_path / "out" / "whole_labels.png").exists()
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["whole_labels.png", "whole_overlay.png"]
    assert not list(spill.iterdir())  # the failed image's spilled scores went with it
