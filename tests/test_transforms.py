"""Training / evaluation pipelines: sizes, padding, label integrity, crop rule, flips, seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from isnet.data import LIP, eval_transforms, lip_eval_transforms, lip_train_transforms, train_transforms
from isnet.data.transforms import CatMaxRatioCrop, HorizontalFlip, Pipeline


def random_pair(height: int, width: int, values: list[int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    # blocky labels, so resizing has boundaries to get wrong
    blocks = rng.choice(values, size=(height // 4 + 1, width // 4 + 1)).astype(np.uint8)
    return image, np.kron(blocks, np.ones((4, 4), np.uint8))[:height, :width]


@pytest.mark.parametrize("shape", [(60, 80), (90, 40), (10, 12)])
def test_train_output_has_crop_size(shape: tuple[int, int]) -> None:
    transform = train_transforms(crop_size=(32, 48), fit_size=(80, 40), seed=0)
    image, label = random_pair(*shape, [0, 1, 2])
    for _ in range(5):
        out_image, out_label = transform(image, label)
        assert out_image.shape == (32, 48, 3) and out_image.dtype == np.uint8
        assert out_label.shape == (32, 48) and out_label.dtype == np.uint8


def test_padding_fills_image_0_and_label_255() -> None:
    image, label = random_pair(16, 20, [1, 2])
    # fit_size equal to the image size and no rescale: the image stays 16×20 inside a 24×32 crop
    transform = train_transforms(crop_size=(24, 32), fit_size=(20, 16), scale_range=(1.0, 1.0), seed=0)
    out_image, out_label = transform(image, label)
    assert (out_label[16:, :] == 255).all() and (out_label[:, 20:] == 255).all()
    assert (out_image[16:, :] == 0).all() and (out_image[:, 20:] == 0).all()
    inside = out_label[:16, :20]
    assert np.array_equal(inside, label) or np.array_equal(inside, label[:, ::-1])


@pytest.mark.parametrize("builder", ["train", "lip"])
def test_labels_are_never_interpolated(builder: str) -> None:
    values = [0, 3, 7, 12]  # none is in a LIP flip pair
    image, label = random_pair(50, 70, values)
    if builder == "train":
        transform = train_transforms(crop_size=(40, 40), fit_size=(70, 50), scale_range=(0.3, 2.5), seed=1)
    else:  # always rotate
        transform = lip_train_transforms(crop_size=(40, 40), resize=(50, 50), rotation_p=1.0, seed=1)
    seen = set()
    for _ in range(15):
        seen |= set(np.unique(transform(image, label)[1]).tolist())
    assert seen <= {*values, 255}
    assert seen >= set(values)


def test_rotation_fills_label_with_255() -> None:
    image, label = random_pair(40, 40, [1, 2])
    transform = lip_train_transforms(crop_size=(40, 40), resize=(40, 40), scale_range=(1, 1), rotation_p=1.0, seed=3)
    corners = [transform(image, label)[1][[0, 0, -1, -1], [0, -1, 0, -1]] for _ in range(10)]
    assert (np.concatenate(corners) == 255).any()


def test_eval_resizes_image_to_fit_and_keeps_label() -> None:
    image, label = random_pair(40, 20, [0, 1])  # portrait: the long side is the height
    out_image, out_label = eval_transforms(fit_size=(100, 50))(image, label)
    scale = min(100 / 40, 50 / 20)
    assert out_image.shape == (round(40 * scale), round(20 * scale), 3)
    assert out_label is label
    same_image, _ = eval_transforms()(image, label)
    assert np.array_equal(same_image, image)
    assert lip_eval_transforms((473, 473))(image, label)[0].shape == (473, 473, 3)


def cat_max_violated(label: np.ndarray, ratio: float = 0.75) -> bool:
    values, counts = np.unique(label[label != 255], return_counts=True)
    return len(values) < 2 or counts.max() / counts.sum() >= ratio


def test_crop_rejects_crops_dominated_by_one_class() -> None:
    # 20-wide crops of a 34-wide map whose left 17 columns are class 1: 9 of the 15 offsets
    # are balanced, so with 10 tries a bad crop survives with probability 0.4**10
    label = np.zeros((20, 34), np.uint8)
    label[:, :17] = 1
    image = np.zeros((20, 34, 3), np.uint8)
    with_rule = Pipeline([CatMaxRatioCrop((20, 20), cat_max_ratio=0.75)], seed=0)
    without_rule = Pipeline([CatMaxRatioCrop((20, 20), cat_max_ratio=1.0)], seed=0)
    assert not any(cat_max_violated(with_rule(image, label)[1]) for _ in range(50))
    assert sum(cat_max_violated(without_rule(image, label)[1]) for _ in range(50)) > 5


def test_crop_gives_up_after_ten_tries() -> None:
    class CountingRng:
        def __init__(self) -> None:
            self.rng, self.draws = np.random.default_rng(0), 0

        def integers(self, low: int, high: int) -> int:
            self.draws += 1
            return self.rng.integers(low, high)

    rng = CountingRng()
    _, out = CatMaxRatioCrop((8, 8))(np.zeros((20, 20, 3), np.uint8), np.full((20, 20), 4, np.uint8), rng)
    assert out.shape == (8, 8)
    assert rng.draws == 2 * 10  # (top, left) per try


def test_lip_flip_swaps_left_and_right_labels() -> None:
    image, label = random_pair(12, 16, list(range(20)))
    swap = {k: k for k in range(256)}
    for left, right in [(14, 15), (16, 17), (18, 19)]:
        swap[left], swap[right] = right, left
    expected = np.vectorize(swap.__getitem__)(label[:, ::-1])
    out_image, out_label = Pipeline([HorizontalFlip(1.0, LIP.flip_pairs)])(image, label)
    np.testing.assert_array_equal(out_label, expected)
    np.testing.assert_array_equal(out_image, image[:, ::-1])


def test_lip_pipeline_flips_with_swap_half_the_time() -> None:
    image, label = random_pair(24, 24, list(range(20)))
    swap = np.arange(256)
    swap[[14, 15, 16, 17, 18, 19]] = [15, 14, 17, 16, 19, 18]
    transform = lip_train_transforms(
        crop_size=(24, 24), resize=(24, 24), scale_range=(1, 1), rotation_p=0.0, cat_max_ratio=1.0, seed=0
    )
    outcomes = []
    for _ in range(20):
        out = transform(image, label)[1]
        assert np.array_equal(out, label) or np.array_equal(out, swap[label[:, ::-1]])
        outcomes.append(np.array_equal(out, label))
    assert 0 < sum(outcomes) < 20


def test_same_seed_same_augmentations() -> None:
    image, label = random_pair(60, 80, [0, 1, 2, 5])

    def run(seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
        transform = train_transforms(crop_size=(32, 32), fit_size=(80, 60), seed=seed)
        return [transform(image, label) for _ in range(4)]

    first, again, other = run(7), run(7), run(8)
    for (a_img, a_lbl), (b_img, b_lbl) in zip(first, again):
        assert np.array_equal(a_img, b_img) and np.array_equal(a_lbl, b_lbl)
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(first, other))


class _Augmented(Dataset):
    def __init__(self) -> None:
        self.image, self.label = random_pair(60, 80, [0, 1, 2, 5])
        self.transform = train_transforms(crop_size=(32, 32), fit_size=(80, 60), seed=0)

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(self.transform(self.image, self.label)[0].copy())


def test_dataloader_workers_draw_different_augmentations() -> None:
    batches = list(DataLoader(_Augmented(), batch_size=1, num_workers=2))
    # sample 0 comes from worker 0 and sample 1 from worker 1: same image, same seed argument
    assert not torch.equal(batches[0], batches[1])


def test_the_test_time_resize_is_decided_in_one_place():
    """A fit box wins; else an exact size (LIP); else the image as it is. The label keeps its size."""
    from isnet.data import evaluation_transforms

    image, label = np.zeros((300, 400, 3), np.uint8), np.zeros((300, 400), np.uint8)
    shapes = {name: evaluation_transforms(*sizes)(image, label) for name, sizes in {
        "fit": ((200, 100), (50, 60)), "exact": (None, (50, 60)), "none": (None, None)}.items()}
    assert shapes["fit"][0].shape[:2] == (100, 133)
    assert shapes["exact"][0].shape[:2] == (50, 60)
    assert shapes["none"][0].shape[:2] == (300, 400)
    assert all(resized[1].shape == (300, 400) for resized in shapes.values())
