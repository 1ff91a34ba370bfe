"""``--loss``: a weighted sum of segmentation losses for imbalanced data, e.g. ``"ce+0.5*dice"``.

The terms, each of logits (N, K, H, W) and labels (N, H, W), over the labelled pixels (the
label ``ignore_index`` is left out of every term) with optional per-class weights ``w``:

- ``ce``: cross-entropy, ``Σ w_y·(−log p_y) / Σ w_y`` (``F.cross_entropy``).
- ``focal(gamma=2)``: focal loss (Lin et al. 2017), ``Σ w_y·(1 − p_y)^γ·(−log p_y) / Σ w_y``;
  γ = 0 is ``ce``.
- ``dice(smooth=1)``: soft Dice over the batch, ``1 − (2·Σ p_c·[y=c] + s) / (Σ p_c + Σ [y=c] + s)``
  per class, averaged over all classes weighted by ``w``.
- ``lovasz``: Lovász-softmax (Berman et al. 2018): per class present in the labels, the Lovász
  extension of the Jaccard loss at the errors ``|[y=c] − p_c|``, averaged weighted by ``w``.
- ``ohem(thresh=0.7, min_kept=100000)``: online hard-example cross-entropy: only the pixels
  whose probability of their true class is below ``thresh``, or, when fewer, the ``min_kept``
  pixels of lowest such probability (as MMSegmentation's and PaddleSeg's OHEM), ``Σ w_y·(−log
  p_y) / Σ w_y`` over them.

A term other than ``ce`` is 0 on a batch without labelled pixels. The expression is
``[WEIGHT*]TERM[(KEY=VALUE, ...)]`` joined by ``+``; :func:`parse_loss` checks it before any
work and :func:`loss_criterion` turns it into the function that
:func:`isnet.training.losses.segmentation_loss` applies to each of the model's outputs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from isnet.utils.errors import ConfigError

Criterion = Callable[[Tensor, Tensor, "Tensor | None", int], Tensor]


def cross_entropy(logits: Tensor, target: Tensor, class_weights: Tensor | None, ignore_index: int) -> Tensor:
    return F.cross_entropy(logits, target, weight=class_weights, ignore_index=ignore_index)


def _labelled(logits: Tensor, target: Tensor, ignore_index: int) -> tuple[Tensor, Tensor]:
    """The labelled pixels' logits (P, K) and labels (P,)."""
    num_classes = logits.shape[1]
    pixels = logits.movedim(1, -1).reshape(-1, num_classes)
    labels = target.reshape(-1)
    valid = labels != ignore_index
    return pixels[valid], labels[valid].long()


def _pixel_weights(labels: Tensor, class_weights: Tensor | None, like: Tensor) -> Tensor:
    if class_weights is None:
        return torch.ones(labels.shape, dtype=like.dtype, device=like.device)
    return class_weights.to(like.dtype)[labels]


def _nothing_labelled(logits: Tensor) -> Tensor:
    return logits.sum() * 0  # zero, with a (zero) gradient for every logit


def focal_loss(logits: Tensor, target: Tensor, class_weights: Tensor | None, ignore_index: int, *,
               gamma: float = 2.0) -> Tensor:
    pixels, labels = _labelled(logits, target, ignore_index)
    if not labels.numel():
        return _nothing_labelled(logits)
    log_p = F.log_softmax(pixels, dim=1).gather(1, labels[:, None])[:, 0]
    weights = _pixel_weights(labels, class_weights, log_p)
    modulating = (1 - log_p.exp()).clamp(min=0) ** gamma
    return (weights * modulating * -log_p).sum() / weights.sum()


def dice_loss(logits: Tensor, target: Tensor, class_weights: Tensor | None, ignore_index: int, *,
              smooth: float = 1.0) -> Tensor:
    pixels, labels = _labelled(logits, target, ignore_index)
    if not labels.numel():
        return _nothing_labelled(logits)
    probabilities = pixels.softmax(dim=1)
    one_hot = F.one_hot(labels, pixels.shape[1]).to(probabilities.dtype)
    intersection = (probabilities * one_hot).sum(0)
    sizes = probabilities.sum(0) + one_hot.sum(0)
    per_class = 1 - (2 * intersection + smooth) / (sizes + smooth)
    weights = torch.ones_like(per_class) if class_weights is None else class_weights.to(per_class.dtype)
    return (weights * per_class).sum() / weights.sum()


def lovasz_jaccard_extension(errors: Tensor, truth: Tensor) -> Tensor:
    """The Lovász extension of the Jaccard loss Δ_J at ``errors`` ∈ [0, 1]^P, for the class mask ``truth``.

    Sort the errors in decreasing order, π; then Σ_i e_π(i)·(Δ_J({π(1..i)}) − Δ_J({π(1..i−1)})),
    where Δ_J(M) = |M| / |truth ∪ M| is the Jaccard loss of predicting the pixels M wrongly:
    a set of the first i pixels mispredicts the truth pixels among them and wrongly adds the others.
    """
    order = torch.argsort(errors, descending=True)
    errors, truth = errors[order], truth[order].to(errors.dtype)
    true_total = truth.sum()
    missed = torch.cumsum(truth, 0)  # truth pixels among the first i: predicted wrong
    added = torch.cumsum(1 - truth, 0)  # other pixels among the first i: wrongly taken as the class
    jaccard_loss = 1 - (true_total - missed) / (true_total + added)
    increments = torch.cat([jaccard_loss[:1], jaccard_loss[1:] - jaccard_loss[:-1]])
    return (errors * increments).sum()


def lovasz_softmax_loss(logits: Tensor, target: Tensor, class_weights: Tensor | None, ignore_index: int) -> Tensor:
    pixels, labels = _labelled(logits, target, ignore_index)
    if not labels.numel():
        return _nothing_labelled(logits)
    probabilities = pixels.softmax(dim=1)
    present = torch.unique(labels).tolist()
    losses = []
    for k in present:  # the classes present in the labels (the paper's "present")
        truth = labels == k
        losses.append(lovasz_jaccard_extension((truth.to(probabilities.dtype) - probabilities[:, k]).abs(), truth))
    values = torch.stack(losses)
    weights = torch.ones_like(values) if class_weights is None else class_weights.to(values.dtype)[present]
    return (weights * values).sum() / weights.sum()


def ohem_cross_entropy(logits: Tensor, target: Tensor, class_weights: Tensor | None, ignore_index: int, *,
                       thresh: float = 0.7, min_kept: int = 100_000) -> Tensor:
    pixels, labels = _labelled(logits, target, ignore_index)
    if not labels.numel():
        return _nothing_labelled(logits)
    log_p = F.log_softmax(pixels, dim=1).gather(1, labels[:, None])[:, 0]
    probability = log_p.detach().exp()
    hard = probability < thresh
    at_least = min(min_kept, labels.numel())
    if int(hard.sum()) < at_least:
        hard = torch.zeros_like(hard)
        hard[torch.argsort(probability)[:at_least]] = True
    weights = _pixel_weights(labels, class_weights, log_p) * hard
    return (weights * -log_p).sum() / weights.sum()


@dataclass(frozen=True)
class TermKind:
    """A loss term: its function and its parameters with their defaults and rules."""

    function: Callable[..., Tensor]
    defaults: dict[str, float] = field(default_factory=dict)
    integers: tuple[str, ...] = ()
    rules: dict[str, str] = field(default_factory=dict)  # parameter → "≥ 0", "> 0", "0..1"


TERMS: dict[str, TermKind] = {
    "ce": TermKind(cross_entropy),
    "focal": TermKind(focal_loss, {"gamma": 2.0}, rules={"gamma": "≥ 0"}),
    "dice": TermKind(dice_loss, {"smooth": 1.0}, rules={"smooth": "≥ 0"}),
    "lovasz": TermKind(lovasz_softmax_loss),
    "ohem": TermKind(ohem_cross_entropy, {"thresh": 0.7, "min_kept": 100_000}, integers=("min_kept",),
                     rules={"thresh": "0..1", "min_kept": "≥ 0"}),
}


@dataclass(frozen=True)
class LossTerm:
    weight: float
    name: str
    parameters: tuple[tuple[str, float], ...] = ()

    def __call__(self, logits: Tensor, target: Tensor, class_weights: Tensor | None, ignore_index: int) -> Tensor:
        return TERMS[self.name].function(logits, target, class_weights, ignore_index, **dict(self.parameters))


_TERM = re.compile(r"^(?:(?P<weight>[0-9.eE+-]+|inf|nan)\s*\*\s*)?(?P<name>[a-z_]+)\s*(?:\((?P<args>[^()]*)\))?$")
SYNTAX = "a sum of [WEIGHT*]TERM[(KEY=VALUE,...)] with TERM one of " + ", ".join(TERMS) + \
         ", e.g. ce+0.5*dice or focal(gamma=2)+lovasz"


def parse_loss(text: str) -> tuple[LossTerm, ...]:
    """``"ce+0.5*dice+ohem(thresh=0.7,min_kept=1000)"`` → its terms; a ConfigError (field ``loss``) naming the problem."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"is {text!r}: give {SYNTAX}", field="loss")
    terms = []
    for part in _split_terms(text):
        match = _TERM.match(part.strip())
        if match is None:
            raise ConfigError(f"{text!r}: cannot read the term {part.strip()!r}; give {SYNTAX}", field="loss")
        name = match["name"]
        if name not in TERMS:
            raise ConfigError(f"{text!r}: unknown term {name!r}; choose from {', '.join(TERMS)}", field="loss")
        weight = _number(match["weight"] or "1", f"{text!r}: the weight of {name}")
        if weight <= 0:
            raise ConfigError(f"{text!r}: the weight of {name} must be > 0, not {match['weight']}", field="loss")
        terms.append(LossTerm(weight, name, _parameters(name, match["args"], text)))
    return tuple(terms)


def _split_terms(text: str) -> list[str]:
    """Split at the ``+`` outside parentheses and not in a number's exponent (``1e+3``)."""
    parts, depth, start = [], 0, 0
    for position, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        exponent = position > 0 and text[position - 1] in "eE" and position > 1 and text[position - 2].isdigit()
        if char == "+" and depth == 0 and not exponent:
            parts.append(text[start:position])
            start = position + 1
    return parts + [text[start:]]


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{what} is {text!r}, not a number", field="loss") from None
    if not math.isfinite(value):
        raise ConfigError(f"{what} must be finite, not {text}", field="loss")
    return value


def _parameters(name: str, args: str | None, text: str) -> tuple[tuple[str, float], ...]:
    kind = TERMS[name]
    values = dict(kind.defaults)
    for item in filter(None, (piece.strip() for piece in (args or "").split(","))):
        key, sep, raw = (piece.strip() for piece in item.partition("="))
        if not sep or key not in kind.defaults:
            known = ", ".join(f"{k}={v:g}" for k, v in kind.defaults.items()) or "none"
            raise ConfigError(f"{text!r}: {name} takes KEY=VALUE among {known}, not {item!r}", field="loss")
        value = _number(raw, f"{text!r}: {name}'s {key}")
        rule = kind.rules[key]
        if key in kind.integers and not value.is_integer():
            raise ConfigError(f"{text!r}: {name}'s {key} must be an integer, not {raw}", field="loss")
        if (rule == "≥ 0" and value < 0) or (rule == "> 0" and value <= 0) or (rule == "0..1" and not 0 <= value <= 1):
            raise ConfigError(f"{text!r}: {name}'s {key} must be {rule}, not {raw}", field="loss")
        values[key] = int(value) if key in kind.integers else value
    return tuple(values.items())


def loss_criterion(text: str) -> Criterion:
    """The function of ``text`` (see :func:`parse_loss`): (logits, target, class_weights, ignore_index) → loss."""
    terms = parse_loss(text)

    def criterion(logits: Tensor, target: Tensor, class_weights: Tensor | None, ignore_index: int) -> Tensor:
        return sum(term.weight * term(logits, target, class_weights, ignore_index) for term in terms)

    return criterion
