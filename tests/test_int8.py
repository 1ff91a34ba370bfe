"""INT8 (OpenVINO + NNCF) and the OpenVINO runtime: correct, carrying their metadata, on the command line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("openvino")
pytest.importorskip("nncf")
pytest.importorskip("onnx")

from isnet.weights.checkpoint import save_model  # noqa: E402
from isnet.data.base import read_label_png  # noqa: E402
from isnet.data.image import find_images, read_image, to_tensor  # noqa: E402
from isnet.data.info import DatasetInfo  # noqa: E402
from isnet.deploy.export import export_onnx  # noqa: E402
from isnet.training.losses import segmentation_loss  # noqa: E402
from isnet.utils.numerics import relative_error  # noqa: E402
from isnet.deploy.runtimes.openvino import OpenVinoSegmentor, read_model, save_ir  # noqa: E402
from isnet.deploy.quantize import FloatScope, classifier_convolutions, onnx_scope, quantize_model, write_int8  # noqa: E402
from isnet.deploy.quantize_check import compare, labelled_samples  # noqa: E402
from isnet.model.segmentor import build_model  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from training_helpers import make_data, tiny_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# Stated for this model: 12 training images of 48×64, 30 full-batch SGD steps, a network 8–16
# channels wide (a trained CamVid ISNet keeps > 99.3 %: docs/benchmarks.md). Measured: 94–97 %.
TINY_INT8_AGREEMENT = 0.90


def _load(root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    paths = find_images([root / "images" / split])
    images = torch.stack([to_tensor(read_image(path)) for path in paths])
    labels = torch.stack([torch.from_numpy(read_label_png(root / "masks" / split / f"{p.stem}.png").astype(np.int64)) for p in paths])
    return images, labels


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[torch.nn.Module, Path]:
    """A tiny ISNet trained for 30 full-batch steps on the synthetic scenes, and its data root."""
    root = make_data(tmp_path_factory.mktemp("scenes"))
    torch.manual_seed(0)
    model = build_model(tiny_config(root, root / "run").model)
    model.dataset = DatasetInfo.from_json((root / "dataset.json").read_text())
    images, labels = _load(root, "train")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for _ in range(30):
        loss = segmentation_loss(model(images), labels)["total"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), root


@pytest.fixture(scope="module")
def int8_path(trained, tmp_path_factory) -> Path:
    model, root = trained
    calibration = [image.unsqueeze(0) for image in _load(root, "train")[0]]
    quantized = quantize_model(model, calibration, scope=FloatScope())
    return write_int8(quantized, model, tmp_path_factory.mktemp("int8") / "model.xml", FloatScope())


def test_openvino_runs_the_exported_graph_like_pytorch(trained, tmp_path):
    model, _ = trained
    path = export_onnx(model, tmp_path / "model.onnx", sample_size=(48, 64))
    images = torch.randn(2, 3, 40, 72)  # another batch and size: the graph's axes are dynamic
    with torch.no_grad():
        expected = model.logits(images)
    runtime = OpenVinoSegmentor(path, threads=1)
    assert runtime.precision == "fp32"
    assert relative_error(runtime.logits(images), expected) < 1e-4
    assert runtime.config == model.config and runtime.dataset == model.dataset
    ir, metadata = read_model(path)
    again = OpenVinoSegmentor(save_ir(ir, tmp_path / "ir" / "model.xml", metadata), threads=1)  # metadata in rt_info
    assert again.config == model.config and again.dataset == model.dataset
    assert torch.equal(again.logits(images), runtime.logits(images))


def test_float_scope_names_the_exported_nodes(trained, tmp_path):
    import onnx

    model, _ = trained
    names = [node.name for node in onnx.load(str(export_onnx(model, tmp_path / "m.onnx", sample_size=(48, 64)))).graph.node]
    for path in classifier_convolutions(model) + ["backbone.stem", "head.semantic_context"]:
        prefix = onnx_scope(path)
        assert any(name.startswith(prefix) for name in names), prefix
    assert onnx_scope("head.classifier_stage1.4") == "/head/classifier_stage1/classifier_stage1.4/"


def test_int8_model_agrees_with_float32_and_carries_its_metadata(trained, int8_path):
    model, root = trained
    runtime = OpenVinoSegmentor(int8_path)
    assert runtime.precision == "int8"
    assert runtime.config == model.config and runtime.dataset == model.dataset
    from isnet.data.image import read_image as read

    def prepare(path):
        return to_tensor(read(path)).unsqueeze(0)

    paths = find_images([root / "images" / "val"]) + find_images([root / "images" / "train"])
    labels_dirs = {"val": root / "masks" / "val", "train": root / "masks" / "train"}
    samples = [s for split, dir_ in labels_dirs.items()
               for s in labelled_samples([p for p in paths if p.parent.name == split], dir_, prepare)]
    result = compare(model, {"int8": runtime}, samples, model.config.num_classes)["int8"]
    assert result.agreement >= TINY_INT8_AGREEMENT, result.describe()
    assert result.candidate_miou is not None and abs(result.candidate_miou - result.reference_miou) < 0.05


def _isnet(*args, env=None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(REPO / "src"), **(env or {})}
    return subprocess.run([sys.executable, "-m", "isnet.cli", *map(str, args)], capture_output=True, text=True,
                          env=environment, timeout=600)


def test_cli_quantizes_and_predicts_with_the_int8_model(trained, tmp_path):
    model, root = trained
    checkpoint = save_model(model, tmp_path / "tiny.safetensors")
    output = tmp_path / "int8" / "model.xml"
    result = _isnet("quantize", "--checkpoint", checkpoint, "--calibration", root / "images" / "train", "--output", output,
                    "--dataset", "folder", "--data-root", root, "--split", "val")
    assert result.returncode == 0, result.stderr[-3000:]
    assert output.is_file() and output.with_suffix(".bin").is_file()
    agreement = float(re.search(r"pixel agreement ([\d.]+)%", result.stdout).group(1))
    assert agreement >= 100 * TINY_INT8_AGREEMENT - 5, result.stdout  # 3 held-out images only
    assert re.search(r"mIoU [\d.]+ vs [\d.]+", result.stdout), result.stdout
    image = find_images([root / "images" / "val"])[0]
    predicted = _isnet("predict", image, "--weights", output, "--output", tmp_path / "out")  # the runtime told by the file
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    labels = np.asarray(read_label_png(tmp_path / "out" / f"{image.stem}_labels.png"))
    assert labels.shape == (48, 64) and labels.max() < model.config.num_classes
    refused = _isnet("predict", image, "--weights", output, "--runtime", "onnx", "--output", tmp_path / "out2")
    assert refused.returncode == 2 and "--runtime onnx" in refused.stderr


def test_cli_quantize_refuses_a_wrong_output_name_before_calibrating(trained, tmp_path):
    model, root = trained
    checkpoint = save_model(model, tmp_path / "tiny.safetensors")
    result = _isnet("quantize", "--checkpoint", checkpoint, "--calibration", root / "images" / "train",
                    "--output", tmp_path / "model.onnx")
    assert result.returncode == 2, result.stderr[-3000:]
    assert "--output" in result.stderr and "MODEL.xml" in result.stderr and "Traceback" not in result.stderr
    assert "calibrating" not in result.stdout  # refused before any work
    zero = _isnet("quantize", "--checkpoint", checkpoint, "--calibration", root / "images" / "train",
                  "--output", tmp_path / "m.xml", "--subset-size", "0")
    assert zero.returncode == 2 and "--subset-size" in zero.stderr
