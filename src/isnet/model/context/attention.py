"""The attention block shared by the image-level and semantic-level context modules (eqs. 4–5, 7–8)."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from isnet.model.layers import ConvBNReLU


def full_precision(device: torch.device) -> AbstractContextManager:
    """Suspends autocast on ``device`` (for reductions that must stay in float32)."""
    if device.type in ("cpu", "cuda") and torch.is_autocast_enabled(device.type):
        return torch.autocast(device.type, enabled=False)
    return nullcontext()


# Scores held at once by :func:`blockwise_attention`: query blocks of about 4M scores
# (8 MB in bfloat16, 16 MB in float32) keep the working set small whatever HW is.
SCORES_PER_BLOCK = 2**22


def _use_query_blocks(query: Tensor) -> bool:
    # On CPU the fused kernel computes bfloat16 no faster than float32 (about 60 GFLOP/s
    # on one AVX-512 core); bfloat16 matrix products reach 130. The fused kernel stays for
    # training (its backward keeps no scores) and inside torch.compile (the block loop
    # would be unrolled).
    return (
        query.device.type == "cpu"
        and query.dtype in (torch.bfloat16, torch.float16)
        and not (torch.is_grad_enabled() and query.requires_grad)
        and not torch.compiler.is_compiling()
    )


def blockwise_attention(query: Tensor, key: Tensor, value: Tensor, *, scale: float | None = None) -> Tensor:
    """``softmax(Q Kᵀ · scale) V`` a block of queries at a time (``scale`` defaults to ``1/√T``).

    Each block's scores (block × HW, never HW×HW) come from one matrix product in the
    inputs' dtype, are softmaxed (accumulating in float32) and multiplied by ``V``. Exact
    up to the rounding of the scores to the inputs' dtype. Serves reduced-precision CPU
    inference and values wider than the queries (which the fused kernels refuse).
    """
    length = query.shape[-2]
    block = max(64, min(length, SCORES_PER_BLOCK // max(key.shape[-2], 1)))
    query = query * (query.shape[-1] ** -0.5 if scale is None else scale)
    key_t = key.transpose(-1, -2)
    context = torch.empty(*query.shape[:-1], value.shape[-1], dtype=query.dtype, device=query.device)
    with full_precision(query.device):  # explicit dtypes below; keep autocast out of the way
        for start in range(0, length, block):
            scores = torch.matmul(query[..., start : start + block, :], key_t)
            context[..., start : start + block, :] = torch.matmul(scores.softmax(dim=-1), value)
    return context


def bounded_attention(query: Tensor, key: Tensor, value: Tensor, *, scale: float | None = None) -> Tensor:
    """``softmax(Q Kᵀ · scale) V`` for (N, heads, L, T) inputs, never holding an L×S score matrix.

    The fused scaled-dot-product kernels (flash attention on CPU) keep no score matrix, but
    PyTorch takes them only when the last dimension of every input is dense (stride 1) and
    the values are as wide as the queries; otherwise it falls back to its math kernel,
    which builds the whole L×S matrix. Features in the default (not channels-last) layout
    flatten to a strided last dimension, so the inputs are made contiguous here; values of
    another width, and bfloat16/float16 CPU inference, go through :func:`blockwise_attention`.
    """
    if value.shape[-1] != query.shape[-1] or _use_query_blocks(query):
        return blockwise_attention(query, key, value, scale=scale)
    return F.scaled_dot_product_attention(query.contiguous(), key.contiguous(), value.contiguous(), scale=scale)


def pixels_as_tokens(feats: Tensor) -> Tensor:
    """(N, d, h, w) → (N, 1, hw, d): one attention head over the pixels."""
    return feats.flatten(2).transpose(1, 2).unsqueeze(1)


def tokens_as_map(tokens: Tensor, height: int, width: int) -> Tensor:
    """(N, 1, hw, d) → (N, d, h, w), the inverse of :func:`pixels_as_tokens`."""
    return tokens.squeeze(1).transpose(1, 2).reshape(tokens.shape[0], -1, height, width)


def explicit_attention(query: Tensor, key: Tensor, value: Tensor) -> Tensor:
    """``softmax(Q Kᵀ / √T) V`` as two matrix products and a softmax, for exported graphs: ONNX (opset 17)
    has no fused attention operator. Eager, this holds the whole L×S score matrix; an exporter
    rewrites the chain to take a block of queries at a time (:mod:`isnet.deploy.onnx_attention`)."""
    scores = torch.matmul(query * query.shape[-1] ** -0.5, key.transpose(-1, -2))
    return torch.matmul(scores.softmax(dim=-1), value)


class SelfAttention(nn.Module):
    """Attention of every query pixel over the key/value pixels, with CBR projections.

    Query: two 1×1 CBRs on ``query_feats``; key: two 1×1 CBRs and value: one 1×1 CBR on
    ``key_feats``; ``softmax(QᵀK / √T) V`` followed by a 1×1 CBR back to ``out_channels``.
    The product runs through :func:`bounded_attention` (the fused scaled-dot-product kernel,
    or for bfloat16 inference on CPU a block of queries at a time), so the HW×HW matrix is
    never materialised, whatever the features' memory layout.
    """

    def __init__(
        self,
        query_channels: int,
        key_channels: int,
        transform_channels: int,
        out_channels: int,
    ) -> None:
        super().__init__()
        t = transform_channels
        # The released models' projections: eqs. (4)–(5) compare R and the context directly, scaled by √C.
        self.query_project = nn.Sequential(ConvBNReLU(query_channels, t), ConvBNReLU(t, t))
        self.key_project = nn.Sequential(ConvBNReLU(key_channels, t), ConvBNReLU(t, t))
        self.value_project = ConvBNReLU(key_channels, t)
        self.out_project = ConvBNReLU(t, out_channels)
        # A kernel choice, not part of the model: set by Segmentor.exportable() for graphs
        # without a fused attention operator (ONNX); False: the fused kernel.
        self.explicit_attention = False

    def forward(self, query_feats: Tensor, key_feats: Tensor) -> Tensor:
        """Every pixel of ``query_feats`` (N, Cq, h, w) attends over every pixel of ``key_feats``."""
        key, value = self._keys_and_values(key_feats)
        return self._attend(query_feats, key, value)

    def forward_distinct(self, query_feats: Tensor, distinct_feats: Tensor, counts: Tensor, assignment: Tensor) -> Tensor:
        """``forward`` for a key map whose pixels take only a few distinct values.

        The key/value map is ``distinct_feats[n, assignment[n, p]]`` at pixel ``p``; there
        are M distinct vectors and ``counts[n, m]`` pixels carry vector m. Attending over
        the map equals attending over the M vectors once each with ``log counts`` added to
        their scores: ``Σ_p e^{s_p} v_p = Σ_m n_m e^{s_m} v_m``. The work is HW×M instead of
        HW×HW; vectors with a count of 0 get no weight.

        Args:
            query_feats: (N, Cq, h, w).
            distinct_feats: (N, M, Ck), the distinct key/value vectors.
            counts: (N, M), pixels per vector (float).
            assignment: (N, h·w), index of each pixel's vector.
        """
        batch, _, height, width = query_feats.shape
        num_distinct = distinct_feats.shape[1]
        if self.training:
            # BatchNorm in training takes its statistics over all pixels: project the whole
            # map, then read each distinct vector's projection at one of its pixels.
            index = assignment.unsqueeze(-1).expand(-1, -1, distinct_feats.shape[2])
            full_map = distinct_feats.gather(1, index).transpose(1, 2).reshape(batch, -1, height, width)
            key, value = self._keys_and_values(full_map)
            pixels = torch.arange(assignment.shape[1], device=assignment.device).expand_as(assignment)
            first_pixel = torch.zeros_like(counts, dtype=torch.long).scatter_reduce(
                1, assignment, pixels, "amin", include_self=False
            )
            first_pixel = first_pixel.view(batch, 1, num_distinct, 1).expand(-1, 1, -1, key.shape[-1])
            key, value = key.gather(2, first_pixel), value.gather(2, first_pixel)
        else:
            # Eval-mode BatchNorm acts per pixel: project the M vectors themselves.
            key, value = self._keys_and_values(distinct_feats.transpose(1, 2).unsqueeze(-1))
        bias = counts.log().view(batch, 1, 1, num_distinct)  # log 0 = -inf: absent vectors
        return self._attend(query_feats, key, value, bias)

    def _keys_and_values(self, key_feats: Tensor) -> tuple[Tensor, Tensor]:
        # (N, T, h, w) → (N, 1, hw, T): one head. The 4-D layout selects the fused kernel
        # on CPU too (3-D inputs fall back to the math kernel, which builds the HW×HW matrix).
        return pixels_as_tokens(self.key_project(key_feats)), pixels_as_tokens(self.value_project(key_feats))

    def _attend(self, query_feats: Tensor, key: Tensor, value: Tensor, bias: Tensor | None = None) -> Tensor:
        height, width = query_feats.shape[2:]
        query = pixels_as_tokens(self.query_project(query_feats))
        # Eqs. (4)–(5): similarities softmax(QKᵀ/√T) over the keys; (7)–(8): their weighted sum of V.
        if bias is None and self.explicit_attention:
            context = explicit_attention(query, key, value)
        elif bias is None:
            context = bounded_attention(query, key, value)
        else:
            # Few keys (HW×M scores): explicit, in float32 whatever the autocast dtype, so
            # that the log-count bias keeps its precision.
            dtype = torch.promote_types(query.dtype, torch.float32)
            with full_precision(query.device):
                scores = torch.matmul(query.to(dtype), key.to(dtype).transpose(-1, -2)) * query.shape[-1] ** -0.5
                weights = (scores + bias.to(dtype)).softmax(dim=-1)
                context = torch.matmul(weights, value.to(dtype)).to(query.dtype)
        return self.out_project(tokens_as_map(context, height, width))  # back to C channels (the reshape of eqs. 7–8)
