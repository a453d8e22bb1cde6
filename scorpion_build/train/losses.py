"""SimCons losses: supervised soft Dice and the consistency Dice between two soft predictions.

SimCons (SCORPION paper, eq. for the total loss)::

    L = (1 - Dice(F(x), y)) + lambda * (1 - Dice_cons(F(x), F(SA(x))))

Both Dice terms are computed per sample and class, averaged over classes, then over the
batch, the same order as the consistency metric in :mod:`scorpion_build.metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

GRADIENT_MODES = ("both", "stop-clean")
"""How the consistency term's gradient flows:

``both``        through ``F(x)`` and ``F(SA(x))`` (the default): the two predictions are pulled
                towards each other symmetrically, as the paper's loss is written.
``stop-clean``  ``F(x)`` is detached and acts as a fixed target; only the style-augmented branch
                is moved by the consistency term, so it cannot drag the clean prediction (which
                the supervised term anchors to the labels) towards the augmented one.
"""


def soft_dice(probs: torch.Tensor, target_onehot: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Soft Dice ``2 sum(p y) / (sum p + sum y)`` per sample and class, ``(B, C)``.

    A class absent from both maps gives 1.0 (``eps`` in numerator and denominator), matching
    the metric's convention that agreeing on absence is agreement.
    """
    dims = (2, 3)
    intersection = (probs * target_onehot).sum(dims)
    total = probs.sum(dims) + target_onehot.sum(dims)
    return (2 * intersection + eps) / (total + eps)


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Supervised Dice loss ``1 - Dice(softmax(logits), onehot(target))``, a scalar.

    ``logits`` ``(B, C, H, W)``; ``target`` ``(B, H, W)`` integer class indices.
    """
    num_classes = logits.shape[1]
    probs = logits.float().softmax(dim=1)
    onehot = F.one_hot(target.long(), num_classes).permute(0, 3, 1, 2).to(probs.dtype)
    return 1 - soft_dice(probs, onehot).mean()


def consistency_dice(p: torch.Tensor, q: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Dice between two soft maps, L1 form, per sample and class ``(B, C)``.

    ``1 - sum|p - q| / (sum p + sum q)``: for binary maps this is exactly Dice (``|A xor B|
    = |A| + |B| - 2|A and B|``), and unlike the product form ``2 sum(pq) / (sum p + sum q)``
    it is 1 for *any* two identical maps, however unconfident, so a model is never pushed to
    sharpen predictions just to look consistent. ``p, q`` are ``(B, C, H, W)`` probabilities.
    """
    dims = (2, 3)
    difference = (p - q).abs().sum(dims)
    total = p.sum(dims) + q.sum(dims)
    return 1 - difference / (total + eps)


def consistency_loss(
    logits_clean: torch.Tensor, logits_style: torch.Tensor, gradient: str = "both"
) -> torch.Tensor:
    """``1 - consistency_dice(softmax(clean), softmax(style))`` averaged, a scalar.

    ``gradient`` is one of :data:`GRADIENT_MODES`.
    """
    if gradient not in GRADIENT_MODES:
        raise ValueError(
            f"unknown consistency gradient {gradient!r}; choose one of {GRADIENT_MODES}"
        )
    p = logits_clean.float().softmax(dim=1)
    if gradient == "stop-clean":
        p = p.detach()
    q = logits_style.float().softmax(dim=1)
    return 1 - consistency_dice(p, q).mean()


@dataclass(frozen=True)
class LossParts:
    """The total loss and its two terms (the terms detached, for logging)."""

    total: torch.Tensor
    supervised: torch.Tensor
    consistency: torch.Tensor


def simcons_loss(
    logits_clean: torch.Tensor,
    target: torch.Tensor,
    logits_style: torch.Tensor | None,
    weight: float,
    gradient: str = "both",
) -> LossParts:
    """Supervised Dice loss plus ``weight`` times the consistency loss.

    With no style branch (``logits_style`` None: baseline or plain SA training) the
    consistency term is 0.
    """
    supervised = dice_loss(logits_clean, target)
    if logits_style is None:
        consistency = torch.zeros((), device=supervised.device)
        total = supervised
    else:
        consistency = consistency_loss(logits_clean, logits_style, gradient)
        total = supervised + weight * consistency
    return LossParts(total, supervised.detach(), consistency.detach())
