"""--loss: each term against values worked out by hand, its gradient by gradcheck, the expression's rules."""

from __future__ import annotations

import math

import pytest
import torch

from cli_helpers import error_message, isnet, tiny_training
from isnet.training.loss_terms import (
    dice_loss,
    focal_loss,
    loss_criterion,
    lovasz_softmax_loss,
    ohem_cross_entropy,
    parse_loss,
)
from isnet.training.losses import DEFAULT_LOSS_WEIGHTS, segmentation_loss
from isnet.training.recipes import recipe, recipe_names
from isnet.utils.errors import ConfigError
from training_helpers import make_data

LN2 = math.log(2)


def two_pixels(extra_ignored: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel a: logits (0, 0), label 0 (p_y = 1/2); pixel b: logits (ln 3, 0), label 1 (p_y = 1/4);
    and a third pixel labelled 255 (ignored) with extreme logits, which no term may see."""
    logits = torch.tensor([[0.0, math.log(3), 40.0], [0.0, 0.0, -40.0]], dtype=torch.float64)
    labels = torch.tensor([0, 1, 255])
    if not extra_ignored:
        logits, labels = logits[:, :2], labels[:2]
    return logits[None, :, None, :], labels[None, None, :]


def test_focal_by_hand():
    logits, labels = two_pixels()
    # a: (1 − 1/2)²·ln 2 = ln2/4; b: (1 − 1/4)²·ln 4 = 9/8·ln 2
    assert focal_loss(logits, labels, None, 255, gamma=2).item() == pytest.approx((0.25 + 1.125) / 2 * LN2, rel=1e-12)
    weights = torch.tensor([1.0, 3.0])
    assert focal_loss(logits, labels, weights, 255, gamma=2).item() == pytest.approx(
        (1 * 0.25 + 3 * 1.125) / 4 * LN2, rel=1e-12)
    # γ = 0 is the cross-entropy: (ln 2 + ln 4) / 2
    assert focal_loss(logits, labels, None, 255, gamma=0).item() == pytest.approx(1.5 * LN2, rel=1e-12)


def test_dice_by_hand():
    logits, labels = two_pixels()
    # probabilities a (1/2, 1/2), b (3/4, 1/4); class 0: I = 1/2, Σp + Σy = 5/4 + 1 → 1 − 2/3.25 = 5/13;
    # class 1: I = 1/4, Σp + Σy = 3/4 + 1 → 1 − 1.5/2.75 = 5/11
    assert dice_loss(logits, labels, None, 255).item() == pytest.approx((5 / 13 + 5 / 11) / 2, rel=1e-12)
    weights = torch.tensor([1.0, 3.0])
    assert dice_loss(logits, labels, weights, 255).item() == pytest.approx((5 / 13 + 3 * 5 / 11) / 4, rel=1e-12)
    # smooth 0: class 0 1 − 1/2.25 = 5/9, class 1 1 − 0.5/1.75 = 5/7
    assert dice_loss(logits, labels, None, 255, smooth=0).item() == pytest.approx((5 / 9 + 5 / 7) / 2, rel=1e-12)


def test_lovasz_by_hand():
    logits, labels = two_pixels()
    # class 0: errors a 1/2 (truth), b 3/4 (not); sorted b, a: Δ_J({b}) = 1/2, Δ_J({b, a}) = 1 → 3/4·1/2 + 1/2·1/2 = 5/8
    # class 1: errors a 1/2 (not), b 3/4 (truth); Δ_J({b}) = 1, Δ_J({b, a}) = 1 → 3/4
    assert lovasz_softmax_loss(logits, labels, None, 255).item() == pytest.approx((5 / 8 + 3 / 4) / 2, rel=1e-12)
    weights = torch.tensor([1.0, 3.0])
    assert lovasz_softmax_loss(logits, labels, weights, 255).item() == pytest.approx((5 / 8 + 3 * 3 / 4) / 4, rel=1e-12)


def test_ohem_by_hand():
    logits, labels = two_pixels()
    easy = torch.tensor([[[[math.log(9)]], [[0.0]]]], dtype=torch.float64)  # p_y = 0.9 for label 0
    logits = torch.cat([logits, easy.expand(1, 2, 1, 1)], dim=3)
    labels = torch.cat([labels, torch.tensor([[[0]]])], dim=2)
    # threshold 0.7 keeps a (1/2) and b (1/4), not the easy pixel (0.9)
    assert ohem_cross_entropy(logits, labels, None, 255, thresh=0.7, min_kept=0).item() == pytest.approx(
        1.5 * LN2, rel=1e-12)
    # at least 3 kept: all three labelled pixels
    assert ohem_cross_entropy(logits, labels, None, 255, thresh=0.7, min_kept=3).item() == pytest.approx(
        (LN2 + 2 * LN2 + math.log(10 / 9)) / 3, rel=1e-12)
    # threshold 0.4 keeps only b; at least 2: the two of lowest probability, b and a
    assert ohem_cross_entropy(logits, labels, None, 255, thresh=0.4, min_kept=2).item() == pytest.approx(
        1.5 * LN2, rel=1e-12)
    weights = torch.tensor([1.0, 3.0])
    assert ohem_cross_entropy(logits, labels, weights, 255, thresh=0.7, min_kept=0).item() == pytest.approx(
        (LN2 + 3 * 2 * LN2) / 4, rel=1e-12)


def test_an_expression_is_its_weighted_sum_on_every_output_with_the_paper_weights():
    logits, labels = two_pixels()
    criterion = loss_criterion("ce+0.5*dice")
    by_hand = 1.5 * LN2 + 0.5 * (5 / 13 + 5 / 11) / 2
    assert criterion(logits, labels, None, 255).item() == pytest.approx(by_hand, rel=1e-12)
    outputs = {"out": logits, "stage1": logits, "aux": logits}
    losses = segmentation_loss(outputs, labels, criterion=criterion)
    assert DEFAULT_LOSS_WEIGHTS == {"aux": 0.4, "stage1": 0.4, "out": 1.0}
    assert losses["total"].item() == pytest.approx(1.8 * by_hand, rel=1e-6)  # outputs computed in float32
    only_out = segmentation_loss(outputs, labels, criterion=criterion, weights={"out": 1.0})
    assert only_out["total"].item() == pytest.approx(by_hand, rel=1e-6)


def brute_force_lovasz(probabilities: list[list[float]], labels: list[int], weights: list[float]) -> float:
    """The Lovász extension as an integral (Berman et al. 2018, §3): ∫₀¹ Δ_J({i : e_i ≥ t}) dt per class."""
    classes = sorted(set(labels))
    values = []
    for k in classes:
        truth = {i for i, label in enumerate(labels) if label == k}
        errors = [abs((1.0 if i in truth else 0.0) - p[k]) for i, p in enumerate(probabilities)]
        total, previous = 0.0, 0.0
        for level in sorted(set(errors)):
            wrong = {i for i, e in enumerate(errors) if e >= level}
            total += (level - previous) * len(wrong) / len(truth | wrong)
            previous = level
        values.append(total)
    return sum(weights[k] * v for k, v in zip(classes, values)) / sum(weights[k] for k in classes)


@pytest.mark.parametrize("seed", range(5))
def test_lovasz_equals_a_brute_force_restatement(seed):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 4, 3, 3, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 3, (2, 3, 3), generator=generator)  # class 3 absent: not averaged
    labels[0, 0, 0] = 255
    weights = torch.rand(4, generator=generator, dtype=torch.float64) + 0.5
    valid = labels.reshape(-1) != 255
    probabilities = logits.softmax(1).movedim(1, -1).reshape(-1, 4)[valid].tolist()
    expected = brute_force_lovasz(probabilities, labels.reshape(-1)[valid].tolist(), weights.tolist())
    assert lovasz_softmax_loss(logits, labels, weights, 255).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("expression", ["ce", "focal(gamma=2)", "dice", "lovasz", "ohem(thresh=0.7,min_kept=5)",
                                        "ce+0.5*dice+0.3*lovasz"])
def test_gradients_by_gradcheck(expression):
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 3, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 3, (2, 3, 4), generator=generator)
    labels[1, 2, :2] = 255
    weights = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    criterion = loss_criterion(expression)
    assert torch.autograd.gradcheck(lambda x: criterion(x, labels, weights, 255), (logits,))
    labels_ignored = torch.full_like(labels, 255)
    if "ce" not in {term.name for term in parse_loss(expression)}:  # without labelled pixels the others are 0
        loss = criterion(logits, labels_ignored, weights, 255)
        loss.backward()
        assert loss.item() == 0 and logits.grad.abs().sum() == 0


@pytest.mark.parametrize("bad, problem", [
    ("ce+", "cannot read the term ''"), ("cross", "unknown term 'cross'"), ("focal(gamma=-1)", "gamma must be ≥ 0"),
    ("ohem(min_kept=2.5)", "min_kept must be an integer"), ("ohem(thresh=2)", "thresh must be 0..1"),
    ("0*dice", "must be > 0"), ("dice(smooth)", "takes KEY=VALUE"), ("inf*ce", "must be finite"),
])
def test_bad_expressions_are_refused_naming_the_problem(bad, problem):
    with pytest.raises(ConfigError, match="loss") as caught:
        parse_loss(bad)
    assert problem in str(caught.value)


def test_recipes_keep_the_paper_cross_entropy():
    for name in recipe_names():
        assert recipe(name).loss == "ce"


@pytest.mark.slow
def test_cli_trains_with_an_expression_and_refuses_a_bad_one(tmp_path):
    data = make_data(tmp_path / "data")
    result = isnet(*tiny_training(data, tmp_path / "run", "--loss", "ce+0.5*dice+0.2*lovasz", max_iters=2))
    assert result.returncode == 0, result.stderr[-2000:]
    import json

    assert json.loads((tmp_path / "run" / "config.json").read_text())["loss"] == "ce+0.5*dice+0.2*lovasz"
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert len(rows) >= 3 and all(math.isfinite(float(row.split(",")[2])) for row in rows[1:3])
    bad = isnet(*tiny_training(data, tmp_path / "bad", "--loss", "ce+dise"))
    lines = error_message(bad, "train", 2)
    assert len(lines) == 1 and lines[0].startswith("isnet train: error: --loss ") and "'dise'" in lines[0]
    assert not (tmp_path / "bad").exists()
