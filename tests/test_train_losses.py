"""SimCons losses: values on known inputs and where the gradients go."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scorpion_build import metrics
from scorpion_build.train.losses import (
    consistency_dice,
    consistency_loss,
    dice_loss,
    gdl_weights,
    generalised_dice,
    simcons_loss,
)


def onehot_logits(labels: torch.Tensor, num_classes: int, scale: float = 50.0) -> torch.Tensor:
    """Logits whose softmax is (numerically) the one-hot map of ``labels`` ``(B, H, W)``."""
    onehot = torch.nn.functional.one_hot(labels, num_classes).permute(0, 3, 1, 2).float()
    return scale * onehot


def test_dice_loss_is_zero_for_a_perfect_prediction():
    labels = torch.randint(0, 3, (2, 8, 8), generator=torch.Generator().manual_seed(0))
    assert dice_loss(onehot_logits(labels, 3), labels).item() == pytest.approx(0.0, abs=1e-5)


def test_dice_loss_known_value_for_uniform_prediction():
    # two classes, pixels [0, 1]; p = 0.5 everywhere: per class 2 * 0.5 / (1 + 1) = 0.5
    labels = torch.tensor([[[0, 1]]])
    loss = dice_loss(torch.zeros(1, 2, 1, 2), labels)
    assert loss.item() == pytest.approx(0.5, abs=1e-5)


def test_dice_loss_counts_a_class_absent_from_both_as_agreement():
    # class 2 is absent from target and prediction: Dice 1 for it, so a perfect map scores 0
    labels = torch.tensor([[[0, 1], [1, 0]]])
    assert dice_loss(onehot_logits(labels, 3), labels).item() == pytest.approx(0.0, abs=1e-5)


def probs(*per_class: list[float]) -> torch.Tensor:
    """A ``(1, C, 1, N)`` probability map from one list of N pixel values per class."""
    return torch.tensor(per_class, dtype=torch.float64)[None, :, None, :]


# Worked example for the generalised Dice (Sudre et al. 2017), two classes, four pixels:
# target r = [0, 0, 0, 1]: volumes R = (3, 1), weights 1/R^2 = (1/9, 1).
# prediction p0 = [1, 1, .5, .5], p1 = [0, 0, .5, .5]:
#   sum p0 r0 = 2.5, sum p1 r1 = 0.5, P = (3, 1)
#   Dice = 2 (2.5/9 + 0.5) / ((3 + 3)/9 + (1 + 1)) = (14/9) / (24/9) = 7/12; loss 5/12.
# The unweighted per-tile class mean would give 1 - (5/6 + 1/2)/2 = 1/3 instead.
def test_generalised_dice_loss_matches_the_hand_computed_value():
    target = torch.tensor([[[0, 0, 0, 1]]])
    logits = probs([1, 1, 0.5, 0.5], [0, 0, 0.5, 0.5]).clamp_min(1e-30).log()
    assert dice_loss(logits, target, "gdl").item() == pytest.approx(5 / 12, abs=1e-6)


def test_l1_mean_supervised_loss_matches_the_hand_computed_value():
    # same example, per class soft Dice: class 0: 2*2.5/(3+3) = 5/6; class 1: 2*0.5/2 = 1/2
    target = torch.tensor([[[0, 0, 0, 1]]])
    logits = probs([1, 1, 0.5, 0.5], [0, 0, 0.5, 0.5]).clamp_min(1e-30).log()
    assert dice_loss(logits, target, "l1-mean").item() == pytest.approx(1 / 3, abs=1e-6)


def test_gdl_an_absent_class_takes_the_rarest_present_weight():
    # three classes, class 2 absent from the target: R = (3, 1, 0) -> weights (1/9, 1, 1)
    weights = gdl_weights(torch.tensor([3.0, 1.0, 0.0]))
    np.testing.assert_allclose(weights.numpy(), np.array([1 / 9, 1, 1]) / (1 / 9 + 2))
    # stray prediction of the absent class on the last pixel:
    # p0 = [1, 1, 1, 0], p1 = [0, 0, 0, .5], p2 = [0, 0, 0, .5]
    # Dice = 2 (3/9 + 0.5) / (6/9 + 1.5 + 0.5) = (5/3) / (8/3) = 5/8; loss 3/8
    target = torch.tensor([[[0, 0, 0, 1]]])
    logits = probs([1, 1, 1, 0], [0, 0, 0, 0.5], [0, 0, 0, 0.5]).clamp_min(1e-30).log()
    assert dice_loss(logits, target, "gdl").item() == pytest.approx(3 / 8, abs=1e-6)


def test_gdl_absent_class_neither_dominates_nor_vanishes():
    target = torch.tensor([[[0, 0, 0, 1]]])
    clean = probs([1, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]).clamp_min(1e-30).log()
    stray = probs([1, 1, 1, 0], [0, 0, 0, 0.5], [0, 0, 0, 0.5]).clamp_min(1e-30).log()
    perfect, wrong = dice_loss(clean, target, "gdl").item(), dice_loss(stray, target, "gdl")
    assert perfect == pytest.approx(0.0, abs=1e-6)
    # vanishes: predicting the absent class would be free; dominates: the loss would be ~1
    assert 0.1 < wrong.item() < 0.5


def test_gdl_no_class_present_gives_equal_weights():
    np.testing.assert_allclose(gdl_weights(torch.zeros(3)).numpy(), np.full(3, 1 / 3))


def test_gdl_consistency_takes_its_weights_from_the_clean_prediction():
    # clean p0 = [1, 1, 1, 0], p1 = [0, 0, 0, 1] -> weights (1/9, 1)
    # style q0 = [1, 1, 1, 1], q1 = 0:   Dice = 2 (3/9) / ((3 + 4)/9 + 1) = 3/8; loss 5/8
    # (weights from q would treat class 1 as absent, (1/16, 1/16), and give loss 1/4)
    p = probs([1, 1, 1, 0], [0, 0, 0, 1])
    q = probs([1, 1, 1, 1], [0, 0, 0, 0])
    assert generalised_dice(p, q, gdl_weights(p.sum((0, 2, 3)))).item() == pytest.approx(3 / 8)
    loss = consistency_loss(p.clamp_min(1e-30).log(), q.clamp_min(1e-30).log(), form="gdl")
    assert loss.item() == pytest.approx(5 / 8, abs=1e-6)


def test_gdl_pools_the_batch_before_weighting():
    # two tiles [0, 0] and [1, 1]: per batch R = (2, 2); equal weights, as one tile [0, 0, 1, 1]
    target = torch.tensor([[[0, 0]], [[1, 1]]])
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 1.0]]], [[[1.0, 0.0]], [[0.0, 3.0]]]])
    pooled = torch.cat(list(logits), dim=-1)[None]
    joined = torch.cat(list(target), dim=-1)[None]
    assert dice_loss(logits, target).item() == pytest.approx(dice_loss(pooled, joined).item())


@pytest.mark.parametrize("form", ["gdl", "l1-mean"])
@pytest.mark.parametrize("gradient", ["both", "stop-clean"])
def test_losses_have_finite_gradients_with_absent_classes_and_saturated_logits(form, gradient):
    gen = torch.Generator().manual_seed(2)
    target = torch.zeros(2, 8, 8, dtype=torch.long)  # classes 1 and 2 absent
    clean = (60 * torch.randn(2, 3, 8, 8, generator=gen)).requires_grad_()
    style = (60 * torch.randn(2, 3, 8, 8, generator=gen)).requires_grad_()
    parts = simcons_loss(clean, target, style, weight=0.5, gradient=gradient, form=form)
    parts.total.backward()
    assert torch.isfinite(parts.total)
    assert torch.isfinite(clean.grad).all() and torch.isfinite(style.grad).all()
    assert style.grad.abs().sum() > 0


def test_unknown_loss_form_is_an_error():
    x = torch.zeros(1, 2, 2, 2)
    with pytest.raises(ValueError, match="l1-mean"):
        dice_loss(x, torch.zeros(1, 2, 2, dtype=torch.long), "dice")


def test_consistency_dice_is_one_for_identical_maps_whatever_their_confidence():
    uniform = torch.full((1, 2, 4, 4), 0.5)
    assert consistency_dice(uniform, uniform).mean().item() == pytest.approx(1.0, abs=1e-6)
    # the product form 2 sum(pq) / (sum p + sum q) would give 0.5 here, rewarding sharpening
    product = 2 * (uniform * uniform).sum() / (2 * uniform.sum())
    assert product.item() == pytest.approx(0.5)


def test_consistency_dice_is_zero_for_disjoint_hard_maps():
    p = onehot_logits(torch.zeros(1, 4, 4, dtype=torch.long), 2).softmax(1)
    q = onehot_logits(torch.ones(1, 4, 4, dtype=torch.long), 2).softmax(1)
    assert consistency_dice(p, q).mean().item() == pytest.approx(0.0, abs=1e-6)


def test_consistency_dice_equals_the_metric_dice_on_hard_maps():
    gen = torch.Generator().manual_seed(3)
    a = torch.randint(0, 3, (4, 16, 16), generator=gen)
    b = torch.where(torch.rand(4, 16, 16, generator=gen) < 0.3, (a + 1) % 3, a)
    p = torch.nn.functional.one_hot(a, 3).permute(0, 3, 1, 2).double()
    q = torch.nn.functional.one_hot(b, 3).permute(0, 3, 1, 2).double()
    expected = metrics.dice_per_class(a.numpy(), b.numpy(), 3)  # (B, C)
    got = consistency_dice(p, q, eps=0.0).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_consistency_loss_gradients_flow_to_both_branches_by_default():
    gen = torch.Generator().manual_seed(0)
    clean = torch.randn(2, 3, 8, 8, generator=gen, requires_grad=True)
    style = torch.randn(2, 3, 8, 8, generator=gen, requires_grad=True)
    consistency_loss(clean, style, "both").backward()
    assert clean.grad.abs().sum() > 0 and style.grad.abs().sum() > 0


def test_stop_clean_detaches_the_clean_branch():
    gen = torch.Generator().manual_seed(0)
    clean = torch.randn(2, 3, 8, 8, generator=gen, requires_grad=True)
    style = torch.randn(2, 3, 8, 8, generator=gen, requires_grad=True)
    loss = consistency_loss(clean, style, "stop-clean")
    loss.backward()
    assert clean.grad is None
    assert style.grad.abs().sum() > 0
    # the value does not depend on the gradient mode
    both = consistency_loss(clean.detach(), style.detach(), "both")
    assert loss.item() == pytest.approx(both.item())


def test_unknown_gradient_mode_is_an_error():
    x = torch.zeros(1, 2, 2, 2)
    with pytest.raises(ValueError, match="stop-clean"):
        consistency_loss(x, x, "sideways")


def test_simcons_loss_adds_weighted_consistency_and_supervised_gradient_flows():
    gen = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 3, (2, 8, 8), generator=gen)
    clean = torch.randn(2, 3, 8, 8, generator=gen, requires_grad=True)
    style = torch.randn(2, 3, 8, 8, generator=gen, requires_grad=True)
    parts = simcons_loss(clean, labels, style, weight=0.3)
    expected = dice_loss(clean, labels) + 0.3 * consistency_loss(clean, style)
    assert parts.total.item() == pytest.approx(expected.item(), abs=1e-6)
    parts.total.backward()
    assert clean.grad.abs().sum() > 0 and style.grad.abs().sum() > 0


def test_simcons_loss_without_style_branch_is_the_supervised_loss():
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    logits = torch.zeros(1, 3, 4, 4, requires_grad=True)
    parts = simcons_loss(logits, labels, None, weight=1.0)
    assert parts.consistency.item() == 0.0
    assert parts.total.item() == pytest.approx(parts.supervised.item())


def test_l1_mean_consistency_loss_matches_the_hand_computed_value():
    # p0 = [1, 1, .5, .5], p1 = [0, 0, .5, .5];  q0 = [1, 1, 1, 1], q1 = 0
    # class 0: 1 - sum|p-q| / (3 + 4) = 1 - 1/7 = 6/7;  class 1: 1 - 1 / (1 + 0) = 0
    # Dice mean 3/7, loss 4/7 (gdl with weights from p would give a different value)
    p = probs([1, 1, 0.5, 0.5], [0, 0, 0.5, 0.5]).clamp_min(1e-30).log()
    q = probs([1, 1, 1, 1], [0, 0, 0, 0]).clamp_min(1e-30).log()
    assert consistency_loss(p, q, form="l1-mean").item() == pytest.approx(4 / 7, abs=1e-6)
