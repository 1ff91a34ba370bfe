"""Criss-cross attention (CCNet, Huang et al., ICCV 2019), in plain PyTorch."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from isnet.model.context.conv_wrapped import ConvWrappedContext


class CrissCrossAttention(nn.Module):
    """Each pixel attends over its row and its column: H + W − 1 positions, itself once.

    Query/key are 1×1 convs to ``channels // 8``, the value a 1×1 conv C→C (all with bias,
    as in CCNet). One softmax runs jointly over the column and row energies; the pixel itself
    is masked out of the column term so that it is counted once. The output is
    ``gamma · context + x`` with ``gamma`` starting at 0, so the block starts as identity.
    """

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        self.query = nn.Conv2d(channels, channels // reduction, 1)
        self.key = nn.Conv2d(channels, channels // reduction, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[2:]
        projections = (self.query(x), self.key(x), self.value(x))
        # Every row, and every column, as a batch of contiguous (pixels × channels) matrices:
        # batched products over such layouts are several times faster than einsum's on CPU.
        q_rows, k_rows, v_rows = (t.permute(0, 2, 3, 1).contiguous() for t in projections)
        q_cols, k_cols, v_cols = (t.permute(0, 3, 2, 1).contiguous() for t in projections)
        # energy[b, h, w, j]: pixel (h, w) against (j, w) in its column / (h, j) in its row.
        column_energy = (q_cols @ k_cols.transpose(2, 3)).transpose(1, 2)
        self_in_column = torch.eye(height, dtype=torch.bool, device=x.device).unsqueeze(1)
        column_energy = column_energy.masked_fill(self_in_column, float("-inf"))
        row_energy = q_rows @ k_rows.transpose(2, 3)
        attention = torch.cat([column_energy, row_energy], dim=-1).softmax(dim=-1)
        column_attention, row_attention = attention.split([height, width], dim=-1)
        context = (column_attention.transpose(1, 2).contiguous() @ v_cols).transpose(1, 2)
        context = context + row_attention.contiguous() @ v_rows  # (N, h, w, C)
        return self.gamma * context.permute(0, 3, 1, 2) + x


class RecurrentCrissCrossAttention(nn.Module):
    """The same criss-cross attention applied ``recurrence`` times (weights shared).

    Two passes (CCNet's R = 2) let every pixel gather context from every other pixel.
    """

    def __init__(self, channels: int, recurrence: int = 2) -> None:
        super().__init__()
        self.attention = CrissCrossAttention(channels)
        self.recurrence = recurrence

    def forward(self, x: Tensor) -> Tensor:
        for _ in range(self.recurrence):
            x = self.attention(x)
        return x


class CrissCrossContext(ConvWrappedContext):
    """CCNet's context: 3×3 CBR(in→C) → criss-cross attention ×R → 3×3 CBR → concat fuse."""

    def __init__(self, in_channels: int = 2048, channels: int = 512, recurrence: int = 2) -> None:
        super().__init__(in_channels, channels, RecurrentCrissCrossAttention(channels, recurrence))
