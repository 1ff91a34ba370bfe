"""Every fast path computes what the plain model computes (float32: to round-off).

Region attention in SLCM (eval and training, gradients and BatchNorm statistics included),
BatchNorm folding, channels-last, bf16 autocast, torch.compile, activation checkpointing,
the fused optimizer, and the benchmark's restatement of the published forward pass.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from benchmarks.published import PublishedISNet, published_region_map
from isnet.weights.released import load_released_checkpoint
from isnet.model.config import BackboneConfig, ISNetHeadConfig, ModelConfig, ShortcutConfig
from isnet.weights.released import from_released_config
from isnet.model.context.attention import blockwise_attention, explicit_attention
from isnet.model.context.slcm import SemanticLevelContext, find_regions, region_representations
from isnet.inference.engine import predict
from isnet.training.losses import segmentation_loss
from isnet.utils.numerics import relative_error
from isnet.deploy.runtimes.pytorch import FastSegmentor, fold_batchnorm, use_region_attention
from isnet.model.segmentor import build_model
from reference_helpers import msflip_config

FIXTURE_DIR = Path(os.environ.get("ISNET_REFERENCE_FIXTURES", Path(__file__).parent / "fixtures" / "reference"))
STEMS = sorted(p.stem for p in FIXTURE_DIR.glob("*.npz") if p.with_suffix(".pth").exists())
LOGIT_TOLERANCE = 1e-4  # the conformance tests' tolerance, of the largest magnitude

TINY = ModelConfig(
    num_classes=7,
    backbone=BackboneConfig("resnet", 18, base_channels=8, stem_channels=8),
    head=ISNetHeadConfig(channels=16, transform_channels=8),
)
TINY_BOTTLENECK = replace(TINY, backbone=BackboneConfig("resnet", 50, base_channels=4, stem_channels=8))
TINY_RESNEST = replace(TINY, backbone=BackboneConfig("resnest", 50, base_channels=4, stem_channels=8), head=ISNetHeadConfig(channels=16, transform_channels=8, shortcut=ShortcutConfig()))


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: no thread team to wake per op


def randomise_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial running statistics and affines, so folding has something to fold."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.2, generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0, 0.1, generator=generator)
    return model


def logits_with_absent_classes(batch, num_classes, size, present, generator, dtype=torch.float64):
    logits = torch.randn(batch, num_classes, *size, generator=generator, dtype=dtype)
    boost = torch.tensor(present)[torch.randint(0, len(present), (batch, *size), generator=generator)]
    logits.scatter_add_(1, boost.unsqueeze(1), torch.full((batch, 1, *size), 6.0, dtype=dtype))
    return logits


def fixture_model(stem: str) -> tuple[nn.Module, dict, dict]:
    meta = json.loads((FIXTURE_DIR / f"{stem}.json").read_text())
    model = build_model(from_released_config(meta))
    load_released_checkpoint(model, FIXTURE_DIR / f"{stem}.pth")
    return model.eval(), meta, dict(np.load(FIXTURE_DIR / f"{stem}.npz"))


# ----------------------------------------------------------------------------- SLCM regions


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_region_attention_equals_pixel_attention(training):
    generator = torch.Generator().manual_seed(0)
    pixels = randomise_batchnorm(SemanticLevelContext(16, 8, attend_over="pixels")).double().train(training)
    regions = copy.deepcopy(pixels)
    regions.attend_over = "regions"
    feats = torch.randn(2, 16, 6, 7, generator=generator, dtype=torch.float64, requires_grad=True)
    logits = logits_with_absent_classes(2, 9, (6, 7), [0, 2, 3, 7], generator).requires_grad_()
    image_context = torch.randn(2, 16, 6, 7, generator=generator, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(2, 16, 6, 7, generator=generator, dtype=torch.float64)

    results = []
    for module in (pixels, regions):
        out = module(feats, logits, image_context)
        inputs = (feats, logits, image_context, *module.parameters())
        results.append((out, torch.autograd.grad(out, inputs, upstream)))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-10, atol=1e-10)
    for actual, expected in zip(results[1][1], results[0][1]):
        torch.testing.assert_close(actual, expected, rtol=1e-9, atol=1e-10)
    # Training-mode BatchNorm saw the same batch statistics.
    for (name, actual), (_, expected) in zip(regions.state_dict().items(), pixels.state_dict().items()):
        torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-10, msg=name)


def test_regions_summarise_the_argmax():
    generator = torch.Generator().manual_seed(1)
    feats = torch.randn(2, 5, 4, 6, generator=generator)
    logits = torch.randn(2, 8, 4, 6, generator=generator)
    regions = find_regions(feats, logits)
    labels = logits.flatten(2).argmax(1)
    assert torch.equal(regions.labels, labels)
    assert torch.equal(regions.counts, torch.stack([torch.bincount(l, minlength=8) for l in labels]).float())
    absent = regions.counts == 0
    assert torch.all(regions.representations[absent] == 0)
    torch.testing.assert_close(region_representations(feats, logits), published_region_map(feats, logits), rtol=1e-5, atol=1e-6)


def test_regions_keep_float32_under_autocast():
    feats, logits = torch.randn(1, 4, 5, 5), torch.randn(1, 3, 5, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        regions = find_regions(feats.bfloat16(), logits.bfloat16())
    assert regions.representations.dtype == torch.float32


def test_blockwise_attention_equals_fused_attention():
    generator = torch.Generator().manual_seed(4)
    query, key, value = (torch.randn(2, 1, 300, 16, generator=generator, dtype=torch.float64) for _ in range(3))
    expected = torch.nn.functional.scaled_dot_product_attention(query, key, value)
    torch.testing.assert_close(blockwise_attention(query, key, value), expected, rtol=1e-10, atol=1e-12)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the reduced-precision path it serves
        actual = blockwise_attention(query.bfloat16(), key.bfloat16(), value.bfloat16())
    assert actual.dtype == torch.bfloat16
    assert relative_error(actual, expected) < 2e-2


def test_explicit_attention_equals_fused_attention():
    generator = torch.Generator().manual_seed(5)
    query = torch.randn(2, 1, 300, 8, generator=generator, dtype=torch.float64)
    key, value = (torch.randn(2, 1, 40, 8, generator=generator, dtype=torch.float64) for _ in range(2))
    expected = torch.nn.functional.scaled_dot_product_attention(query, key, value)
    torch.testing.assert_close(explicit_attention(query, key, value), expected, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- folding, layout, precision


@pytest.mark.parametrize("config", [TINY, TINY_BOTTLENECK, TINY_RESNEST], ids=["basic", "bottleneck", "resnest-shortcut"])
def test_fold_batchnorm_keeps_outputs(config):
    model = randomise_batchnorm(build_model(config)).eval()
    images = torch.randn(2, 3, 45, 61)
    with torch.no_grad():
        expected = model(images)
        folded = fold_batchnorm(copy.deepcopy(model))
        actual = folded(images)
    assert not [m for m in folded.modules() if isinstance(m, nn.BatchNorm2d)], "every BatchNorm is folded"
    for name in expected:
        assert relative_error(actual[name], expected[name]) < 1e-5, name


@pytest.mark.parametrize("stem", STEMS)
def test_fast_float32_matches_the_reference_fixture(stem):
    model, meta, arrays = fixture_model(stem)
    fast = FastSegmentor(model, precision="fp32")  # region attention, folded, channels-last
    image = torch.from_numpy(arrays["image"])
    assert relative_error(fast.logits(image), arrays["logits_stage2"]) <= LOGIT_TOLERANCE
    config = msflip_config(meta)
    assert relative_error(predict(fast, image, config), arrays["seg_logit_msflip"]) <= LOGIT_TOLERANCE


@pytest.mark.parametrize("stem", STEMS)
def test_bf16_stays_close_to_float32(stem):
    model, _, arrays = fixture_model(stem)
    image = torch.from_numpy(arrays["image"])
    expected = FastSegmentor(model, precision="fp32").logits(image)
    actual = FastSegmentor(model, precision="bf16").logits(image)
    assert actual.dtype == torch.float32
    assert relative_error(actual, expected) < 2e-2
    # Random fixture weights leave near-ties; bf16 may flip only pixels whose float32
    # margin (best − second best logit) is within twice its largest logit error.
    top2 = expected.topk(2, dim=1).values
    confident = (top2[:, 0] - top2[:, 1]) > 2 * (actual - expected).abs().max()
    assert confident.any()
    assert torch.equal(actual.argmax(1)[confident], expected.argmax(1)[confident])


def test_bf16_computes_the_logits_in_float32():
    """The stem and every classifier's last convolution stay float32 under bf16 autocast."""
    model = build_model(TINY_RESNEST).eval()  # the shortcut decoder ends in a ConvClassifier
    fast = FastSegmentor(model, precision="bf16")
    dtypes = {}
    for name, module in fast.model.named_modules():
        if isinstance(module, nn.Conv2d):
            module.register_forward_hook(lambda m, args, out, name=name: dtypes.__setitem__(name, out.dtype))
    fast.logits(torch.randn(1, 3, 40, 40))
    float32 = {name for name, dtype in dtypes.items() if dtype == torch.float32}
    assert float32 == {
        "backbone.stem.module.0", "backbone.stem.module.3", "backbone.stem.module.6",
        "head.classifier_stage1.4.module", "head.decoder.classifier.4.module",
    }
    assert dtypes["head.bottleneck.0"] == torch.bfloat16


def test_plain_options_and_refusals():
    model = build_model(TINY).eval()
    images = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        expected = model.logits(images)
    plain = FastSegmentor(model, channels_last=False, fold_bn=False, region_attention=False)
    torch.testing.assert_close(plain.logits(images), expected, rtol=1e-6, atol=1e-6)
    assert plain.config == TINY
    with pytest.raises(RuntimeError):
        plain.train()
    with pytest.raises(ValueError):
        FastSegmentor(model, precision="fp16").logits(images)  # fp16 autocast is for GPUs
    with pytest.raises(ValueError):
        FastSegmentor(model, precision="int8")


def test_compiled_region_attention_matches_eager():
    """torch.compile (inductor, frozen weights) of SLCM's region path: the code specific to us."""
    generator = torch.Generator().manual_seed(3)
    module = fold_batchnorm(randomise_batchnorm(SemanticLevelContext(16, 8, attend_over="regions")).eval())
    feats = torch.randn(1, 16, 9, 11, generator=generator)
    logits = logits_with_absent_classes(1, 6, (9, 11), [1, 2, 5], generator, dtype=torch.float32)
    image_context = torch.randn(1, 16, 9, 11, generator=generator)
    with torch.no_grad():
        expected = module(feats, logits, image_context)
        compiled = torch.compile(module, options={"freezing": True})
        assert relative_error(compiled(feats, logits, image_context), expected) < 1e-5


@pytest.mark.parametrize("precision, tolerance", [("fp32", 1e-5), ("bf16", 1e-3)])
def test_compiled_segmentor_matches_eager(precision, tolerance):
    """The whole fast model through inductor, float32 classifiers and stem included under bf16."""
    model = randomise_batchnorm(build_model(TINY)).eval()
    images = torch.randn(1, 3, 32, 48)
    expected = FastSegmentor(model, precision=precision).logits(images)
    actual = FastSegmentor(model, precision=precision, compile=True).logits(images)
    assert relative_error(actual, expected) < tolerance


# ----------------------------------------------------------------------------- training


def _train_step(model: nn.Module, images, labels, precision="fp32", fused=False):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4, **({"fused": True} if fused else {}))
    torch.manual_seed(0)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        outputs = model(images)
    loss = segmentation_loss(outputs, labels)["total"]
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    optimizer.step()
    return loss.detach(), grads


def test_activation_checkpointing_same_step():
    plain = randomise_batchnorm(build_model(TINY)).train()
    checkpointed = build_model(TINY).set_grad_checkpointing(True).train()
    checkpointed.load_state_dict(plain.state_dict())
    images, labels = torch.randn(2, 3, 32, 32), torch.randint(0, 7, (2, 32, 32))
    loss, grads = _train_step(plain, images, labels)
    loss_c, grads_c = _train_step(checkpointed, images, labels)
    torch.testing.assert_close(loss_c, loss)
    for actual, expected in zip(grads_c, grads):
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-7)
    # Recomputation does not update the BatchNorm statistics a second time.
    for (name, actual), (_, expected) in zip(checkpointed.state_dict().items(), plain.state_dict().items()):
        torch.testing.assert_close(actual, expected, rtol=1e-6, atol=1e-7, msg=name)


def test_fast_training_step_matches_plain():
    plain = use_region_attention(randomise_batchnorm(build_model(TINY)), enabled=False).train()
    fast = use_region_attention(copy.deepcopy(plain)).to(memory_format=torch.channels_last)
    images, labels = torch.randn(2, 3, 32, 40), torch.randint(0, 7, (2, 32, 40))
    loss, grads = _train_step(plain, images, labels)
    loss_f, grads_f = _train_step(fast, images.contiguous(memory_format=torch.channels_last), labels, fused=True)
    torch.testing.assert_close(loss_f, loss, rtol=1e-5, atol=1e-6)
    for actual, expected in zip(grads_f, grads):
        torch.testing.assert_close(actual, expected, rtol=1e-3, atol=1e-5)
    for actual, expected in zip(fast.parameters(), plain.parameters()):  # the fused SGD update
        torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-6)
    bf16 = use_region_attention(copy.deepcopy(plain))
    loss_b, grads_b = _train_step(bf16, images, labels, precision="bf16")
    assert abs(loss_b.item() / loss.item() - 1) < 2e-2
    assert all(torch.isfinite(g).all() for g in grads_b)


# ----------------------------------------------------------------------------- the benchmark's baseline


def test_published_restatement_equals_the_model():
    model = randomise_batchnorm(build_model(TINY)).eval()
    images = torch.randn(2, 3, 33, 47)
    with torch.no_grad():
        expected = model(images)
        actual = PublishedISNet(model)(images)
    assert relative_error(actual["out"], expected["out"]) < 1e-5
    assert relative_error(actual["stage1"], expected["stage1"]) < 1e-5
    for module in model.modules():
        if isinstance(module, nn.Dropout2d):
            module.p = 0.0
    model.train()
    torch.manual_seed(0)
    expected = model(images)
    torch.manual_seed(0)
    actual = PublishedISNet(model).train()(images)
    for name in ("out", "stage1", "aux"):
        assert relative_error(actual[name], expected[name]) < 1e-5, name


def test_evaluation_runs_a_fast_segmentor_and_scores_as_the_model_does(tmp_path):
    """``isnet eval --precision bf16`` (and ``auto``) evaluate a FastSegmentor: it starts in eval
    mode, so the evaluation loop's restoring of the mode it found does not try to train it."""
    from isnet.data import synthetic
    from isnet.evaluation import evaluate
    from isnet.training.config import DataConfig

    synthetic.write_dataset(tmp_path, num_train=1, num_val=2, height=48, width=64)
    dataset = DataConfig(dataset="folder", root=str(tmp_path)).build("val", train=False)
    config = replace(TINY, num_classes=dataset.info.num_classes)
    model = randomise_batchnorm(build_model(config)).eval()
    fast = FastSegmentor(model)
    assert not fast.training
    expected = evaluate(model, dataset, config.num_classes).matrix
    assert expected.sum() > 0
    assert torch.equal(evaluate(fast, dataset, config.num_classes).matrix, expected)
    assert not fast.training
