"""The precisions a model computes in, and the rules about them, each written once.

``auto`` is a request, not a precision: inference resolves it by measuring this machine
(:mod:`isnet.deploy.profile`), training from the machine's peaks (:mod:`isnet.utils.machine`).
"""

from __future__ import annotations

import enum
from contextlib import AbstractContextManager, nullcontext

import torch


class Precision(str, enum.Enum):
    """What ``--precision`` and ``TrainConfig.precision`` take. A ``str`` enum, so files and
    messages keep the words (``"bf16"``) and comparisons with them hold."""

    AUTO = "auto"
    FP32 = "fp32"
    BF16 = "bf16"  # CPU or GPU
    FP16 = "fp16"  # GPU only

    def __str__(self) -> str:
        return self.value

    @classmethod
    def of(cls, value: str | Precision) -> Precision:
        """``value`` as a Precision; a ``ValueError`` naming the choices otherwise."""
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"precision must be one of {', '.join(map(str, cls))}, not {value!r}") from None


# The autocast dtype of each reduced precision; float32 runs without autocast.
AUTOCAST_DTYPES: dict[Precision, torch.dtype] = {Precision.BF16: torch.bfloat16, Precision.FP16: torch.float16}


def require_device(precision: str | Precision, device: str | torch.device | None) -> None:
    """float16 needs a GPU: on a CPU its autocast is slow and its gradients underflow. A
    ``ValueError`` when ``precision`` is fp16 and ``device`` is not a GPU (None: not known yet)."""
    if Precision.of(precision) is Precision.FP16 and device is not None and torch.device(device).type != "cuda":
        raise ValueError(f"fp16 needs a GPU (device {device}); on a CPU use bf16 or fp32")


def autocast(precision: str | Precision, device: str | torch.device) -> AbstractContextManager:
    """The autocast context of ``precision`` on ``device`` (none for float32)."""
    precision = Precision.of(precision)
    if precision is Precision.AUTO:
        raise ValueError("precision auto must be resolved before computing")
    require_device(precision, device)
    if precision is Precision.FP32:
        return nullcontext()
    return torch.autocast(torch.device(device).type, dtype=AUTOCAST_DTYPES[precision])
