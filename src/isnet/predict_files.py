"""Segmenting image files into label maps and overlays, for ``isnet predict`` and the demo."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from torch import nn

from .data.image import MAX_IMAGE_PIXELS, DataFileError, read_image, to_tensor
from .data.info import make_palette
from .errors import describe_os_error
from .inference import InferenceConfig, predict_labels
from .visualize import save_overlay_with_legend


def model_classes(model: nn.Module) -> tuple[list[str], list[tuple[int, int, int]]]:
    """Class names and colours of a model: its dataset record, else generic names and colours."""
    dataset = getattr(model, "dataset", None)
    if dataset is not None:
        return list(dataset.classes), [tuple(colour) for colour in dataset.palette]
    num_classes = model.config.num_classes
    return [f"class {k}" for k in range(num_classes)], list(make_palette(num_classes))


def label_image(labels: np.ndarray, palette: Sequence[tuple[int, int, int]]) -> Image.Image:
    """A label map as a palette-mode PNG image: pixel values are class indices, shown in ``palette``."""
    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    flat = [channel for colour in palette for channel in colour]
    image.putpalette(flat + [0] * (768 - len(flat)))
    return image


def segment_files(
    model: nn.Module,
    paths: Sequence[Path],
    output: Path,
    config: InferenceConfig,
    classes: Sequence[str],
    palette: Sequence[tuple[int, int, int]],
    *,
    max_pixels: int | None = None,
) -> list[tuple[Path, str]]:
    """Segment each image, writing ``<stem>_labels.png`` and ``<stem>_overlay.png``.

    Returns the files that could not be segmented, with the reason; the others are written.
    A failure of one file (an unreadable image, a refused or failed write: permission, full
    disk) is listed and the next file is tried. A failed file leaves no output behind: both
    files are written under temporary names and renamed when complete. Inputs whose outputs
    would collide (``a.jpg`` and ``a.png``) all fail rather than overwrite each other. An
    output folder that cannot be created or written in is an ``OSError`` before any image is read.
    """
    require_writable_folder(output)
    by_stem: dict[str, list[Path]] = {}
    for path in paths:
        by_stem.setdefault(path.stem, []).append(path)
    failures = []
    model.eval()
    for path in paths:
        if len(by_stem[path.stem]) > 1:
            others = ", ".join(str(other) for other in by_stem[path.stem] if other != path)
            reason = f"{path}: {others} would write the same {path.stem}_labels.png; rename one"
        else:
            reason = _segment_file(model, path, output, config, classes, palette, max_pixels or MAX_IMAGE_PIXELS)
        if reason is not None:
            failures.append((path, reason))
            print(f"skipped {reason}", file=sys.stderr)
    return failures


def _segment_file(
    model: nn.Module,
    path: Path,
    output: Path,
    config: InferenceConfig,
    classes: Sequence[str],
    palette: Sequence[tuple[int, int, int]],
    max_pixels: int,
) -> str | None:
    """Segment one image and write its two files; the reason it could not, or None."""
    try:
        image = read_image(path, max_pixels)
        labels = predict_labels(model, to_tensor(image).unsqueeze(0), config)[0].numpy().astype(np.uint8)
    except DataFileError as error:
        return str(error)
    except (RuntimeError, ValueError, OSError) as error:
        return f"{path}: {type(error).__name__}: {error}"
    finals = (output / f"{path.stem}_labels.png", output / f"{path.stem}_overlay.png")
    partials = tuple(final.with_name(f".{final.stem}.partial.png") for final in finals)
    writing = finals[0]
    try:
        label_image(labels, palette).save(partials[0], format="PNG")
        writing = finals[1]
        save_overlay_with_legend(partials[1], image, labels, classes, palette, title=path.name)
        for partial, final in zip(partials, finals):
            writing = final
            os.replace(partial, final)
    except OSError as error:  # named by the output file, not its temporary name
        cause = OSError(error.errno, error.strerror or str(error))
        return f"{path}: cannot write its output {describe_os_error(cause, writing)}"
    finally:
        for partial in partials:
            try:
                partial.unlink(missing_ok=True)
            except OSError:  # a folder that refuses the write refuses the cleanup too; nothing was left
                pass
    print(f"{path} → {finals[1]}")
    return None


def require_writable_folder(folder: Path) -> None:
    """Create ``folder`` if needed and check that files can be created in it; an ``OSError`` naming it if not."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".isnet-write-test-"):
            pass
    except OSError as error:
        raise OSError(error.errno, error.strerror or str(error), str(folder)) from None
