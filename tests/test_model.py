"""Model variants by configuration, output contract, and inference helpers."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from isnet.model.config import ASPPContextConfig, AuxConfig, BackboneConfig, ILCMConfig, ISNetHeadConfig, ModelConfig, ShortcutConfig
from isnet.weights.released import from_released_config
from isnet.inference.engine import InferenceConfig, predict, sliding_windows, slide_inference, whole_inference
from isnet.model.segmentor import build_model

SMALL = ModelConfig(
    num_classes=7,
    backbone=BackboneConfig("resnet", 50, base_channels=4, stem_channels=8),
    head=ISNetHeadConfig(channels=16, transform_channels=8),
    aux=AuxConfig(channels=8),
)


@pytest.mark.parametrize(
    "image_context, semantic_context, has_stage1",
    [(ILCMConfig(), True, True), (ASPPContextConfig(dilations=(1, 2, 3, 4)), True, True), (None, False, False),
     (ILCMConfig(), False, False), (None, True, True)],
    ids=["isnet", "isnet-dagger", "baseline", "ilcm-only", "slcm-only"],
)
def test_variants_by_configuration(image_context, semantic_context, has_stage1):
    config = replace(SMALL, head=replace(SMALL.head, image_context=image_context, semantic_context=semantic_context))
    model = build_model(config).eval()
    with torch.no_grad():
        outputs = model(torch.randn(2, 3, 48, 40))
    assert set(outputs) == ({"out", "aux", "stage1"} if has_stage1 else {"out", "aux"})
    for logits in outputs.values():
        assert logits.shape == (2, 7, 6, 5)
    assert (model.head.semantic_context is not None) == semantic_context
    kinds = {ILCMConfig: "ImageLevelContext", ASPPContextConfig: "ASPP", type(None): "Identity"}
    assert type(model.head.image_context).__name__ == kinds[type(image_context)]


def test_shortcut_decoder_predicts_at_layer1_resolution():
    config = replace(SMALL, head=replace(SMALL.head, shortcut=ShortcutConfig()))
    with torch.no_grad():
        outputs = build_model(config).eval()(torch.randn(1, 3, 64, 48))
    assert outputs["out"].shape == (1, 7, 16, 12)
    assert outputs["stage1"].shape == (1, 7, 8, 6)


def test_output_stride_16():
    config = replace(SMALL, backbone=replace(SMALL.backbone, output_stride=16))
    with torch.no_grad():
        assert build_model(config).eval()(torch.randn(1, 3, 64, 64))["out"].shape == (1, 7, 4, 4)


def test_without_auxiliary_head():
    model = build_model(replace(SMALL, aux=None)).eval()
    with torch.no_grad():
        assert "aux" not in model(torch.randn(1, 3, 32, 32))


def test_released_config_with_inconsistent_channels_is_refused():
    fixture = Path(__file__).parent / "fixtures" / "reference" / "isnet_r18w16_shortcut_lip20.json"
    meta = json.loads(fixture.read_text())
    assert from_released_config(meta).head.shortcut
    meta["config"]["head"]["in_channels"] = 999
    with pytest.raises(ValueError, match="head_in=999"):
        from_released_config(meta)


def test_sliding_windows_cover_the_image_with_crop_sized_windows():
    windows = sliding_windows(100, 130, (64, 64), (48, 40))
    assert all(b - t == 64 and r - l == 64 for t, b, l, r in windows)
    covered = torch.zeros(100, 130)
    for t, b, l, r in windows:
        covered[t:b, l:r] += 1
    assert covered.min() >= 1
    assert sliding_windows(30, 20, (64, 64), (48, 48)) == [(0, 30, 0, 20)]  # smaller than one crop


def test_slide_on_an_image_smaller_than_the_crop_is_whole_inference():
    model = build_model(SMALL).eval()
    images = torch.randn(1, 3, 40, 36)
    torch.testing.assert_close(slide_inference(model, images, crop=(64, 64), stride=(32, 32)), whole_inference(model, images))


def test_flip_pairs_are_swapped_on_the_mirrored_prediction():
    class Mirror(nn.Module):
        """A 'model' whose class-0 score is high on the left half, class 1 elsewhere."""

        def logits(self, images: torch.Tensor) -> torch.Tensor:
            width = images.shape[-1]
            left = (torch.arange(width) < width // 2).float().expand(images.shape[0], 1, images.shape[2], width)
            return torch.cat([left, 1 - left, torch.zeros_like(left)], dim=1) * 10

    images = torch.zeros(1, 3, 8, 8)
    plain = predict(Mirror(), images, InferenceConfig(probs_before_resize=True))
    # The mirrored image's "left" is the true right; swapping (0, 1) restores agreement.
    swapped = predict(Mirror(), images, InferenceConfig(flip=True, flip_pairs=((0, 1),), probs_before_resize=True))
    torch.testing.assert_close(swapped, plain)
    unswapped = predict(Mirror(), images, InferenceConfig(flip=True, probs_before_resize=True))
    assert (unswapped - plain).abs().max() > 0.4


def _naive_multiscale_slide(model, images, config):
    """The protocol one window at a time: every scale, its mirror, every window alone."""
    height, width = images.shape[2:]
    total = 0
    for scale in config.scales:
        scaled = nn.functional.interpolate(images, scale_factor=scale, mode="bilinear", align_corners=False)
        for mirrored in (False, True):
            view = scaled.flip(-1) if mirrored else scaled
            scores = 0
            count = torch.zeros(*view.shape[2:], dtype=images.dtype)
            for t, b, l, r in sliding_windows(*view.shape[2:], config.crop, config.stride):
                logits = model.logits(view[:, :, t:b, l:r])
                # The released order (sssegmentation ssseg/modules/models/segmentors/base/base.py,
                # inference): a window's logits are resized to the crop, then softmaxed.
                logits = nn.functional.interpolate(logits, size=(b - t, r - l), mode="bilinear", align_corners=False)
                probs = logits.softmax(1)
                scores = scores + nn.functional.pad(probs, (l, view.shape[3] - r, t, view.shape[2] - b))
                count[t:b, l:r] += 1
            scores = nn.functional.interpolate(scores / count, size=(height, width), mode="bilinear", align_corners=False)
            total = total + (scores.flip(-1) if mirrored else scores)
    return total / (2 * len(config.scales))


def test_multiscale_slide_with_flip_batches_windows_across_scales():
    model = build_model(SMALL).double().eval()
    calls = []
    logits = model.logits
    model.logits = lambda crops: calls.append(tuple(crops.shape)) or logits(crops)
    images = torch.randn(1, 3, 60, 76, dtype=torch.float64)
    config = InferenceConfig(mode="slide", crop=(40, 40), stride=(24, 24), scales=(0.5, 0.75, 1.0), flip=True, probs_before_resize=True)
    with torch.no_grad():
        expected = _naive_multiscale_slide(model, images, config)
        calls.clear()
        torch.testing.assert_close(predict(model, images, config), expected, rtol=0, atol=1e-12)
    # 0.5: 30×38, smaller than the crop (one window); 0.75: 45×57 (2×2); 1.0: 60×76 (2×3).
    # The 40×40 windows of 0.75 and 1.0 share calls of up to 8 windows × (image + mirror).
    assert calls == [(2, 3, 30, 38), (16, 3, 40, 40), (4, 3, 40, 40)]
