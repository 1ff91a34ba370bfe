"""``isnet predict clip.mp4`` (and a folder of frames): a lossless label video and an overlay video."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from cli_helpers import first_line, isnet
from scene_helpers import responsive_checkpoint, scene

from isnet.data.image import to_tensor
from isnet.inference.engine import predict
from isnet.weights.checkpoint import load_model

FRAMES, HEIGHT, WIDTH = 7, 48, 64


def decoded(path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


def write_clip(path, codec: str = "FFV1") -> list[np.ndarray]:
    """A short clip of a scene sliding right, and its frames as decoded (RGB)."""
    world = scene(HEIGHT, WIDTH + 4 * FRAMES, seed=5)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), 10, (WIDTH, HEIGHT))
    for k in range(FRAMES):
        writer.write(cv2.cvtColor(np.ascontiguousarray(world[:, 4 * k:4 * k + WIDTH]), cv2.COLOR_RGB2BGR))
    writer.release()
    return [cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) for frame in decoded(path)]


def frame_scores(model, frames: list[np.ndarray], batch: int) -> torch.Tensor:
    """Scores of the frames predicted ``batch`` at a time, as the command batches them (other batch
    sizes differ by ~1e-4, which can flip a near-tied pixel), normalised as the model's record says."""
    mean, std = model.dataset.mean, model.dataset.std
    return torch.cat([predict(model, torch.stack([to_tensor(frame, mean, std) for frame in frames[start:start + batch]]))
                      for start in range(0, len(frames), batch)])


def test_a_clip_becomes_a_label_video_equal_to_per_frame_predictions(tmp_path):
    # a record of its own normalisation: the frames are normalised as the model's images are
    checkpoint = responsive_checkpoint(tmp_path / "tiny.safetensors", mean_std=((90.0, 100.0, 110.0), (40.0, 45.0, 50.0)))
    frames = write_clip(tmp_path / "clip.mp4", codec="mp4v")
    assert len(frames) == FRAMES
    result = isnet("predict", tmp_path / "clip.mp4", "--checkpoint", checkpoint, "--batch-size", 3,
                   "--precision", "fp32", "--output", tmp_path / "out")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"({FRAMES} frames)" in result.stdout and "clip.mp4" in result.stderr  # the progress bar names it
    labels = decoded(tmp_path / "out" / "clip_labels.mkv")
    overlays = decoded(tmp_path / "out" / "clip_overlay.mp4")
    assert len(labels) == len(overlays) == FRAMES and overlays[0].shape == (HEIGHT, WIDTH, 3)
    expected = frame_scores(load_model(checkpoint).eval(), frames, 3).argmax(1).numpy()
    assert all(np.array_equal(label[..., 0], truth) for label, truth in zip(labels, expected))  # FFV1: lossless
    assert len(np.unique(expected)) > 1
    assert not list((tmp_path / "out").glob(".*partial*"))


def test_temporal_smoothing_is_a_moving_average_of_probabilities(tmp_path):
    checkpoint = responsive_checkpoint(tmp_path / "tiny.safetensors")
    frames = write_clip(tmp_path / "clip.mkv")
    result = isnet("predict", tmp_path / "clip.mkv", "--checkpoint", checkpoint, "--smooth", 0.5,
                   "--batch-size", 4, "--precision", "fp32", "--output", tmp_path / "out")
    assert result.returncode == 0, result.stderr[-2000:]
    probabilities = frame_scores(load_model(checkpoint).eval(), frames, 4).softmax(1)
    average, expected = None, []
    for frame in probabilities:
        average = frame if average is None else 0.5 * frame + 0.5 * average
        expected.append(average.argmax(0).numpy())
    labels = [frame[..., 0] for frame in decoded(tmp_path / "out" / "clip_labels.mkv")]
    assert all(np.array_equal(label, truth) for label, truth in zip(labels, expected))
    unsmoothed = probabilities.argmax(1).numpy()
    assert any(not np.array_equal(a, b) for a, b in zip(expected, unsmoothed))  # the smoothing did something


def test_a_folder_of_frames_is_one_video_with_frames(tmp_path):
    checkpoint = responsive_checkpoint(tmp_path / "tiny.safetensors")
    frames = [scene(HEIGHT, WIDTH, seed=k) for k in range(4)]
    (tmp_path / "walk").mkdir()
    for k, frame in enumerate(frames):
        Image.fromarray(frame).save(tmp_path / "walk" / f"frame_{k:03d}.png")
    result = isnet("predict", tmp_path / "walk", "--frames", "--fps", 5, "--checkpoint", checkpoint,
                   "--precision", "fp32", "--output", tmp_path / "out")
    assert result.returncode == 0, result.stderr[-2000:]
    labels = decoded(tmp_path / "out" / "walk_labels.mkv")
    expected = frame_scores(load_model(checkpoint).eval(), frames, 1).argmax(1).numpy()
    assert len(labels) == 4 and all(np.array_equal(a[..., 0], b) for a, b in zip(labels, expected))
    assert cv2.VideoCapture(str(tmp_path / "out" / "walk_overlay.mp4")).get(cv2.CAP_PROP_FPS) == 5


@pytest.mark.slow  # over 15 s on the shared 2-core machine (load 10-15)
def test_a_broken_video_is_named_and_smoothing_out_of_range_is_a_usage_error(tmp_path):
    checkpoint = responsive_checkpoint(tmp_path / "tiny.safetensors")
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    result = isnet("predict", tmp_path / "broken.mp4", "--checkpoint", checkpoint, "--output", tmp_path / "out")
    assert result.returncode == 1 and f"{tmp_path / 'broken.mp4'}: " in result.stderr
    assert "Traceback" not in result.stderr
    result = isnet("predict", tmp_path / "broken.mp4", "--checkpoint", checkpoint, "--smooth", 1.5)
    assert first_line(result, "predict", 2) == "--smooth 1.5: α must be in (0, 1]; 1 is no smoothing"
