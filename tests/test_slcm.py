"""The vectorised SLCM equals a plain per-class restatement of eqs. 13–16, forward and backward."""

from __future__ import annotations

import pytest
import torch

from isnet.model.context.slcm import SemanticLevelContext, region_representations


def per_class_regions(feats: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Eqs. 13–16 literally: loop over images and classes, softmax inside each region."""
    batch, channels, height, width = feats.shape
    result = torch.zeros_like(feats)
    for n in range(batch):
        pixel_feats = feats[n].reshape(channels, -1)  # (C, hw)
        pixel_logits = logits[n].reshape(logits.shape[1], -1)  # (K, hw)
        labels = pixel_logits.argmax(dim=0)
        region_map = torch.zeros_like(pixel_feats)
        for k in range(logits.shape[1]):
            mask = labels == k
            if not mask.any():
                continue
            weights = torch.softmax(pixel_logits[k, mask], dim=0)  # eqs. 14–15: softmax of D_ck
            representation = (pixel_feats[:, mask] * weights).sum(dim=1)  # eq. 15
            region_map = region_map + representation[:, None] * mask  # eq. 16
        result[n] = region_map.reshape(channels, height, width)
    return result


def logits_with_present_classes(batch, num_classes, height, width, present, generator):
    """Logits whose argmax uses only ``present`` classes (the rest are absent)."""
    logits = torch.randn(batch, num_classes, height, width, generator=generator, dtype=torch.float64)
    boost = torch.randint(0, len(present), (batch, height, width), generator=generator)
    boost = torch.tensor(present)[boost]
    logits.scatter_add_(1, boost.unsqueeze(1), torch.full((batch, 1, height, width), 6.0, dtype=torch.float64))
    return logits


@pytest.mark.parametrize(
    "batch, channels, num_classes, size, present",
    [
        (2, 8, 5, (6, 7), [0, 1, 2, 3, 4]),  # every class present
        (3, 16, 12, (5, 9), [1, 4, 11]),  # most classes absent
        (1, 4, 3, (1, 1), [2]),  # a single pixel
        (2, 512, 150, (16, 16), list(range(0, 150, 3))),  # many classes: K = 150, C = 512, 50 present
    ],
    ids=["all-present", "absent-classes", "one-pixel", "K150-C512"],
)
def test_vectorised_equals_per_class_loop(batch, channels, num_classes, size, present):
    generator = torch.Generator().manual_seed(1)
    feats = torch.randn(batch, channels, *size, generator=generator, dtype=torch.float64, requires_grad=True)
    logits = logits_with_present_classes(batch, num_classes, *size, present, generator).requires_grad_()
    upstream = torch.randn(batch, channels, *size, generator=generator, dtype=torch.float64)

    expected = per_class_regions(feats, logits)
    expected_feats_grad, expected_logits_grad = torch.autograd.grad(expected, (feats, logits), upstream)
    actual = region_representations(feats, logits)
    actual_feats_grad, actual_logits_grad = torch.autograd.grad(actual, (feats, logits), upstream)

    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(actual_feats_grad, expected_feats_grad, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(actual_logits_grad, expected_logits_grad, rtol=1e-10, atol=1e-10)
    # The softmax weights carry gradient into the logits of present classes only (a
    # one-pixel region has weight 1 whatever its logit).
    if size[0] * size[1] > 1:
        assert actual_logits_grad.abs().sum() > 0
    absent = sorted(set(range(num_classes)) - set(present))
    if absent:
        assert actual_logits_grad[:, absent].abs().max() == 0


def test_float32_matches_double_reference():
    generator = torch.Generator().manual_seed(2)
    feats = torch.randn(2, 64, 12, 12, generator=generator)
    logits = torch.randn(2, 40, 12, 12, generator=generator) * 3
    expected = per_class_regions(feats.double(), logits.double())
    torch.testing.assert_close(region_representations(feats, logits).double(), expected, rtol=1e-5, atol=1e-5)


def test_images_in_a_batch_do_not_mix():
    generator = torch.Generator().manual_seed(3)
    feats = torch.randn(3, 8, 5, 5, generator=generator)
    logits = torch.randn(3, 6, 5, 5, generator=generator)
    batched = region_representations(feats, logits)
    for n in range(3):
        torch.testing.assert_close(batched[n : n + 1], region_representations(feats[n : n + 1], logits[n : n + 1]))


def test_module_is_differentiable_end_to_end():
    module = SemanticLevelContext(channels=16, transform_channels=8).eval()
    feats = torch.randn(2, 16, 6, 6, requires_grad=True)
    logits = torch.randn(2, 7, 6, 6, requires_grad=True)
    image_context = torch.randn(2, 16, 6, 6, requires_grad=True)
    out = module(feats, logits, image_context)
    assert out.shape == (2, 16, 6, 6)
    out.square().sum().backward()
    for tensor in (feats, logits, image_context):
        assert tensor.grad is not None and tensor.grad.abs().sum() > 0
