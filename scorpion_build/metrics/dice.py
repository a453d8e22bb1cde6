"""Dice counts between label maps (docs/contracts.md §5): per class, per scanner pair, and
against ground truth, by popcount over bit-packed one-hot masks."""

from __future__ import annotations

import itertools

import numpy as np

DEFAULT_THRESHOLD = 0.8
"""Per-sample worst-pair Dice below which a sample counts as a consistency failure."""


def scanner_pairs(n_scanners: int) -> list[tuple[int, int]]:
    """Unordered scanner pairs ``(i, j)`` with ``i < j``, in the axis order used everywhere."""
    if n_scanners < 2:
        raise ValueError(f"consistency needs at least 2 scanners, got {n_scanners}")
    return list(itertools.combinations(range(n_scanners), 2))


def _dice_from_counts(intersection: np.ndarray, total: np.ndarray) -> np.ndarray:
    """``2 I / T`` with 1.0 where the class is absent from both maps (``T == 0``)."""
    return np.where(total > 0, 2.0 * intersection / np.maximum(total, 1), 1.0)


def _check_labels(maps: np.ndarray, num_classes: int, what: str) -> np.ndarray:
    maps = np.asarray(maps)
    if not np.issubdtype(maps.dtype, np.integer):
        raise TypeError(f"{what} must hold integer class indices, got dtype {maps.dtype}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return maps


def _packed_onehot(maps: np.ndarray, num_classes: int) -> np.ndarray:
    """Bit-packed one-hot masks ``(..., C, words)`` as uint64, for popcount-based counting.

    Packing 64 pixels per word makes every pairwise intersection an AND plus a popcount,
    about 2x faster than boolean sums and 8x smaller, which is what keeps 480 samples x 5
    scanners x 1024 px well under a minute on two cores.
    """
    flat = maps.reshape(*maps.shape[:-2], -1)
    planes = []
    for c in range(num_classes):
        packed = np.packbits(flat == c, axis=-1)
        pad = (-packed.shape[-1]) % 8  # zero bytes count nothing and make the uint64 view legal
        if pad:
            packed = np.concatenate(
                [packed, np.zeros((*packed.shape[:-1], pad), np.uint8)], axis=-1
            )
        planes.append(packed)
    return np.ascontiguousarray(np.stack(planes, axis=-2)).view(np.uint64)


def _popcount(words: np.ndarray) -> np.ndarray:
    return np.bitwise_count(words).sum(axis=-1, dtype=np.int64)


def dice_per_class(a: np.ndarray, b: np.ndarray, num_classes: int) -> np.ndarray:
    """Dice per class between label maps ``a`` and ``b``.

    Parameters
    ----------
    a, b : integer arrays ``(..., H, W)``
        Label maps of class indices; leading dimensions broadcast against each other.
        Values outside ``[0, num_classes)`` belong to no class.
    num_classes : int
        Number of classes C.

    Returns
    -------
    ndarray ``(..., C)`` float64
        Dice in [0, 1]; 1.0 for a class absent from both maps.
    """
    a = _check_labels(a, num_classes, "a")
    b = _check_labels(b, num_classes, "b")
    a, b = np.broadcast_arrays(a, b)
    bits_a, bits_b = _packed_onehot(a, num_classes), _packed_onehot(b, num_classes)
    intersection = _popcount(bits_a & bits_b)
    total = _popcount(bits_a) + _popcount(bits_b)
    return _dice_from_counts(intersection, total)


def pairwise_dice(
    preds: np.ndarray, num_classes: int, valid: np.ndarray | None = None
) -> np.ndarray:
    """Per-sample, per-class Dice for every unordered scanner pair.

    Parameters
    ----------
    preds : integer array ``(N, S, H, W)``
        Predicted label maps, scanners on axis 1.
    num_classes : int
        Number of classes C.
    valid : bool array ``(N, S)``, optional
        False where a scanner's patch (or prediction) is missing for a sample; every pair
        involving it is NaN for that sample, so it drops out of that pair only.

    Returns
    -------
    ndarray ``(N, P, C)`` float64
        P = S (S - 1) / 2 pairs in :func:`scanner_pairs` order; NaN where a pair is missing.
    """
    preds = _check_labels(preds, num_classes, "preds")
    if preds.ndim != 4:
        raise ValueError(f"preds must be (N, S, H, W), got shape {preds.shape}")
    n, s = preds.shape[:2]
    pairs = scanner_pairs(s)
    bits = _packed_onehot(preds, num_classes)  # (N, S, C, words)
    area = _popcount(bits)  # (N, S, C)
    dice = np.empty((n, len(pairs), num_classes), np.float64)
    for p, (i, j) in enumerate(pairs):
        intersection = _popcount(bits[:, i] & bits[:, j])
        dice[:, p] = _dice_from_counts(intersection, area[:, i] + area[:, j])
    if valid is not None:
        valid = np.asarray(valid, bool)
        if valid.shape != (n, s):
            raise ValueError(f"valid must be (N, S) = {(n, s)}, got {valid.shape}")
        dice[~pair_valid(valid)] = np.nan
    return dice


def pair_valid(valid: np.ndarray) -> np.ndarray:
    """``(N, S)`` scanner availability -> ``(N, P)`` pair availability (both scanners present)."""
    valid = np.asarray(valid, bool)
    pairs = scanner_pairs(valid.shape[1])
    return np.stack([valid[:, i] & valid[:, j] for i, j in pairs], axis=1)


def task_dice(
    preds: np.ndarray, labels: np.ndarray, num_classes: int, valid: np.ndarray | None = None
) -> np.ndarray:
    """Per-sample, per-scanner, per-class Dice of predictions against ground truth.

    Parameters
    ----------
    preds : integer array ``(N, S, H, W)``
    labels : integer array ``(N, H, W)`` or ``(N, S, H, W)``
        Ground truth in the shared (reference) frame of the paired patches, or one map per
        scanner (the ``labels`` array of ``extract --annotations``).
    valid : bool array ``(N, S)``, optional
        False where a prediction or the ground truth is missing; those entries are NaN.

    Returns
    -------
    ndarray ``(N, S, C)`` float64
    """
    preds = _check_labels(preds, num_classes, "preds")
    labels = _check_labels(labels, num_classes, "labels")
    if labels.ndim == 3:
        labels = labels[:, None]
    if preds.ndim != 4 or labels.shape not in (
        preds.shape,
        (preds.shape[0], 1, *preds.shape[2:]),
    ):
        raise ValueError(
            f"preds (N, S, H, W) {preds.shape} and labels (N, [S,] H, W) {labels.shape}"
        )
    dice = dice_per_class(preds, labels, num_classes)
    if valid is not None:
        dice[~np.asarray(valid, bool)] = np.nan
    return dice
