"""How far apart two outputs are: the one measure the tests, the benchmarks and ``isnet export --check`` use."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def relative_error(actual, expected) -> float:
    """max |actual − expected| / max |expected|, computed in float64.

    Tensors or arrays (``expected`` goes to ``actual``'s device). Float64 so that the
    measure itself adds no round-off, whatever the precision compared; a zero ``expected``
    is taken as 1e-30.
    """
    actual = torch.as_tensor(actual).detach().double()
    expected = torch.as_tensor(expected).detach().to(actual.device).double()
    return float((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-30))


def agreement(actual: torch.Tensor, expected: torch.Tensor, size: tuple[int, int] | None = None) -> float:
    """Fraction of pixels whose argmax agrees, at the logits' size or resized to ``size``."""
    if size is not None:
        actual = F.interpolate(actual.float(), size=size, mode="bilinear", align_corners=False)
        expected = F.interpolate(expected.float(), size=size, mode="bilinear", align_corners=False)
    return float((actual.argmax(1) == expected.argmax(1)).double().mean())
