"""Pictures of predictions: colour label maps and overlays with a legend."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from isnet.utils.atomic_files import write_atomically

if TYPE_CHECKING:
    from PIL import Image

IGNORE_COLOUR = (0, 0, 0)
PALETTE_CLASSES = 256  # a palette PNG holds 256 colours; label maps of more classes are 16-bit grey PNGs


def label_dtype(num_classes: int) -> type[np.integer]:
    """The integer type a label map of ``num_classes`` classes is stored in: one byte up to 256 classes, else two
    (a model has at most 65,536 classes: ``isnet.weights.checkpoint.config_bounds_problems``)."""
    return np.uint8 if num_classes <= PALETTE_CLASSES else np.uint16


def label_image(labels: np.ndarray, palette: Sequence[Sequence[int]]) -> Image.Image:
    """A label map as a PNG image whose pixel values are the class indices: palette mode (shown in ``palette``)
    up to 256 classes, 16-bit greyscale for more (the colours are then in the overlay only)."""
    from PIL import Image

    if len(palette) > PALETTE_CLASSES:
        return Image.fromarray(labels.astype(np.uint16))
    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    flat = [int(channel) for colour in palette[:256] for channel in colour]
    image.putpalette(flat + [0] * (768 - len(flat)))
    return image


def colourise(labels: np.ndarray, palette: Sequence[Sequence[int]], ignore_index: int = 255) -> np.ndarray:
    """(H, W) class indices → (H, W, 3) uint8 colours; ignored pixels are black."""
    rows = 1 << 16 if labels.dtype == np.uint16 else max(PALETTE_CLASSES, len(palette))  # any value it may hold
    table = np.zeros((max(rows, len(palette)), 3), np.uint8)
    table[: len(palette)] = np.asarray(palette, np.uint8)
    if len(palette) <= ignore_index < len(table):  # never the colour of a class
        table[ignore_index] = IGNORE_COLOUR
    return table[labels if labels.dtype in (np.uint8, np.uint16) else labels.astype(np.intp)]


def overlay(image: np.ndarray, labels: np.ndarray, palette: Sequence[Sequence[int]], alpha: float = 0.5) -> np.ndarray:
    """Blend the colour label map over the RGB image."""
    colours = colourise(labels, palette).astype(np.float32)
    return (image.astype(np.float32) * (1 - alpha) + colours * alpha).round().astype(np.uint8)


MAX_OVERLAY_SIDE = 1600  # overlays of larger images are drawn scaled down (the label PNG keeps full size)


def save_overlay_with_legend(
    path: str | Path,
    image: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    palette: Sequence[Sequence[int]],
    *,
    title: str | None = None,
) -> Path:
    """Write image | overlay side by side, with a legend of the classes present.

    Images with a side over :data:`MAX_OVERLAY_SIDE` are drawn scaled down; the legend wraps
    into as many columns as the classes present need.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    step = max(1, -(-max(labels.shape) // MAX_OVERLAY_SIDE))  # ceil: a whole-pixel stride
    image, labels = image[::step, ::step], labels[::step, ::step]
    height, width = labels.shape
    present = [int(k) for k in np.unique(labels) if k < len(classes)]
    figure_height = max(height / 100 + 0.6, 2.0)
    rows = max(1, int((figure_height - 0.3) * 72 / (7 * 1.5)))  # legend rows at 7 pt that fit the height
    columns = max(1, -(-len(present) // rows))
    legend_width = 1.6 * columns
    figure_width = 2 * width / 100 + 0.6 + legend_width
    figure, axes = plt.subplots(1, 2, figsize=(figure_width, figure_height), dpi=100)
    axes[0].imshow(image)
    axes[0].set_title("image", fontsize=8)
    axes[1].imshow(overlay(image, labels, palette))
    axes[1].set_title(title or "prediction", fontsize=8)
    for axis in axes:
        axis.axis("off")
    handles = [Patch(color=np.asarray(palette[k]) / 255, label=classes[k]) for k in present]
    plots_right = 1 - legend_width / figure_width
    figure.legend(handles=handles, loc="center left", bbox_to_anchor=(plots_right, 0.5), fontsize=7, frameon=False,
                  ncol=columns)
    figure.tight_layout(rect=(0, 0, plots_right, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def plot_training_curves(rows: Sequence[dict[str, str]], path: str | Path) -> Path:
    """Loss (per output) and mIoU against iteration, from ``metrics.csv`` rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def series(name: str) -> tuple[list[int], list[float]]:
        points = [(int(r["iteration"]), float(r[name])) for r in rows if r.get(name) not in (None, "", "nan")]
        return [p[0] for p in points], [p[1] for p in points]

    figure, (loss_axis, miou_axis) = plt.subplots(1, 2, figsize=(10, 3.5), dpi=100)
    for name, label in (("loss", "total"), ("loss_out", "stage 2 (O)"), ("loss_stage1", "stage 1 (D)"), ("loss_aux", "aux")):
        x, y = series(name)
        if x:
            loss_axis.plot(x, y, label=label)
    loss_axis.set_xlabel("iteration")
    loss_axis.set_ylabel("loss")
    loss_axis.set_yscale("log")
    loss_axis.legend(fontsize=7)
    x, y = series("mIoU")
    miou_axis.plot(x, [100 * v for v in y], marker="o", color="tab:green")
    miou_axis.set_xlabel("iteration")
    miou_axis.set_ylabel("mIoU (%)")
    miou_axis.set_ylim(bottom=0)
    figure.tight_layout()
    path = write_atomically(path, figure.savefig)
    plt.close(figure)
    return path
