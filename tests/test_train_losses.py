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
