"""ConfusionMatrix against a from-scratch NumPy computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from isnet.evaluation import ConfusionMatrix


def numpy_scores(pairs: list[tuple[np.ndarray, np.ndarray]], num_classes: int, ignore: int = 255) -> dict:
    """Reference: np.add.at confusion matrix and per-class loops, NaN for unscorable classes."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    for pred, target in pairs:
        keep = target != ignore
        np.add.at(matrix, (target[keep], pred[keep]), 1)
    iou, acc = [], []
    for k in range(num_classes):
        tp = matrix[k, k]
        in_target, in_pred = matrix[k, :].sum(), matrix[:, k].sum()
        union = in_target + in_pred - tp
        iou.append(tp / union if union else math.nan)
        acc.append(tp / in_target if in_target else math.nan)
    scored_iou = [v for v in iou if not math.isnan(v)]
    scored_acc = [v for v in acc if not math.isnan(v)]
    return {
        "matrix": matrix,
        "iou": iou,
        "acc": acc,
        "miou": sum(scored_iou) / len(scored_iou),
        "macc": sum(scored_acc) / len(scored_acc),
        "aacc": np.trace(matrix) / matrix.sum(),
    }


def random_maps(rng: np.random.Generator, num_classes: int, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    target = rng.integers(0, num_classes, shape)
    pred = np.where(rng.random(shape) < 0.6, target, rng.integers(0, num_classes, shape))
    target[rng.random(shape) < 0.2] = 255
    return pred, target


def test_matches_numpy_over_several_updates() -> None:
    rng = np.random.default_rng(0)
    num_classes = 7
    pairs = [random_maps(rng, num_classes, (2, 13, 17)) for _ in range(4)]
    metric = ConfusionMatrix(num_classes)
    for pred, target in pairs:
        metric.update(torch.from_numpy(pred), torch.from_numpy(target))
    expected = numpy_scores(pairs, num_classes)
    np.testing.assert_array_equal(metric.matrix.numpy(), expected["matrix"])
    scores = metric.summary()
    np.testing.assert_allclose(scores.iou, expected["iou"], rtol=1e-12)
    np.testing.assert_allclose(scores.class_accuracy, expected["acc"], rtol=1e-12)
    assert scores.mean_iou == pytest.approx(expected["miou"], rel=1e-12)
    assert scores.mean_accuracy == pytest.approx(expected["macc"], rel=1e-12)
    assert scores.pixel_accuracy == pytest.approx(expected["aacc"], rel=1e-12)


def test_absent_classes_are_excluded_from_the_means() -> None:
    rng = np.random.default_rng(1)
    num_classes = 6
    pred, target = random_maps(rng, 4, (30, 30))  # classes 4 and 5 never occur
    pred[0, 0], target[0, 0] = 5, 0  # ...except class 5, predicted once, never labelled
    metric = ConfusionMatrix(num_classes)
    metric.update(torch.from_numpy(pred), torch.from_numpy(target))
    expected = numpy_scores([(pred, target)], num_classes)
    scores = metric.summary()
    assert math.isnan(scores.iou[4]) and scores.iou[5] == 0.0  # a false positive counts
    assert math.isnan(scores.class_accuracy[4]) and math.isnan(scores.class_accuracy[5])
    assert scores.mean_iou == pytest.approx(expected["miou"], rel=1e-12)
    assert scores.mean_accuracy == pytest.approx(expected["macc"], rel=1e-12)
    assert "nan" in scores.table().lower()


def test_ignore_index_and_input_checks() -> None:
    metric = ConfusionMatrix(3, ignore_index=255)
    target = torch.tensor([[0, 255], [2, 1]])
    metric.update(torch.tensor([[0, 1], [2, 2]]), target)
    assert metric.matrix.sum() == 3  # the ignored pixel is not counted
    with pytest.raises(ValueError, match="shape"):
        metric.update(torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="predicted"):
        metric.update(torch.full((2, 2), 3), torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(TypeError):
        metric.update(torch.zeros(2, 2), torch.zeros(2, 2, dtype=torch.long))
    metric.reset()
    assert metric.matrix.sum() == 0


def test_all_reduce_without_process_group_is_a_no_op() -> None:
    metric = ConfusionMatrix(2)
    metric.update(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]))
    before = metric.matrix.clone()
    metric.all_reduce()
    assert torch.equal(metric.matrix, before)


def _reduce_worker(rank: int, store_path: str, out_path: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store_path}", rank=rank, world_size=2)
    metric = ConfusionMatrix(3)
    metric.update(torch.tensor([rank, 2]), torch.tensor([rank, rank]))  # rank r adds (r, r), (r, 2)
    metric.all_reduce()
    if rank == 0:
        torch.save(metric.matrix, out_path)
    dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not built")
def test_all_reduce_sums_over_processes(tmp_path) -> None:
    out_path = tmp_path / "matrix.pt"
    mp.start_processes(
        _reduce_worker, args=(str(tmp_path / "store"), str(out_path)), nprocs=2, start_method="fork"
    )
    expected = torch.zeros(3, 3, dtype=torch.int64)
    for rank in (0, 1):
        expected[rank, rank] += 1
        expected[rank, 2] += 1
    assert torch.equal(torch.load(out_path), expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_accumulates_on_gpu() -> None:
    rng = np.random.default_rng(2)
    pairs = [random_maps(rng, 5, (8, 9)) for _ in range(2)]
    metric = ConfusionMatrix(5)
    for pred, target in pairs:
        metric.update(torch.from_numpy(pred).cuda(), torch.from_numpy(target).cuda())
    assert metric.matrix.is_cuda
    np.testing.assert_array_equal(metric.matrix.cpu().numpy(), numpy_scores(pairs, 5)["matrix"])
