"""Export: ONNX (run in ONNX Runtime) and torch.export, with dynamic batch and image size."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from isnet.weights.checkpoint import save_model
from isnet.weights.released import load_released_checkpoint
from isnet.cli import main
from isnet.model.config import BackboneConfig, ISNetHeadConfig, ModelConfig, ShortcutConfig
from isnet.weights.released import from_released_config
from isnet.deploy.export import control_flow_ops, export_onnx, export_program
from isnet.inference.engine import predict
from isnet.utils.numerics import relative_error
from isnet.model.segmentor import build_model
from reference_helpers import msflip_config

pytest.importorskip("onnxruntime")
from isnet.deploy.runtimes.onnxruntime import OnnxSegmentor  # noqa: E402

FIXTURE_DIR = Path(os.environ.get("ISNET_REFERENCE_FIXTURES", Path(__file__).parent / "fixtures" / "reference"))
STEMS = sorted(p.stem for p in FIXTURE_DIR.glob("*.npz") if p.with_suffix(".pth").exists())
ONNX_TOLERANCE = 1e-3  # of the largest magnitude

TINY = ModelConfig(
    num_classes=5,
    backbone=BackboneConfig("resnet", 18, base_channels=8, stem_channels=8),
    head=ISNetHeadConfig(channels=16, transform_channels=8, shortcut=ShortcutConfig()),
)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: no thread team to wake per op


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(TINY).eval()
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "tiny.onnx", sample_size=(64, 64))
    return model, path


def test_onnx_has_dynamic_batch_and_size_and_no_control_flow_but_the_attention_loop(tiny):
    model, path = tiny
    assert control_flow_ops(path) == ["Loop"]  # ILCM's query blocks; its trip count is the image's size
    session = OnnxSegmentor(path)
    assert session.config == TINY
    for shape in [(1, 3, 64, 64), (3, 3, 57, 91), (1, 3, 17, 23)]:
        images = torch.randn(shape)
        with torch.no_grad():
            expected = model.logits(images)
        actual = session.logits(images)
        assert actual.shape == expected.shape
        assert relative_error(actual, expected) < 1e-4


@pytest.mark.parametrize("stem", STEMS)
def test_onnx_runtime_reproduces_the_reference_fixture(stem, tmp_path):
    meta = json.loads((FIXTURE_DIR / f"{stem}.json").read_text())
    arrays = dict(np.load(FIXTURE_DIR / f"{stem}.npz"))
    model = build_model(from_released_config(meta))
    load_released_checkpoint(model, FIXTURE_DIR / f"{stem}.pth")
    image = torch.from_numpy(arrays["image"])
    session = OnnxSegmentor(export_onnx(model.eval(), tmp_path / f"{stem}.onnx", sample_size=tuple(image.shape[2:])))
    with torch.no_grad():
        pytorch = model.logits(image)
    assert relative_error(session.logits(image), pytorch) <= ONNX_TOLERANCE
    assert relative_error(session.logits(image), arrays["logits_stage2"]) <= ONNX_TOLERANCE
    # The inference protocols run on the session unchanged: multi-scale + flip resizes the
    # image to six sizes and batches it with its mirror (dynamic batch and size).
    config = msflip_config(meta)
    assert relative_error(predict(session, image, config), arrays["seg_logit_msflip"]) <= ONNX_TOLERANCE


def test_the_onnx_graph_computes_ilcm_attention_a_block_of_queries_at_a_time(tiny, tmp_path):
    """Segmentor.exportable() chooses explicit attention (the model reads no export state) and the
    exporter loops over blocks of queries: the softmax over all pixels is inside the Loop's body, and
    with blocks of 7 (96 queries of a 57×91 image: 14 blocks, the last padded) ONNX Runtime and
    OpenVINO give PyTorch's logits."""
    import onnx

    model, path = tiny
    whole = export_onnx(model, tmp_path / "whole.onnx", sample_size=(64, 64), query_block=None)
    blocks_of_7 = export_onnx(model, tmp_path / "blocks_of_7.onnx", sample_size=(64, 64), query_block=7)

    def softmaxes(graph) -> tuple[int, int]:  # (at the top, inside loops)
        loops = [node.attribute[0].g for node in graph.node if node.op_type == "Loop"]
        return (sum(node.op_type == "Softmax" for node in graph.node),
                sum(node.op_type == "Softmax" for body in loops for node in body.node))

    top, looped = softmaxes(onnx.load(str(path)).graph)
    assert looped == 1 and softmaxes(onnx.load(str(whole)).graph) == (top + 1, 0)
    assert control_flow_ops(whole) == []
    assert model.head.image_context.attention.explicit_attention is False  # the model itself is left as it was
    images = torch.randn(2, 3, 57, 91)
    with torch.no_grad():
        expected = model.logits(images)
    assert relative_error(OnnxSegmentor(blocks_of_7).logits(images), expected) < 1e-5
    pytest.importorskip("openvino")
    from isnet.deploy.runtimes.openvino import OpenVinoSegmentor

    assert relative_error(OpenVinoSegmentor(blocks_of_7).logits(images), expected) < 1e-5


def test_torch_export_has_dynamic_batch_and_size(tmp_path):
    torch.manual_seed(0)
    model = build_model(TINY).eval()
    program = torch.export.load(str(export_program(model, tmp_path / "tiny.pt2", sample_size=(64, 64)))).module()
    # 57×91: ILCM's 96 queries in 16 blocks of 6; 17×23: 9 queries, so 7 of the blocks are empty.
    for shape in [(1, 3, 64, 64), (3, 3, 57, 91), (1, 3, 17, 23)]:
        images = torch.randn(shape)
        with torch.no_grad():
            assert relative_error(program(images), model.logits(images)) < 1e-4


def test_cli_exports_and_predicts_with_onnx_runtime(tmp_path, capsys):
    checkpoint = save_model(build_model(TINY), tmp_path / "tiny.safetensors")
    onnx_path = tmp_path / "tiny.onnx"
    assert main(["export", "--checkpoint", str(checkpoint), "--output", str(onnx_path), "--size", "48", "64", "--check"]) == 0
    assert "max error" in capsys.readouterr().out
    image = tmp_path / "x.png"
    Image.fromarray(np.random.randint(0, 255, (37, 53, 3), np.uint8)).save(image)
    out = tmp_path / "out"
    assert main(["predict", str(image), "--runtime", "onnx", "--weights", str(onnx_path), "--output", str(out), "--flip"]) == 0
    labels = np.asarray(Image.open(out / "x_labels.png"))
    assert labels.shape == (37, 53) and labels.max() < TINY.num_classes
    assert main(["predict", str(image), "--runtime", "onnx", "--checkpoint", str(checkpoint), "--output", str(out)]) == 2


def test_cli_predicts_in_bf16(tmp_path):
    checkpoint = save_model(build_model(TINY), tmp_path / "tiny.safetensors")
    image = tmp_path / "x.png"
    Image.fromarray(np.random.randint(0, 255, (30, 41, 3), np.uint8)).save(image)
    assert main(["predict", str(image), "--checkpoint", str(checkpoint), "--precision", "bf16", "--output", str(tmp_path)]) == 0
    assert np.asarray(Image.open(tmp_path / "x_labels.png")).shape == (30, 41)
