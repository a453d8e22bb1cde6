"""SimCons losses: the supervised Dice term and the consistency Dice between two predictions.

SimCons (SCORPION paper, eq. for the total loss)::

    L = (1 - Dice(F(x), y)) + lambda * (1 - Dice_cons(F(x), F(SA(x))))

Two forms, chosen with ``loss`` (:data:`LOSS_FORMS`; docs/training.md, "The loss"):

``gdl``      the paper's Dice, the generalised Dice of Sudre et al. 2017 ("Generalised Dice
             overlap as a deep learning loss function for highly unbalanced segmentations"):
             class weights ``1 / volume**2``, pooled over the whole batch.
``l1-mean``  the earlier form: plain soft Dice (supervised) and the L1 Dice
             ``1 - sum|p-q| / (sum p + sum q)`` (consistency), per tile and class, averaged
             over classes then tiles, every class weighing the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

LOSS_FORMS = ("gdl", "l1-mean")

GRADIENT_MODES = ("both", "stop-clean")
"""How the consistency term's gradient flows:

``both``        through ``F(x)`` and ``F(SA(x))`` (the default): the two predictions are pulled
                towards each other symmetrically, as the paper's loss is written.
``stop-clean``  ``F(x)`` is detached and acts as a fixed target; only the style-augmented branch
                is moved by the consistency term, so it cannot drag the clean prediction (which
                the supervised term anchors to the labels) towards the augmented one.
"""

MIN_VOLUME_PX = 1.0
"""A class whose volume (in pixels, or summed probability) over the batch is below this is
*absent*: ``1 / volume**2`` would be unbounded, so it takes the weight of the rarest present
class instead; it neither dominates the loss nor vanishes from it."""


def _check(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {choices}")


def _onehot(target: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    return F.one_hot(target.long(), num_classes).permute(0, 3, 1, 2).to(dtype)


def gdl_weights(volume_px: torch.Tensor) -> torch.Tensor:
    """Sudre et al. 2017 class weights ``1 / volume**2`` for class volumes ``(C,)`` in pixels.

    Absent classes (volume < :data:`MIN_VOLUME_PX`) get the largest weight among present
    classes; with no class present every weight is 1. The result is scaled to sum to 1,
    which leaves the Dice ratio unchanged and keeps it well away from float underflow.
    """
    volume_px = volume_px.detach().double()
    present = volume_px >= MIN_VOLUME_PX
    weights = 1.0 / volume_px.clamp_min(MIN_VOLUME_PX) ** 2
    if present.any():
        weights = torch.where(present, weights, weights[present].max())
    else:
        weights = torch.ones_like(weights)
    return weights / weights.sum()


def generalised_dice(a: torch.Tensor, b: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Generalised Dice ``2 sum_l w_l sum_n a b / sum_l w_l sum_n (a + b)``, a scalar.

    ``a, b`` ``(B, C, H, W)`` probabilities (or one-hot maps); the pixel sums run over the
    whole batch (per-batch reduction, as in the reference implementation of Sudre et al.);
    ``weights`` ``(C,)`` from :func:`gdl_weights`.
    """
    dims = (0, 2, 3)
    w = weights.to(a.dtype)
    intersection = (w * (a * b).sum(dims)).sum()
    total = (w * (a.sum(dims) + b.sum(dims))).sum()
    return 2 * intersection / total.clamp_min(torch.finfo(a.dtype).tiny)


def soft_dice(probs: torch.Tensor, target_onehot: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Soft Dice ``2 sum(p y) / (sum p + sum y)`` per sample and class, ``(B, C)``.

    A class absent from both maps gives 1.0 (``eps`` in numerator and denominator), matching
    the metric's convention that agreeing on absence is agreement.
    """
    dims = (2, 3)
    intersection = (probs * target_onehot).sum(dims)
    total = probs.sum(dims) + target_onehot.sum(dims)
    return (2 * intersection + eps) / (total + eps)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, form: str = "gdl") -> torch.Tensor:
    """Supervised Dice loss ``1 - Dice(softmax(logits), onehot(target))``, a scalar.

    ``logits`` ``(B, C, H, W)``; ``target`` ``(B, H, W)`` integer class indices; ``form`` one
    of :data:`LOSS_FORMS` (``gdl``: weights from the label volumes over the batch).
    """
    _check("loss", form, LOSS_FORMS)
    probs = logits.float().softmax(dim=1)
    onehot = _onehot(target, logits.shape[1], probs.dtype)
    if form == "gdl":
        return 1 - generalised_dice(probs, onehot, gdl_weights(onehot.sum((0, 2, 3))))
    return 1 - soft_dice(probs, onehot).mean()


def consistency_dice(p: torch.Tensor, q: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Dice between two soft maps, L1 form, per sample and class ``(B, C)``.

    ``1 - sum|p - q| / (sum p + sum q)``: for binary maps this is exactly Dice (``|A xor B|
    = |A| + |B| - 2|A and B|``), and unlike the product form ``2 sum(pq) / (sum p + sum q)``
    it is 1 for *any* two identical maps, however unconfident. ``p, q`` are ``(B, C, H, W)``
    probabilities.
    """
    dims = (2, 3)
    difference = (p - q).abs().sum(dims)
    total = p.sum(dims) + q.sum(dims)
    return 1 - difference / (total + eps)


def consistency_loss(
    logits_clean: torch.Tensor,
    logits_style: torch.Tensor,
    gradient: str = "both",
    form: str = "gdl",
) -> torch.Tensor:
    """``1 - Dice(softmax(clean), softmax(style))``, a scalar.

    ``gdl``: generalised Dice whose class weights come from the clean prediction's volumes,
    detached (the clean branch is the one the supervised term ties to the labels, so its
    volumes stand in for the unknown true ones, and the model cannot lower the loss by
    moving the weights). ``l1-mean``: :func:`consistency_dice` averaged over classes and
    tiles. ``gradient`` is one of :data:`GRADIENT_MODES`.
    """
    _check("consistency gradient", gradient, GRADIENT_MODES)
    _check("loss", form, LOSS_FORMS)
    p = logits_clean.float().softmax(dim=1)
    if gradient == "stop-clean":
        p = p.detach()
    q = logits_style.float().softmax(dim=1)
    if form == "gdl":
        return 1 - generalised_dice(p, q, gdl_weights(p.sum((0, 2, 3))))
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
    form: str = "gdl",
) -> LossParts:
    """Supervised Dice loss plus ``weight`` times the consistency loss, both in ``form``.

    With no style branch (``logits_style`` None: baseline or plain SA training) the
    consistency term is 0.
    """
    supervised = dice_loss(logits_clean, target, form)
    if logits_style is None:
        consistency = torch.zeros((), device=supervised.device)
        total = supervised
    else:
        consistency = consistency_loss(logits_clean, logits_style, gradient, form)
        total = supervised + weight * consistency
    return LossParts(total, supervised.detach(), consistency.detach())
