"""Boundary IoU (Cheng et al. 2021): closed-form values on concentric squares, a direct restatement on random maps."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from isnet.evaluation import ConfusionMatrix, write_report
from isnet.evaluation.boundary import BoundaryIoU, band_width


def squares(size: int, outer: int, inner: int) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth: a centred square of side ``outer`` (class 1) on background 0; prediction: one of side ``inner``."""
    def square(side: int) -> np.ndarray:
        mask = np.zeros((size, size), np.int64)
        start = (size - side) // 2
        mask[start:start + side, start:start + side] = 1
        return mask

    return square(outer), square(inner)


@pytest.mark.parametrize("outer, inner", [(30, 28), (30, 26), (30, 24), (30, 30)])
def test_concentric_squares_in_closed_form(outer, inner):
    size = 60
    d = band_width(size, size)
    assert d == 2  # 2 % of 84.9 pixels, rounded
    truth, prediction = squares(size, outer, inner)
    boundary = BoundaryIoU(2)
    boundary.update(torch.from_numpy(prediction)[None], torch.from_numpy(truth)[None])

    # Foreground: the inner bands are the squares' rings of width d; they meet where the smaller
    # square's ring is outside the larger one's eroded square (side outer − 2d).
    ring_truth, ring_prediction = outer**2 - (outer - 2 * d) ** 2, inner**2 - (inner - 2 * d) ** 2
    common = max(inner**2 - (outer - 2 * d) ** 2, 0)
    foreground = common / (ring_truth + ring_prediction - common)
    # Background: the frame of width d along the image border, and the ring of width d around each square.
    frame = size**2 - (size - 2 * d) ** 2
    around_truth, around_prediction = (outer + 2 * d) ** 2 - outer**2, (inner + 2 * d) ** 2 - inner**2
    around_both = max((inner + 2 * d) ** 2 - outer**2, 0)
    background = (frame + around_both) / (frame + around_truth + around_prediction - around_both)
    assert boundary.per_class() == pytest.approx([background, foreground], abs=1e-12)
    assert boundary.mean() == pytest.approx((background + foreground) / 2, abs=1e-12)
    if inner == outer - 6:
        assert foreground == 0  # three pixels inside, beyond the band: no common boundary, mask IoU 0.64


def direct_band(mask: np.ndarray, d: int) -> np.ndarray:
    """The definition pixel by pixel: in the mask, and some pixel within chessboard distance d is outside it (or the image)."""
    height, width = mask.shape
    band = np.zeros_like(mask)
    for i, j in itertools.product(range(height), range(width)):
        if not mask[i, j]:
            continue
        for u, v in itertools.product(range(i - d, i + d + 1), range(j - d, j + d + 1)):
            if not (0 <= u < height and 0 <= v < width) or not mask[u, v]:
                band[i, j] = True
                break
    return band


@pytest.mark.parametrize("ratio", [0.02, 0.15])
def test_equals_a_direct_restatement_on_random_maps(ratio):
    rng = np.random.default_rng(3)
    num_classes, ignore = 4, 255
    intersection, union = np.zeros(num_classes), np.zeros(num_classes)
    boundary = BoundaryIoU(num_classes, ignore_index=ignore, ratio=ratio)
    for height, width in [(9, 11), (12, 7), (10, 10)]:
        truth = rng.integers(0, num_classes, (height, width))
        truth[rng.random((height, width)) < 0.1] = ignore
        prediction = np.where(rng.random((height, width)) < 0.7, truth, rng.integers(0, num_classes, (height, width)))
        prediction[prediction == ignore] = 0
        boundary.update(torch.from_numpy(prediction)[None], torch.from_numpy(truth)[None])
        d = max(1, round(ratio * np.hypot(height, width)))
        labelled = truth != ignore
        for k in range(num_classes):
            g = direct_band(truth == k, d) & labelled
            p = direct_band(prediction == k, d) & labelled
            intersection[k] += (g & p).sum()
            union[k] += (g | p).sum()
    assert boundary.per_class() == pytest.approx((intersection / union).tolist(), abs=1e-12)


def test_summary_json_and_report_carry_it(tmp_path):
    truth, prediction = squares(60, 30, 28)
    matrix, boundary = ConfusionMatrix(2), BoundaryIoU(2)
    matrix.update(torch.from_numpy(prediction), torch.from_numpy(truth))
    boundary.update(torch.from_numpy(prediction)[None], torch.from_numpy(truth)[None])
    summary = write_report(matrix, ["background", "shape"], tmp_path, boundary=boundary)
    stored = json.loads((tmp_path / "summary.json").read_text())
    assert stored["boundary_iou"]["per_class"]["shape"] == pytest.approx(1 / 3)
    assert stored["boundary_iou"]["mean"] == pytest.approx(boundary.mean()) == summary["boundary_iou"]["mean"]
    assert "mean boundary IoU" in (tmp_path / "scores.txt").read_text()
    assert (tmp_path / "per_class.csv").read_text().splitlines()[0] == "class,iou,accuracy,boundary_iou"
