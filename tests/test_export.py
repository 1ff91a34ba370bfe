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


def test_onnx_has_dynamic_batch_and_size_and_no_control_flow(tiny):
    model, path = tiny
    assert control_flow_ops(path) == []
    session = OnnxSegmentor(path)
    assert session.config == TINY
    # 57×91: ILCM's 96 queries in 16 blocks of 6; 17×23: 9 queries, so 7 of the blocks are empty.
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


def test_the_onnx_graph_computes_ilcm_attention_in_query_blocks(tiny, tmp_path):
    """Segmentor.exportable() chooses the kernel (the model reads no export state): ILCM's
    softmax over all pixels is split into EXPORT_QUERY_BLOCKS blocks, and into one when asked."""
    import onnx

    from isnet.model.context.attention import EXPORT_QUERY_BLOCKS

    model, path = tiny
    whole = export_onnx(model, tmp_path / "one_block.onnx", sample_size=(64, 64), query_blocks=1)
    softmaxes = {name: sum(node.op_type == "Softmax" for node in onnx.load(str(graph)).graph.node)
                 for name, graph in (("split", path), ("whole", whole))}
    assert softmaxes["split"] - softmaxes["whole"] == EXPORT_QUERY_BLOCKS - 1
    assert model.head.image_context.attention.export_query_blocks is None  # the model itself is left as it was


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
