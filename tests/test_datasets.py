"""Dataset readers on tiny datasets written in each official layout.

Expected training labels are computed here from the datasets' published definitions
(ADE20K's "0 = other", cityscapesScripts' label table, COCO-Stuff's labels.txt ids), not
from the tables inside ``isnet.data``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from isnet import data
from isnet.data import (
    ADE20K,
    CITYSCAPES,
    COCO_STUFF,
    COCO_STUFF_171,
    IMAGE_MEAN,
    IMAGE_STD,
    ADE20KDataset,
    CamVidDataset,
    CityscapesDataset,
    COCOStuff10kDataset,
    FolderDataset,
    LIPDataset,
)

H, W = 16, 20

# cityscapesScripts labels.py: (name, id, trainId), 255 = not evaluated.
CITYSCAPES_LABELS = [
    ("unlabeled", 0, 255), ("ego vehicle", 1, 255), ("rectification border", 2, 255),
    ("out of roi", 3, 255), ("static", 4, 255), ("dynamic", 5, 255), ("ground", 6, 255),
    ("road", 7, 0), ("sidewalk", 8, 1), ("parking", 9, 255), ("rail track", 10, 255),
    ("building", 11, 2), ("wall", 12, 3), ("fence", 13, 4), ("guard rail", 14, 255),
    ("bridge", 15, 255), ("tunnel", 16, 255), ("pole", 17, 5), ("polegroup", 18, 255),
    ("traffic light", 19, 6), ("traffic sign", 20, 7), ("vegetation", 21, 8), ("terrain", 22, 9),
    ("sky", 23, 10), ("person", 24, 11), ("rider", 25, 12), ("car", 26, 13), ("truck", 27, 14),
    ("bus", 28, 15), ("caravan", 29, 255), ("trailer", 30, 255), ("train", 31, 16),
    ("motorcycle", 32, 17), ("bicycle", 33, 18),
]
# COCO-Stuff labels.txt ids (1-based) of the 11 thing classes that were never annotated.
COCO_UNANNOTATED_IDS = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91}


def write_image(path: Path, seed: int, size: tuple[int, int] = (H, W)) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return pixels


def write_label(path: Path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values.astype(np.uint8), mode="L").save(path)


def label_values(seed: int, values: list[int]) -> np.ndarray:
    """An H×W map holding every value of ``values`` at least once (when it fits), shuffled."""
    rng = np.random.default_rng(seed)
    flat = np.resize(np.asarray(values), H * W)
    return rng.permutation(flat).reshape(H, W)


# Each layout writer returns the root and {image stem: stored label}.
Layout = Callable[[Path], tuple[Path, dict[str, np.ndarray]]]


def ade20k_layout(tmp: Path) -> tuple[Path, dict[str, np.ndarray]]:
    base = tmp / "ADEChallengeData2016"
    labels = {}
    for i, stem in enumerate(["ADE_val_00000001", "ADE_val_00000002", "ADE_val_00000003"]):
        write_image(base / "images/validation" / f"{stem}.jpg", i)
        labels[stem] = label_values(i, list(range(151)))
        write_label(base / "annotations/validation" / f"{stem}.png", labels[stem])
    return tmp, labels


def cityscapes_layout(tmp: Path) -> tuple[Path, dict[str, np.ndarray]]:
    labels = {}
    for i, (city, name) in enumerate([("aachen", "aachen_000000_000019"), ("bremen", "bremen_000001_000019")]):
        write_image(tmp / "leftImg8bit/val" / city / f"{name}_leftImg8bit.png", i)
        labels[f"{name}_leftImg8bit"] = label_values(i, [label_id for _, label_id, _ in CITYSCAPES_LABELS])
        write_label(tmp / "gtFine/val" / city / f"{name}_gtFine_labelIds.png", labels[f"{name}_leftImg8bit"])
        write_label(tmp / "gtFine/val" / city / f"{name}_gtFine_labelTrainIds.png", np.zeros((H, W)))
    return tmp, labels


def lip_layout(tmp: Path, official: bool = True) -> tuple[Path, dict[str, np.ndarray]]:
    images = tmp / "TrainVal_images" if official else tmp
    annotations = tmp / "TrainVal_parsing_annotations" if official else tmp
    labels = {}
    for i, stem in enumerate(["100034_483681", "10005_205677"]):
        write_image(images / "val_images" / f"{stem}.jpg", i)
        labels[stem] = label_values(i, list(range(20)))
        write_label(annotations / "val_segmentations" / f"{stem}.png", labels[stem])
    return tmp, labels


def coco_layout(tmp: Path) -> tuple[Path, dict[str, np.ndarray]]:
    labels = {}
    stems = ["COCO_train2014_000000000077", "COCO_train2014_000000000078"]
    for i, stem in enumerate(stems):
        write_image(tmp / "images" / f"{stem}.jpg", i)
        labels[stem] = label_values(i, list(range(183)))
        write_label(tmp / "annotations" / f"{stem}.png", labels[stem])
    write_image(tmp / "images/COCO_train2014_000000000099.jpg", 9)  # listed in test only
    write_label(tmp / "annotations/COCO_train2014_000000000099.png", np.zeros((H, W)))
    (tmp / "imageLists").mkdir()
    (tmp / "imageLists/train.txt").write_text("\n".join(stems) + "\n")
    (tmp / "imageLists/test.txt").write_text("COCO_train2014_000000000099\n")
    return tmp, labels


def camvid_layout(tmp: Path) -> tuple[Path, dict[str, np.ndarray]]:
    labels = {}
    for i, stem in enumerate(["0016E5_07959", "0016E5_07961", "0016E5_07963"]):
        write_image(tmp / "images/val" / f"{stem}.jpg", i)
        labels[stem] = label_values(i, list(range(12)))
        write_label(tmp / "annotations/val" / f"{stem}.png", labels[stem])
    return tmp, labels


def ade_expected(stored: np.ndarray) -> np.ndarray:
    return np.where(stored == 0, 255, stored.astype(np.int64) - 1)


def cityscapes_expected(stored: np.ndarray) -> np.ndarray:
    table = {label_id: train_id for _, label_id, train_id in CITYSCAPES_LABELS}
    return np.vectorize(table.__getitem__)(stored)


def coco171_expected(stored: np.ndarray) -> np.ndarray:
    used = [i for i in range(1, 183) if i not in COCO_UNANNOTATED_IDS]
    table = {0: 255} | {i: 255 for i in COCO_UNANNOTATED_IDS} | {i: k for k, i in enumerate(used)}
    return np.vectorize(table.__getitem__)(stored)


READERS = {
    "ade20k": (ade20k_layout, lambda root: ADE20KDataset(root, "val"), ade_expected),
    "cityscapes": (cityscapes_layout, lambda root: CityscapesDataset(root, "val"), cityscapes_expected),
    "lip": (lip_layout, lambda root: LIPDataset(root, "val"), lambda s: s.astype(np.int64)),
    "lip_flat": (
        lambda tmp: lip_layout(tmp, official=False),
        lambda root: LIPDataset(root, "val"),
        lambda s: s.astype(np.int64),
    ),
    "coco182": (coco_layout, lambda root: COCOStuff10kDataset(root, "train"), ade_expected),
    "coco171": (coco_layout, lambda root: COCOStuff10kDataset(root, "train", num_classes=171), coco171_expected),
    "camvid": (camvid_layout, lambda root: CamVidDataset(root, "val"), lambda s: np.where(s == 11, 255, s)),
}


# The record each reader's samples are described by.
RECORDS = {"ade20k": data.ADE20K, "cityscapes": data.CITYSCAPES, "lip": data.LIP, "lip_flat": data.LIP,
           "coco182": data.COCO_STUFF, "coco171": data.COCO_STUFF_171, "camvid": data.CAMVID}


@pytest.mark.parametrize("reader", READERS)
def test_reader_pairs_files_and_maps_labels(reader: str, tmp_path: Path) -> None:
    layout, build, expected = READERS[reader]
    root, stored = layout(tmp_path)
    dataset = build(root)
    assert dataset.info is RECORDS[reader]
    assert len(dataset) == len(stored)
    seen = set()
    for sample in dataset:
        stem = Path(sample["path"]).stem
        seen.add(stem)
        assert sample["image"].dtype == torch.float32 and sample["image"].shape == (3, H, W)
        assert sample["label"].dtype == torch.int64 and sample["label"].shape == (H, W)
        np.testing.assert_array_equal(sample["label"].numpy(), expected(stored[stem]))
        valid = sample["label"][sample["label"] != 255]
        assert valid.min() >= 0 and valid.max() < dataset.info.num_classes
    assert seen == set(stored)


def test_specific_label_values() -> None:
    """Spot checks of the published meanings, independent of the generated maps."""
    names = {label_id: name for name, label_id, _ in CITYSCAPES_LABELS}
    for _name, label_id, train_id in CITYSCAPES_LABELS:
        if train_id != 255:
            assert CITYSCAPES.classes[train_id] == names[label_id]
    assert ADE20K.classes[0] == "wall" and ADE20K.classes[149] == "flag"
    # labels.txt: 1 person, 13 stop sign, 92 banner, 182 wood
    assert COCO_STUFF.classes[0] == "person" and COCO_STUFF.classes[181] == "wood"
    assert COCO_STUFF_171.classes[11] == "stop sign" and COCO_STUFF_171.classes[80] == "banner"
    assert COCO_STUFF_171.classes[-1] == "wood"


def test_sample_image_is_normalised_rgb(tmp_path: Path) -> None:
    pixels = write_image(tmp_path / "images/a.png", 0)
    write_label(tmp_path / "masks/a.png", np.ones((H, W)))
    sample = FolderDataset(tmp_path, classes=["bg", "fg"])[0]
    mean = torch.tensor(IMAGE_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGE_STD).view(3, 1, 1)
    restored = (sample["image"] * std + mean).permute(1, 2, 0).numpy()
    np.testing.assert_allclose(restored, pixels, atol=1e-3)


def test_transform_sees_uint8_arrays_and_batches_collate(tmp_path: Path) -> None:
    root, _ = camvid_layout(tmp_path)
    calls = []

    def crop(image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        calls.append((image.dtype, image.shape, label.dtype, label.shape))
        return image[:8, :10], label[:8, :10]

    batch = next(iter(DataLoader(CamVidDataset(root, "val", transform=crop), batch_size=2)))
    assert calls[0] == (np.uint8, (H, W, 3), np.uint8, (H, W))
    assert batch["image"].shape == (2, 3, 8, 10) and batch["label"].shape == (2, 8, 10)
    assert len(batch["path"]) == 2


def test_coco_mat_annotations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scipy_io = pytest.importorskip("scipy.io")
    root, stored = coco_layout(tmp_path)
    for stem, values in stored.items():
        (root / "annotations" / f"{stem}.png").unlink()
        scipy_io.savemat(root / "annotations" / f"{stem}.mat", {"S": values.astype(np.uint16)})
    dataset = COCOStuff10kDataset(root, "train")
    for sample in dataset:
        expected = ade_expected(stored[Path(sample["path"]).stem])
        np.testing.assert_array_equal(sample["label"].numpy(), expected)

    monkeypatch.setitem(sys.modules, "scipy.io", None)  # as if SciPy were not installed
    with pytest.raises(ImportError, match="COCO_train2014_000000000077.mat"):
        dataset[0]


def test_folder_dataset_classes_file_and_reduce_zero_label(tmp_path: Path) -> None:
    write_image(tmp_path / "img/x.jpg", 0)
    write_image(tmp_path / "img/y.jpg", 1)
    stored = label_values(0, [0, 1, 2, 3, 255])
    write_label(tmp_path / "ann/x.png", stored)
    write_label(tmp_path / "ann/y.png", stored)
    (tmp_path / "classes.txt").write_text("road\nsky\n\ncar\n")
    plain = FolderDataset(tmp_path, images_dir="img", masks_dir="ann", name="mine")
    assert plain.info.classes == ("road", "sky", "car") and len(plain) == 2
    with pytest.raises(ValueError, match=r"x\.png.*\[3\]"):
        plain[0]  # 3 is not a class of a 3-class dataset
    reduced = FolderDataset(tmp_path, ["road", "sky", "car"], "img", "ann", reduce_zero_label=True)
    expected = np.where(stored == 0, 255, np.where(stored == 255, 255, stored.astype(np.int64) - 1))
    np.testing.assert_array_equal(reduced[0]["label"].numpy(), expected)
    assert len(set(reduced.info.palette)) == 3


# --- errors name the file or folder at fault ---------------------------------------------


def test_missing_root_and_split(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ADE20KDataset(tmp_path / "nowhere", "train")
    ade20k_layout(tmp_path)
    with pytest.raises(FileNotFoundError, match="training"):
        ADE20KDataset(tmp_path, "train")  # only the validation split was written
    with pytest.raises(ValueError, match="'train', 'val'"):
        LIPDataset(tmp_path, "trainval")


def test_empty_split(tmp_path: Path) -> None:
    (tmp_path / "images/val").mkdir(parents=True)
    (tmp_path / "annotations/val").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="empty"):
        CamVidDataset(tmp_path, "val")


def test_image_without_label(tmp_path: Path) -> None:
    root, _ = cityscapes_layout(tmp_path)
    write_image(root / "leftImg8bit/val/bremen/bremen_000002_000019_leftImg8bit.png", 5)
    with pytest.raises(FileNotFoundError, match="bremen_000002_000019_leftImg8bit.png"):
        CityscapesDataset(root, "val")


def test_size_mismatch(tmp_path: Path) -> None:
    root, _ = lip_layout(tmp_path)
    write_image(root / "TrainVal_images/val_images/10005_205677.jpg", 1, size=(H + 2, W))
    dataset = LIPDataset(root, "val")
    index = [Path(path).stem for path, _ in dataset.pairs].index("10005_205677")
    with pytest.raises(ValueError, match="10005_205677"):
        dataset[index]


def test_unreadable_label(tmp_path: Path) -> None:
    root, _ = ade20k_layout(tmp_path)
    (root / "ADEChallengeData2016/annotations/validation/ADE_val_00000002.png").write_bytes(b"not a png")
    with pytest.raises(OSError, match="ADE_val_00000002.png"):
        ADE20KDataset(root, "val")[1]


def test_unexpected_label_values(tmp_path: Path) -> None:
    root, _ = ade20k_layout(tmp_path)
    write_label(root / "ADEChallengeData2016/annotations/validation/ADE_val_00000001.png", np.full((H, W), 151))
    with pytest.raises(ValueError, match=r"ADE_val_00000001.png.*\[151\]"):
        ADE20KDataset(root, "val")[0]
