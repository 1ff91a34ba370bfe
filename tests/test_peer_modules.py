"""Peer context modules and heads: contract, gradients, determinism, and the attention maths.

The attention tests restate each block's published equations naively (explicit loops over
pixels, channels or regions, in float64) on top of the block's own projection layers, and
compare with the vectorised module.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from isnet.model.context.ann import AsymmetricNonLocal
from isnet.model.context.apcnet import AdaptiveContextModule
from isnet.model.context.ccnet import CrissCrossAttention, RecurrentCrissCrossAttention
from isnet.model.context.danet import ChannelAttention, PositionAttention
from isnet.model.context.dnl import DisentangledNonLocal2d
from isnet.model.context.nonlocal_block import NonLocal2d
from isnet.model.context.ocr import ObjectContext
from isnet.model.context.ppm import PyramidPoolingModule
from isnet.model.config import PEER_HEAD_CONFIGS
from isnet.model.heads.peers import build_peer_head

IN_CHANNELS, CHANNELS, NUM_CLASSES = 32, 16, 5
SMALL_WIDTHS = {"ocr": {"key_channels": 8}, "ann": {"project_channels": 8}}
PEER_HEADS = sorted(PEER_HEAD_CONFIGS)


def small_head(name: str) -> nn.Module:
    config = PEER_HEAD_CONFIGS[name](channels=CHANNELS, **SMALL_WIDTHS.get(name, {}))
    return build_peer_head(config, (8, 12, IN_CHANNELS // 2, IN_CHANNELS), NUM_CLASSES)


def small_features(batch: int = 2, size: int = 8) -> list[torch.Tensor]:
    """layer1..layer4 with layer3 = layer4 / 2 channels, layer3/4 at the same stride."""
    return [
        torch.randn(batch, 8, 2 * size, 2 * size),
        torch.randn(batch, 12, size, size),
        torch.randn(batch, IN_CHANNELS // 2, size, size, requires_grad=True),
        torch.randn(batch, IN_CHANNELS, size, size, requires_grad=True),
    ]


def wake(module: nn.Module) -> nn.Module:
    """Move the blocks off their identity initialisation (gamma = 0, zero BN scale)."""
    with torch.no_grad():
        for name, param in module.named_parameters():
            if name.endswith("gamma"):
                param.fill_(0.7)
        for sub in module.modules():
            if isinstance(sub, NonLocal2d):
                sub.out_project[1].weight.fill_(1.0)
    return module


def test_registry_keys():
    expected = {"ppm", "aspp", "ocr", "ccnet", "danet", "ann", "nonlocal", "dnl", "apcnet"}
    assert set(PEER_HEADS) == expected


@pytest.mark.parametrize("name", sorted(PEER_HEADS))
def test_head_output_shapes(name):
    head = small_head(name).eval()
    with torch.no_grad():
        outputs = head(small_features(size=6))
    assert outputs["out"].shape == (2, NUM_CLASSES, 6, 6)
    assert set(outputs) == ({"out", "stage1"} if name == "ocr" else {"out"})
    if name == "ocr":
        assert outputs["stage1"].shape == (2, NUM_CLASSES, 6, 6)


@pytest.mark.parametrize("name", sorted(PEER_HEADS))
def test_head_gradients_reach_inputs(name):
    head = wake(small_head(name)).train()
    features = small_features()
    outputs = head(features)
    loss = sum((torch.randn_like(logits) * logits).sum() for logits in outputs.values())
    loss.backward()
    reads_layer3 = name in {"ocr", "ann"}
    for feature in features[2 if reads_layer3 else 3 :]:
        assert feature.grad is not None and torch.isfinite(feature.grad).all()
        assert feature.grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(PEER_HEADS))
def test_head_is_deterministic_in_eval(name):
    head = wake(small_head(name)).eval()
    features = small_features()
    with torch.no_grad():
        first, second = head(features), head(features)
    for key in first:
        assert torch.equal(first[key], second[key])


def test_pyramid_pooling_bin1_branch_is_the_global_mean():
    ppm = PyramidPoolingModule(IN_CHANNELS, CHANNELS).eval()
    x = torch.randn(1, IN_CHANNELS, 7, 5)
    pooled = ppm.branches[0][0](x)
    torch.testing.assert_close(pooled, x.mean(dim=(2, 3), keepdim=True))
    assert ppm(x).shape == (1, CHANNELS, 7, 5)


# ----------------------------------------------------------------------------------------
# Naive restatements. x is (C, H, W) for one image; loops over pixels / channels / regions.


def naive_softmax(values: list[torch.Tensor]) -> list[torch.Tensor]:
    peak = max(values)
    exps = [torch.exp(v - peak) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


def pixels(height: int, width: int) -> list[tuple[int, int]]:
    return [(h, w) for h in range(height) for w in range(width)]


def test_nonlocal_matches_naive():
    block = wake(NonLocal2d(8, reduction=2)).double().eval()
    x = torch.randn(1, 8, 4, 5, dtype=torch.float64)
    theta, phi, g = block.theta(x)[0], block.phi(x)[0], block.g(x)[0]
    d = theta.shape[0]
    y = torch.zeros_like(g)
    for i in pixels(4, 5):
        logits = [theta[:, i[0], i[1]] @ phi[:, j[0], j[1]] / math.sqrt(d) for j in pixels(4, 5)]
        weights = naive_softmax(logits)
        y[:, i[0], i[1]] = sum(wj * g[:, j[0], j[1]] for wj, j in zip(weights, pixels(4, 5)))
    expected = x + block.out_project(y[None])
    torch.testing.assert_close(block(x), expected)


def test_disentangled_nonlocal_matches_naive():
    block = wake(DisentangledNonLocal2d(8, reduction=2, temperature=0.05)).double().eval()
    x = torch.randn(1, 8, 4, 3, dtype=torch.float64)
    positions = pixels(4, 3)
    theta, phi, g = block.theta(x)[0], block.phi(x)[0], block.g(x)[0]
    theta_mean = sum(theta[:, j[0], j[1]] for j in positions) / len(positions)
    phi_mean = sum(phi[:, j[0], j[1]] for j in positions) / len(positions)
    d = theta.shape[0]
    mask = block.unary_mask(x)[0, 0]
    unary_weights = naive_softmax([mask[j] for j in positions])
    unary = sum(wj * g[:, j[0], j[1]] for wj, j in zip(unary_weights, positions))
    y = torch.zeros_like(g)
    for i in positions:
        logits = [
            (theta[:, i[0], i[1]] - theta_mean)
            @ (phi[:, j[0], j[1]] - phi_mean)
            / (math.sqrt(d) * 0.05)
            for j in positions
        ]
        weights = naive_softmax(logits)
        y[:, i[0], i[1]] = sum(wj * g[:, j[0], j[1]] for wj, j in zip(weights, positions)) + unary
    expected = x + block.out_project(y[None])
    torch.testing.assert_close(block(x), expected)


def naive_criss_cross(block: CrissCrossAttention, x: torch.Tensor) -> torch.Tensor:
    q, k, v = block.query(x)[0], block.key(x)[0], block.value(x)[0]
    _, height, width = q.shape
    out = torch.zeros_like(x[0])
    for h, w in pixels(height, width):
        # Its column without itself, then its whole row (itself included once).
        keys = [(j, w) for j in range(height) if j != h] + [(h, j) for j in range(width)]
        weights = naive_softmax([q[:, h, w] @ k[:, a, b] for a, b in keys])
        out[:, h, w] = sum(wj * v[:, a, b] for wj, (a, b) in zip(weights, keys))
    return block.gamma * out[None] + x


def test_criss_cross_matches_naive():
    block = wake(CrissCrossAttention(16)).double().eval()
    x = torch.randn(1, 16, 4, 6, dtype=torch.float64)
    torch.testing.assert_close(block(x), naive_criss_cross(block, x))


def test_recurrent_criss_cross_applies_the_same_block_twice():
    recurrent = wake(RecurrentCrissCrossAttention(16, recurrence=2)).double().eval()
    x = torch.randn(1, 16, 5, 3, dtype=torch.float64)
    once = naive_criss_cross(recurrent.attention, x)
    torch.testing.assert_close(recurrent(x), naive_criss_cross(recurrent.attention, once))


def test_position_attention_matches_naive():
    block = wake(PositionAttention(16)).double().eval()
    x = torch.randn(1, 16, 3, 4, dtype=torch.float64)
    q, k, v = block.query(x)[0], block.key(x)[0], block.value(x)[0]
    positions = pixels(3, 4)
    out = torch.zeros_like(x[0])
    for i in positions:
        weights = naive_softmax([q[:, i[0], i[1]] @ k[:, j[0], j[1]] for j in positions])
        out[:, i[0], i[1]] = sum(wj * v[:, j[0], j[1]] for wj, j in zip(weights, positions))
    torch.testing.assert_close(block(x), block.gamma * out[None] + x)


def test_channel_attention_matches_naive():
    block = wake(ChannelAttention()).double().eval()
    x = torch.randn(1, 6, 3, 4, dtype=torch.float64)
    feats = x[0].reshape(6, -1)
    out = torch.zeros_like(feats)
    for i in range(6):
        energy = [feats[i] @ feats[j] for j in range(6)]
        # DANet's published form: softmax over (max energy − energy).
        weights = naive_softmax([max(energy) - e for e in energy])
        out[i] = sum(weights[j] * feats[j] for j in range(6))
    torch.testing.assert_close(block(x), block.gamma * out.view_as(x) + x)


def naive_adaptive_pool_cells(x: torch.Tensor, scale: int) -> list[torch.Tensor]:
    """Adaptive average pooling cells, row-major; bin i spans floor(i·n/s) … ceil((i+1)·n/s)."""
    _, height, width = x.shape
    cells = []
    for a in range(scale):
        for b in range(scale):
            h0, h1 = (a * height) // scale, -((-(a + 1) * height) // scale)
            w0, w1 = (b * width) // scale, -((-(b + 1) * width) // scale)
            cells.append(x[:, h0:h1, w0:w1].mean(dim=(1, 2)))
    return cells


@pytest.mark.parametrize("share", [False, True])
def test_asymmetric_nonlocal_matches_naive(share):
    scales = (1, 2, 3)
    query_in, key_in = (6, 6) if share else (6, 10)
    block = AsymmetricNonLocal(query_in, key_in, 4, 7, scales, share_key_query=share)
    block = block.double().eval()
    query_feats = torch.randn(1, query_in, 5, 7, dtype=torch.float64)
    key_feats = query_feats if share else torch.randn(1, key_in, 5, 7, dtype=torch.float64)
    q = block.query_project(query_feats)[0]
    k_map, v_map = block.key_project(key_feats)[0], block.value_project(key_feats)[0]
    keys = [cell for s in scales for cell in naive_adaptive_pool_cells(k_map, s)]
    values = [cell for s in scales for cell in naive_adaptive_pool_cells(v_map, s)]
    assert len(keys) == 1 + 4 + 9
    context = torch.zeros(4, 5, 7, dtype=torch.float64)
    for h, w in pixels(5, 7):
        weights = naive_softmax([q[:, h, w] @ key / 2.0 for key in keys])  # 4 ** -0.5
        context[:, h, w] = sum(wj * value for wj, value in zip(weights, values))
    torch.testing.assert_close(block(query_feats, key_feats), block.out_project(context[None]))


def test_object_context_matches_naive():
    block = ObjectContext(6, 4).double().eval()
    pixels_in = torch.randn(1, 6, 3, 5, dtype=torch.float64)
    logits = torch.randn(1, 3, 3, 5, dtype=torch.float64)
    positions = pixels(3, 5)
    regions = torch.zeros(1, 6, 3, 1, dtype=torch.float64)
    for k in range(3):  # soft object region k: spatial softmax of logit k over all pixels
        weights = naive_softmax([logits[0, k, h, w] for h, w in positions])
        regions[0, :, k, 0] = sum(
            wj * pixels_in[0, :, h, w] for wj, (h, w) in zip(weights, positions)
        )
    attention = block.attention
    q = attention.query_project(pixels_in)[0]
    keys = attention.key_project(regions)[0, :, :, 0]
    values = attention.value_project(regions)[0, :, :, 0]
    context = torch.zeros(4, 3, 5, dtype=torch.float64)
    for h, w in positions:
        weights = naive_softmax([q[:, h, w] @ keys[:, k] / 2.0 for k in range(3)])  # 4 ** -0.5
        context[:, h, w] = sum(weights[k] * values[:, k] for k in range(3))
    expected = block.fuse(torch.cat([attention.out_project(context[None]), pixels_in], dim=1))
    torch.testing.assert_close(block(pixels_in, logits), expected)


def test_adaptive_context_module_matches_naive():
    block = AdaptiveContextModule(6, 4, pool_scale=2).double().eval()
    x = torch.randn(1, 6, 4, 5, dtype=torch.float64)
    regions = [
        block.reduce_regions(cell.view(1, 6, 1, 1))[0, :, 0, 0]
        for cell in naive_adaptive_pool_cells(x[0], 2)
    ]
    feats = block.reduce_input(x)
    global_feature = block.global_project(feats.mean(dim=(2, 3), keepdim=True))
    weights = torch.sigmoid(block.affinity(feats + global_feature))[0]
    context = torch.zeros(4, 4, 5, dtype=torch.float64)
    for h, w in pixels(4, 5):
        context[:, h, w] = sum(weights[k, h, w] * regions[k] for k in range(4))
    expected = block.fuse(torch.relu(block.residual_project(context[None]) + feats))
    torch.testing.assert_close(block(x), expected)
