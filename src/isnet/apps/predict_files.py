"""Segmenting image files into label maps and overlays, for ``isnet predict`` and the demo."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from isnet.data.channels import display_rgb, read_channels
from isnet.data.image import (
    MAX_IMAGE_PIXELS,
    MEAN,
    STD,
    DataFileError,
    image_size,
    read_image,
    to_tensor,
)
from isnet.data.info import Size, make_palette
from isnet.data.base import Transform
from isnet.data.transforms import evaluation_transforms
from isnet.inference.engine import InferenceConfig, predict
from isnet.inference.predictor import Predictor, as_predictor
from isnet.inference.temperature import confidence_uint16, max_probability
from isnet.utils.atomic_files import atomic_paths, remove_unfinished_writes
from isnet.utils.errors import describe_os_error
from isnet.utils.visualize import label_dtype, label_image, save_overlay_with_legend


def model_classes(model: Predictor | nn.Module) -> tuple[list[str], list[tuple[int, int, int]]]:
    """Class names and colours of a model: its dataset record, else generic names and colours."""
    dataset = getattr(model, "dataset", None)
    if dataset is not None:
        return list(dataset.classes), [tuple(colour) for colour in dataset.palette]
    num_classes = model.config.num_classes
    return [f"class {k}" for k in range(num_classes)], list(make_palette(num_classes))


def model_normalisation(model: Predictor | nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The per-channel mean and std a model's inputs are normalised with: its dataset record's, else RGB ImageNet's."""
    dataset = getattr(model, "dataset", None)
    return (tuple(dataset.mean), tuple(dataset.std)) if dataset is not None else (MEAN, STD)


def read_model_input(path: Path, channels: int, max_pixels: int) -> np.ndarray:
    """An image file as a model of ``channels`` input channels takes it, before normalisation."""
    return read_image(path, max_pixels) if channels == 3 else read_channels(path, channels, max_pixels)


def output_files(path: Path, output: Path, *, confidence: bool = False) -> tuple[Path, ...]:
    """Where the label map and the overlay (and, with ``confidence``, the confidence map) of image ``path`` go."""
    files = output / f"{path.stem}_labels.png", output / f"{path.stem}_overlay.png"
    return files + (output / f"{path.stem}_confidence.png",) if confidence else files


def confidence_image(confidence: np.ndarray) -> Image.Image:
    """A confidence map (uint16, ``round(p · 65535)``) as a 16-bit greyscale PNG image."""
    return Image.fromarray(confidence.astype(np.uint16))


def colliding_inputs(paths: Sequence[Path]) -> dict[Path, str]:
    """Inputs whose outputs would collide (``a.jpg`` and ``a.png``), with the reason: all of them fail."""
    by_stem: dict[str, list[Path]] = {}
    for path in paths:
        by_stem.setdefault(path.stem, []).append(path)
    return {
        path: f"{path}: {', '.join(str(o) for o in same if o != path)} would write the same {path.stem}_labels.png; rename one"
        for same in by_stem.values() if len(same) > 1 for path in same
    }


def segment_files(
    model: Predictor | nn.Module,
    paths: Sequence[Path],
    output: Path,
    config: InferenceConfig,
    classes: Sequence[str],
    palette: Sequence[tuple[int, int, int]],
    *,
    max_pixels: int | None = None,
    batch_size: int = 1,
    on_done: Callable[[Path], None] | None = None,
    confidence: bool = False,
    resize: tuple[Size | None, Size | None] = (None, None),
) -> list[tuple[Path, str]]:
    """Segment each image, writing ``<stem>_labels.png`` and ``<stem>_overlay.png``
    (with ``confidence``, also ``<stem>_confidence.png``: the probability of the predicted class).

    Returns the files that could not be segmented, with the reason; the others are written.
    A failure of one file (an unreadable image, a refused or failed write: permission, full
    disk) is listed and the next file is tried. A failed file leaves no output behind: both
    files are written under temporary names and renamed when complete. Inputs whose outputs
    would collide (``a.jpg`` and ``a.png``) all fail rather than overwrite each other. An
    output folder that cannot be created or written in is an ``OSError`` before any image is read.
    With ``batch_size`` > 1, images of equal size are predicted together. ``on_done(path)`` is
    called after each image (written or failed); without it each written image is printed.
    ``resize`` is the test-time resize ``(fit_size, resize_to)`` (:func:`~isnet.data.transforms.evaluation_transforms`):
    the model sees the resized image, and its scores are resized back to the image, as ``isnet eval`` scores them.
    """
    require_writable_folder(output)
    limit = max_pixels or MAX_IMAGE_PIXELS
    collisions = colliding_inputs(paths)
    failures = [(path, collisions[path]) for path in paths if path in collisions]
    model = as_predictor(model)
    mean, std = model_normalisation(model)
    test_resize = evaluation_transforms(*resize)
    for batch in batches_by_size([p for p in paths if p not in collisions], batch_size, limit):
        images, readable = [], []
        for path in batch:
            try:
                images.append(read_model_input(path, len(mean), limit))
                readable.append(path)
            except DataFileError as error:
                failures.append((path, str(error)))
        if images:
            try:
                scores = predict_on_model_device(model, model_inputs(images, mean, std, test_resize), config,
                                                 size=images[0].shape[:2])
                labels = scores.argmax(dim=1).numpy().astype(label_dtype(scores.shape[1]))
                confidences = confidence_uint16(max_probability(scores, config)).numpy() if confidence else [None] * len(labels)
                for path, image, label, certainty in zip(readable, images, labels, confidences):
                    picture = image if image.dtype == np.uint8 and image.shape[2] == 3 else display_rgb(image)
                    reason = _write_outputs(path, picture, label, output, classes, palette, announce=on_done is None,
                                            confidence=certainty)
                    if reason is not None:
                        failures.append((path, reason))
            except (RuntimeError, ValueError, OSError) as error:
                failures += [(path, f"{path}: {type(error).__name__}: {error}") for path in readable]
        for path in batch:
            if on_done is not None:
                on_done(path)
    for _, reason in failures:
        print(f"skipped {reason}", file=sys.stderr)
    order = {path: index for index, path in enumerate(paths)}
    return sorted(failures, key=lambda failure: order[failure[0]])


def model_inputs(images: Sequence[np.ndarray], mean: Sequence[float], std: Sequence[float], resize: Transform) -> torch.Tensor:
    """The model's input batch of images of one size: each resized by the test protocol
    (``evaluation_transforms``, as the evaluation data is) and normalised."""
    return torch.stack([to_tensor(resize(image, image[..., 0])[0], mean, std) for image in images])


def predict_on_model_device(
    model: Predictor | nn.Module, images: torch.Tensor, config: InferenceConfig, *, size: Sequence[int] | None = None
) -> torch.Tensor:
    """The scores of :func:`~isnet.inference.engine.predict`, computed on the model's device, returned on the CPU;
    with ``size`` (the image's size before the test resize), resized once from the head straight to it, as the
    evaluation loop resizes them to the label."""
    predictor = as_predictor(model)
    return predict(predictor, images.to(predictor.device), config, output_size=size).cpu()


def batches_by_size(paths: Sequence[Path], batch_size: int, max_pixels: int) -> Iterator[list[Path]]:
    """``paths`` in batches of at most ``batch_size`` images of one size (from the headers), in order
    of first appearance; an image whose header cannot be read is a batch of its own (it fails there)."""
    if batch_size <= 1:
        yield from ([path] for path in paths)
        return
    groups: dict[object, list[Path]] = {}
    for path in paths:
        try:
            key: object = image_size(path, max_pixels)
        except DataFileError:
            key = path
        groups.setdefault(key, []).append(path)
    for group in groups.values():
        for start in range(0, len(group), batch_size):
            yield group[start:start + batch_size]


def _write_outputs(
    path: Path,
    image: np.ndarray,
    labels: np.ndarray,
    output: Path,
    classes: Sequence[str],
    palette: Sequence[tuple[int, int, int]],
    *,
    announce: bool,
    confidence: np.ndarray | None = None,
) -> str | None:
    """Write one image's label map and overlay (and confidence map) atomically; the reason it could not, or None."""
    finals = output_files(path, output, confidence=confidence is not None)
    writing = finals[0]
    try:
        with atomic_paths(*finals) as partials:
            label_image(labels, palette).save(partials[0], format="PNG")
            writing = finals[1]
            save_overlay_with_legend(partials[1], image, labels, classes, palette, title=path.name)
            if confidence is not None:
                writing = finals[2]
                confidence_image(confidence).save(partials[2], format="PNG")
    except OSError as error:  # named by the output file being written, not its temporary name
        return f"{path}: cannot write its output {describe_os_error(error, writing)}"
    if announce:
        print(f"{path} → {finals[1]}")
    return None


def require_writable_folder(folder: Path) -> None:
    """Create ``folder`` if needed and check that files can be created in it (an ``OSError`` naming it if
    not); remove what writes of a killed run left there (only files provably ours: ``remove_unfinished_writes``)."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".isnet-write-test-"):
            pass
    except OSError as error:
        raise OSError(error.errno, error.strerror or str(error), str(folder)) from None
    remove_unfinished_writes(folder)
