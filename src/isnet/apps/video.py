"""Segmenting videos (and folders of frames): ``isnet predict clip.mp4``.

Frames are read with OpenCV (or, for a folder of frames, as ``isnet predict`` reads images,
in name order), predicted ``batch_size`` at a time, and written to two videos:

- ``<stem>_labels.mkv``: the class index of each pixel as a grey level, in FFV1, a lossless
  codec, so decoding a frame gives back exactly the labels (read it with
  ``cv2.VideoCapture`` and take one channel);
- ``<stem>_overlay.mp4``: the frame blended with the labels in the model's colours (MPEG-4
  Part 2, ``mp4v``, which every OpenCV build writes; lossy, for looking at).

Temporal smoothing (``smooth`` = α < 1) keeps an exponential moving average of the softmax
probabilities, ``p̄_t = α·p_t + (1 − α)·p̄_{t−1}``, and labels each frame by the argmax of
``p̄_t``. It averages probabilities rather than labels, so a pixel flips class only when the
evidence has moved, not on one frame's near tie; it is causal and holds one frame of K
probabilities, so it streams. It does not follow motion (no optical flow): a moving object's
edge lags by about ``(1 − α) / α`` frames, so keep α high (0.5–0.8) for fast scenes.
Both files are written under temporary names and renamed when complete.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from isnet.apps.predict_files import model_inputs, model_normalisation, predict_on_model_device
from isnet.data.image import DataFileError, find_images, read_image, require_regular_file
from isnet.data.info import Size
from isnet.data.transforms import evaluation_transforms
from isnet.inference.engine import InferenceConfig
from isnet.inference.predictor import Predictor, as_predictor
from isnet.inference.temperature import probabilities
from isnet.utils.atomic_files import PendingFiles
from isnet.utils.errors import describe_os_error
from isnet.utils.progress import progress_bar
from isnet.utils.visualize import PALETTE_CLASSES, overlay

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
LABELS_CODEC, OVERLAY_CODEC = "FFV1", "mp4v"


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES and not path.is_dir()


def video_outputs(source: Path, output: Path) -> tuple[Path, Path]:
    """Where the label video and the overlay video of ``source`` (a video or a folder of frames) go."""
    stem = source.stem if is_video(source) else source.name
    return output / f"{stem}_labels.mkv", output / f"{stem}_overlay.mp4"


def colliding_videos(sources: Sequence[Path], output: Path) -> dict[Path, str]:
    """Videos (or folders of frames) whose outputs would collide (``a.mp4`` and ``a.avi``), with the reason:
    all of them fail, as colliding images do, rather than one being taken for the other's finished work."""
    by_output: dict[Path, list[Path]] = {}
    for source in dict.fromkeys(sources):
        by_output.setdefault(video_outputs(source, output)[0], []).append(source)
    return {
        source: f"{source}: {', '.join(str(o) for o in same if o != source)} would write the same {labels.name}; rename one"
        for labels, same in by_output.items() if len(same) > 1 for source in same
    }


class _Frames:
    """The RGB frames of a video file or a folder of images, with their count and rate."""

    def __init__(self, source: Path, fps: float | None) -> None:
        self.source = source
        if is_video(source):
            require_regular_file(source, "a video file")  # a FIFO would block OpenCV for ever
            import cv2  # OpenCV loads only when a video is read or written

            self.capture = cv2.VideoCapture(str(source))
            if not self.capture.isOpened():
                raise DataFileError(f"{source}: OpenCV cannot open it as a video")
            self.count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
            self.fps = fps or self.capture.get(cv2.CAP_PROP_FPS) or 25.0
            self.paths: list[Path] = []
        else:
            self.capture = None
            self.paths = find_images([source])
            if not self.paths:
                raise DataFileError(f"{source}: no image frames in this folder")
            self.count, self.fps = len(self.paths), fps or 25.0

    def __iter__(self) -> Iterator[np.ndarray]:
        if self.capture is None:
            yield from (read_image(path) for path in self.paths)
            return
        import cv2

        try:
            while True:
                ok, frame = self.capture.read()
                if not ok:
                    return
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        finally:
            self.capture.release()


def _batches(frames: Iterator[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    """Frames in batches of ``size``; a frame of another size than the first is refused (a video writer
    drops such frames without a word, so the label video would lose them)."""
    batch: list[np.ndarray] = []
    first: tuple[int, ...] | None = None
    for number, frame in enumerate(frames, start=1):
        first = first or frame.shape
        if frame.shape[:2] != first[:2]:
            raise DataFileError(f"frame {number} is {frame.shape[1]}×{frame.shape[0]} but the frames before it are "
                                f"{first[1]}×{first[0]}: a video's frames must be of one size")
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _labels_of_batch(scores: Tensor, config: InferenceConfig, smooth: float, state: list[Tensor | None]) -> Tensor:
    """Labels (N, H, W) of a batch's scores; with ``smooth`` < 1, of the moving average of probabilities."""
    if smooth >= 1:
        return scores.argmax(dim=1)
    labels = []
    for frame in probabilities(scores, config):
        state[0] = frame if state[0] is None else smooth * frame + (1 - smooth) * state[0]
        labels.append(state[0].argmax(dim=0))
    return torch.stack(labels)


def segment_video(
    model: Predictor | nn.Module,
    source: Path,
    output: Path,
    config: InferenceConfig,
    palette: Sequence[tuple[int, int, int]],
    *,
    batch_size: int = 4,
    smooth: float = 1.0,
    fps: float | None = None,
    progress: bool = True,
    resize: tuple[Size | None, Size | None] = (None, None),
) -> str | None:
    """Write the label and overlay videos of ``source``; the reason it could not, or None (see the module).

    ``resize`` is the test-time resize ``(fit_size, resize_to)``, applied to each frame as ``isnet predict`` applies it."""
    mean, std = model_normalisation(model)
    if len(mean) != 3:
        return f"{source}: the model takes {len(mean)} image channels; video frames are RGB"
    if len(palette) > PALETTE_CLASSES:
        return (f"{source}: the label video holds one byte a pixel, and the model has {len(palette)} classes (at most "
                f"{PALETTE_CLASSES}); predict its frames as images instead (16-bit label PNGs)")
    finals = video_outputs(source, output)
    pending: PendingFiles | None = None
    import cv2  # OpenCV loads only when a video is read or written

    writers: list[cv2.VideoWriter] = []
    model = as_predictor(model)
    test_resize = evaluation_transforms(*resize)
    state: list[Tensor | None] = [None]
    try:
        frames = _Frames(source, fps)
        pending = PendingFiles(*finals)
        partials = pending.temporaries
        bar = progress_bar(total=frames.count, desc=source.name, unit="frame", disable=not progress, leave=False)
        written = 0
        for batch in _batches(iter(frames), batch_size):
            if not writers:
                height, width = batch[0].shape[:2]
                for partial, codec, colour in ((partials[0], LABELS_CODEC, False), (partials[1], OVERLAY_CODEC, True)):
                    writer = cv2.VideoWriter(str(partial), cv2.VideoWriter_fourcc(*codec), frames.fps, (width, height),
                                             isColor=colour)
                    if not writer.isOpened():
                        raise OSError(f"OpenCV cannot write {codec} video to {partial}")
                    writers.append(writer)
            scores = predict_on_model_device(model, model_inputs(batch, mean, std, test_resize), config,
                                             size=batch[0].shape[:2])
            labels = _labels_of_batch(scores, config, smooth, state).to(torch.uint8).cpu().numpy()
            for frame, label in zip(batch, labels):
                writers[0].write(label)
                writers[1].write(cv2.cvtColor(overlay(frame, label, palette), cv2.COLOR_RGB2BGR))
            written += len(batch)
            bar.update(len(batch))
        bar.close()
        if not written:
            return f"{source}: no frame could be read"
        for writer in writers:
            writer.release()
        for partial in partials:
            if not partial.stat().st_size:
                raise OSError(f"OpenCV wrote nothing to {partial}")
        pending.commit()
    except DataFileError as error:
        text = str(error)
        return text if text.startswith(str(source)) else f"{source}: {text}"
    except OSError as error:
        return f"{source}: cannot write its videos: {describe_os_error(error) if error.errno else error}"
    finally:
        for writer in writers:
            writer.release()
        if pending is not None:
            pending.discard()
    print(f"{source} → {finals[0]} ({written} frames), {finals[1]}")
    return None
