"""A dataset record's ``ignore_index`` honoured end to end: the readers, the dataset doctor, convert,
class weights, the loss, the metrics and calibration, and the commands as a user runs them.

Two folder datasets hold the same scenes with the same unlabelled band (the top rows); one stores
it as 255 (the default), the other as 254 with ``"ignore_index": 254`` in its ``dataset.json``.
Everything a run computes from them must be the same, and the band must count nowhere.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import dataset_files
from cli_helpers import isnet, tiny_training
from isnet.data import IGNORE_INDEX, DatasetInfo, FolderDataset, synthetic
from isnet.data.class_weights import label_counts
from isnet.data.convert import convert_dataset
from isnet.data.doctor import diagnose
from isnet.data.image import DataFileError
from isnet.evaluation.metrics import ConfusionMatrix
from isnet.training.losses import segmentation_loss
from isnet.weights.calibration import read_calibration

BAND = 3  # unlabelled rows at the top of every mask
SPLIT_SCENES = {split: dataset_files.scenes(split) for split in dataset_files.SPLITS}


def write_dataset(root: Path, ignore: int, *, record: bool = True) -> Path:
    """The scenes with their top ``BAND`` rows stored as ``ignore``; ``dataset.json`` says so."""
    def encode(label: np.ndarray) -> np.ndarray:
        stored = label.astype(np.uint8)
        stored[:BAND] = ignore
        return stored

    dataset_files.write_masks(root, encode)
    if record:
        info = DatasetInfo(name="streets", classes=synthetic.CLASSES, palette=synthetic.RECORD.palette,
                           ignore_index=ignore)
        (root / "dataset.json").write_text(info.to_json())
    return root


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("ignore")
    return {ignore: write_dataset(root / f"ignore_{ignore}", ignore) for ignore in (255, 254)}


def labelled_pixels(split: str) -> int:
    return sum(scene.label[BAND:].size for _, scene in SPLIT_SCENES[split])


def test_the_record_says_which_stored_value_is_ignored(datasets):
    record = json.loads((datasets[254] / "dataset.json").read_text())
    assert record["ignore_index"] == 254 and record["label_mapping"] == "stored value k is class k; 254 is ignored"
    with pytest.raises(ValueError, match="ignore_index 300 is no mask value"):
        DatasetInfo(name="x", classes=("a", "b"), palette=((0, 0, 0), (1, 1, 1)), ignore_index=300)


def test_readers_give_the_same_samples_whatever_value_the_files_store_for_ignore(datasets):
    default, other = (FolderDataset(datasets[v], images_dir="images/train", masks_dir="masks/train") for v in (255, 254))
    assert other.info.ignore_index == 254
    for index in range(len(default)):
        label = other[index]["label"]
        assert torch.equal(label, default[index]["label"])
        assert (label[:BAND] == IGNORE_INDEX).all() and (label[BAND:] < len(synthetic.CLASSES)).all()
    # What the record does not define is refused by name: 255 is a class of nothing here.
    path = datasets[254] / "masks" / "train" / "s000.png"
    stored = np.asarray(Image.open(path)).copy()
    try:
        Image.fromarray(np.where(stored == 254, 255, stored).astype(np.uint8)).save(path)
        with pytest.raises(DataFileError, match=r"label values \[255\] are not defined by streets \(valid stored "
                                                r"values: 0\.\.5, 254\)"):
            other.check_sample(0, full=True)
    finally:
        Image.fromarray(stored).save(path)


def test_loss_metrics_and_class_weights_leave_the_ignored_pixels_out(datasets):
    dataset = FolderDataset(datasets[254], images_dir="images/val", masks_dir="masks/val")
    labels = torch.stack([dataset[index]["label"] for index in range(len(dataset))])
    logits = torch.randn(len(dataset), len(synthetic.CLASSES), *labels.shape[1:], generator=torch.Generator().manual_seed(0))
    matrix = ConfusionMatrix(len(synthetic.CLASSES))
    matrix.update(logits.argmax(1), labels)
    assert int(matrix.matrix.sum()) == labelled_pixels("val")
    loss = segmentation_loss({"out": logits}, labels, weights={"out": 1.0})["out"]
    labelled = labels[:, BAND:]
    expected = torch.nn.functional.cross_entropy(logits[:, :, BAND:], labelled)  # the band simply cut away
    assert torch.allclose(loss, expected, rtol=1e-6)
    pixels, pixels_of_images_with = label_counts(dataset)
    assert int(pixels.sum()) == labelled_pixels("val")
    default = FolderDataset(datasets[255], images_dir="images/val", masks_dir="masks/val")
    assert all(np.array_equal(a, b) for a, b in zip((pixels, pixels_of_images_with), label_counts(default)))


def test_the_doctor_counts_the_records_ignore_value_and_finds_nothing_wrong(datasets):
    diagnosis = diagnose(datasets[254])
    assert diagnosis.ok, [finding.problem for finding in diagnosis.findings]
    by_split = {split.name: split for split in diagnosis.splits}
    for split in ("train", "val"):
        assert by_split[split].ignored == len(SPLIT_SCENES[split]) * BAND * dataset_files.WIDTH
        assert int(by_split[split].pixels.sum()) == labelled_pixels(split)


def test_convert_writes_ignored_pixels_as_the_records_ignore_value(tmp_path):
    """ADE-style masks (0 = unlabelled) of a record whose ignore value is 254: 0 becomes 254, not 255."""
    source = dataset_files.ade_style(tmp_path / "ade")
    record = DatasetInfo(name="ade", classes=synthetic.CLASSES, palette=synthetic.RECORD.palette, ignore_index=254)
    (source / "dataset.json").write_text(record.to_json())
    conversion = convert_dataset(source, tmp_path / "converted", reduce_zero_label=True)
    assert conversion.record.ignore_index == 254
    assert any("mapped to 254 (ignored)" in step for step in conversion.steps)
    for stem, _scene in SPLIT_SCENES["train"]:
        mask = np.asarray(Image.open(tmp_path / "converted" / "masks" / "train" / f"{stem}.png"))
        stored = np.asarray(Image.open(source / "masks" / "train" / f"{stem}.png"))
        assert np.array_equal(mask, np.where(stored == 0, 254, stored.astype(np.int64) - 1))
    assert diagnose(tmp_path / "converted").ok


def read_summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


@pytest.mark.slow
def test_check_train_eval_and_calibrate_honour_ignore_index_254_as_a_user_runs_them(datasets, tmp_path):
    check = isnet("data", "check", datasets[254], "--output", tmp_path / "report")
    assert check.returncode == 0, check.stdout + check.stderr[-2000:]
    ignored = len(SPLIT_SCENES["train"]) * BAND * dataset_files.WIDTH
    assert f"Ignored pixels (value 254): train {ignored:,}" in (tmp_path / "report" / "report.md").read_text()

    runs = {}
    for ignore, root in datasets.items():
        runs[ignore] = tmp_path / f"run_{ignore}"
        result = isnet(*tiny_training(root, runs[ignore], max_iters=2))
        assert result.returncode == 0, result.stderr[-3000:]
    # The same labels reach the loss: the two runs are the same run.
    trained = {ignore: load_file(str(run / "model.safetensors")) for ignore, run in runs.items()}
    assert all(torch.equal(trained[254][key], trained[255][key]) for key in trained[255])
    assert read_summary(runs[254] / "eval")["mIoU"] == read_summary(runs[255] / "eval")["mIoU"]

    for ignore, root in datasets.items():
        result = isnet("eval", "--checkpoint", runs[254] / "model.safetensors", "--dataset", "folder", "--data-root",
                       root, "--split", "val", "--precision", "fp32", "--output", tmp_path / f"eval_{ignore}")
        assert result.returncode == 0, result.stderr[-3000:]
    scores = {ignore: read_summary(tmp_path / f"eval_{ignore}") for ignore in datasets}
    for summary in scores.values():
        summary.pop("path")  # the command's path: the same model, the data's own folder named
    assert scores[254] == scores[255]

    calibrated = tmp_path / "calibrated.safetensors"
    result = isnet("calibrate", "--checkpoint", runs[254] / "model.safetensors", "--dataset", "folder",
                   "--data-root", datasets[254], "--split", "val", "--output", calibrated)
    assert result.returncode == 0, result.stderr[-3000:]
    assert read_calibration(calibrated)["pixels"] == labelled_pixels("val")  # the band is not fitted on

