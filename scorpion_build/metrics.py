"""Cross-scanner consistency numbers (docs/contracts.md §5): pure NumPy functions over label maps.

A *label map* is an integer array of class indices, one per pixel. Predictions for a paired
dataset are stacked as ``(N, S, H, W)``: N samples, S scanners in a fixed axis order. Every
unordered scanner pair ``(i, j)``, ``i < j``, is compared in the order of
:func:`scanner_pairs`.

Dice between two maps for class c is ``2 |A_c & B_c| / (|A_c| + |B_c|)``; a class absent from
both maps counts as 1.0 (they agree that it is absent). Per-sample Dice is the mean over
classes; a pair's Dice is the mean over samples; ``average`` and ``minimum`` are taken over
pairs, as in the SCORPION paper (Ryu et al., "SCORPION: Addressing Scanner-Induced
Variability in Histopathology").

No torch here, so the trainer and the benchmark share the same numbers.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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


def _nanmean(x: np.ndarray, axis: int | tuple[int, ...] | None = None) -> np.ndarray:
    with warnings.catch_warnings():  # all-NaN slices are expected (a pair missing everywhere)
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=axis)


def _nanmin(x: np.ndarray, axis: int | None = None) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmin(x, axis=axis)


def _number(x: float) -> float | None:
    """JSON-friendly float: NaN (nothing to average) becomes None."""
    return None if not np.isfinite(x) else float(x)


@dataclass(frozen=True)
class ConsistencySummary:
    """The consistency protocol's numbers for one model on one paired dataset.

    Attributes
    ----------
    scanners, classes : names in axis order.
    pairs : ``(i, j)`` scanner index pairs, :func:`scanner_pairs` order.
    sample_dice : ``(N, P)`` per-sample Dice (class mean), NaN where the pair is missing.
    pair_dice : ``(P,)`` mean over samples per pair.
    pair_class_dice : ``(P, C)`` mean over samples per pair and class.
    pair_n : ``(P,)`` samples that had both scanners of the pair.
    average, minimum : mean and minimum of ``pair_dice`` over pairs.
    per_class_average, per_class_minimum : ``(C,)`` the same per class.
    worst_pair : ``(N,)`` index into ``pairs`` of each sample's lowest Dice (-1: no pair).
    worst_dice : ``(N,)`` that Dice (NaN: no pair).
    threshold : worst-pair Dice under which a sample counts as a failure.
    failure_rate : fraction of samples (with at least one pair) whose worst pair < threshold.
    ci : bootstrap percentile intervals over samples, ``{name: (low, high)}`` for
        ``average``, ``minimum``, ``failure_rate`` and ``pair:<a>-<b>``.
    """

    scanners: list[str]
    classes: list[str]
    pairs: list[tuple[int, int]]
    sample_dice: np.ndarray
    pair_dice: np.ndarray
    pair_class_dice: np.ndarray
    pair_n: np.ndarray
    average: float
    minimum: float
    per_class_average: np.ndarray
    per_class_minimum: np.ndarray
    worst_pair: np.ndarray
    worst_dice: np.ndarray
    threshold: float
    failure_rate: float
    ci: dict[str, tuple[float, float]]
    confidence: float
    n_bootstrap: int

    @property
    def n_samples(self) -> int:
        """Samples with at least one scanner pair."""
        return int(np.count_nonzero(self.worst_pair >= 0))

    def pair_name(self, p: int) -> str:
        i, j = self.pairs[p]
        return f"{self.scanners[i]}-{self.scanners[j]}"

    def worst_samples(self, k: int) -> list[int]:
        """Indices of the k samples with the lowest worst-pair Dice, lowest first."""
        order = np.argsort(np.where(np.isnan(self.worst_dice), np.inf, self.worst_dice))
        return [int(n) for n in order[: min(k, self.n_samples)]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with the docs/contracts.md §5 keys and the rest."""

        def interval(name: str) -> list[float | None]:
            low, high = self.ci.get(name, (np.nan, np.nan))
            return [_number(low), _number(high)]

        pairwise = []
        for p, (i, j) in enumerate(self.pairs):
            pairwise.append(
                {
                    "a": self.scanners[i],
                    "b": self.scanners[j],
                    "dice": _number(self.pair_dice[p]),
                    "ci": interval(f"pair:{self.pair_name(p)}"),
                    "n": int(self.pair_n[p]),
                    "per_class": {
                        c: _number(self.pair_class_dice[p, k]) for k, c in enumerate(self.classes)
                    },
                }
            )
        return {
            "scanners": list(self.scanners),
            "classes": list(self.classes),
            "n_samples": self.n_samples,
            "pairwise": pairwise,
            "average": _number(self.average),
            "minimum": _number(self.minimum),
            "average_ci": interval("average"),
            "minimum_ci": interval("minimum"),
            "per_class": {
                c: {
                    "average": _number(self.per_class_average[k]),
                    "minimum": _number(self.per_class_minimum[k]),
                }
                for k, c in enumerate(self.classes)
            },
            "failure_threshold": self.threshold,
            "failure_rate": _number(self.failure_rate),
            "failure_rate_ci": interval("failure_rate"),
            "confidence": self.confidence,
            "n_bootstrap": self.n_bootstrap,
        }


def consistency_summary(
    dice: np.ndarray,
    scanners: Sequence[str],
    classes: Sequence[str] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> ConsistencySummary:
    """Summarise per-sample pairwise Dice into the protocol's numbers.

    Parameters
    ----------
    dice : ``(N, P, C)`` from :func:`pairwise_dice` (NaN = pair missing for that sample).
    scanners : S names in axis order; ``P`` must equal ``S (S - 1) / 2``.
    classes : C names (default ``class_0`` ...).
    threshold : a sample fails when its worst pair's Dice is below this.
    n_bootstrap : resamples of the samples (with replacement) for percentile intervals;
        0 skips them.
    confidence : interval coverage, 0.95 gives the 2.5th and 97.5th percentiles.
    seed : bootstrap RNG seed; the same seed gives the same intervals.
    """
    dice = np.asarray(dice, np.float64)
    if dice.ndim != 3:
        raise ValueError(f"dice must be (N, P, C), got shape {dice.shape}")
    scanners = list(scanners)
    pairs = scanner_pairs(len(scanners))
    n, n_pairs, n_classes = dice.shape
    if n_pairs != len(pairs):
        raise ValueError(f"{len(scanners)} scanners give {len(pairs)} pairs, dice has {n_pairs}")
    classes = list(classes) if classes is not None else [f"class_{k}" for k in range(n_classes)]
    if len(classes) != n_classes:
        raise ValueError(f"{len(classes)} class names for {n_classes} classes")

    sample_dice = dice.mean(axis=2)  # NaN stays NaN: a pair is missing for all classes at once
    present = ~np.isnan(sample_dice)
    pair_dice = _nanmean(sample_dice, axis=0)
    pair_class_dice = _nanmean(dice, axis=0)
    has_pair = present.any(axis=1)
    worst_pair = np.where(has_pair, np.argmin(np.where(present, sample_dice, np.inf), axis=1), -1)
    worst_dice = np.where(has_pair, _nanmin(np.where(present, sample_dice, np.nan), axis=1), np.nan)
    failed = has_pair & (worst_dice < threshold)
    failure_rate = failed.sum() / has_pair.sum() if has_pair.any() else np.nan

    ci = (
        _bootstrap(sample_dice, failed, has_pair, pairs, scanners, n_bootstrap, confidence, seed)
        if n_bootstrap > 0 and n > 0
        else {}
    )
    return ConsistencySummary(
        scanners=scanners,
        classes=classes,
        pairs=pairs,
        sample_dice=sample_dice,
        pair_dice=pair_dice,
        pair_class_dice=pair_class_dice,
        pair_n=present.sum(axis=0),
        average=float(_nanmean(pair_dice)),
        minimum=float(_nanmin(pair_dice)),
        per_class_average=_nanmean(pair_class_dice, axis=0),
        per_class_minimum=_nanmin(pair_class_dice, axis=0),
        worst_pair=worst_pair.astype(np.int64),
        worst_dice=worst_dice,
        threshold=float(threshold),
        failure_rate=float(failure_rate),
        ci=ci,
        confidence=float(confidence),
        n_bootstrap=int(n_bootstrap),
    )


def _bootstrap(
    sample_dice: np.ndarray,
    failed: np.ndarray,
    has_pair: np.ndarray,
    pairs: list[tuple[int, int]],
    scanners: list[str],
    n_bootstrap: int,
    confidence: float,
    seed: int,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap over samples, vectorised as resample-count weights ``(B, N)``.

    A resample is a multiset of samples, so each statistic is a weighted mean with weights =
    how often each sample was drawn; one matrix product evaluates all B resamples.
    """
    n = sample_dice.shape[0]
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=n_bootstrap).astype(np.float64)
    present = ~np.isnan(sample_dice)
    with np.errstate(invalid="ignore", divide="ignore"):
        pair_means = (weights @ np.where(present, sample_dice, 0.0)) / (weights @ present)
        fail_rate = (weights @ failed) / (weights @ has_pair)
    stats = {"average": _nanmean(pair_means, axis=1), "minimum": _nanmin(pair_means, axis=1)}
    stats["failure_rate"] = fail_rate
    for p, (i, j) in enumerate(pairs):
        stats[f"pair:{scanners[i]}-{scanners[j]}"] = pair_means[:, p]
    tail = 100.0 * (1.0 - confidence) / 2.0
    out = {}
    for name, values in stats.items():
        values = values[np.isfinite(values)]
        if values.size == 0:
            out[name] = (np.nan, np.nan)
        else:
            low, high = np.percentile(values, [tail, 100.0 - tail])
            out[name] = (float(low), float(high))
    return out


def task_summary(
    dice: np.ndarray, scanners: Sequence[str], classes: Sequence[str]
) -> dict[str, Any]:
    """Mean task Dice per scanner (and per class) from :func:`task_dice`'s ``(N, S, C)``.

    Returns ``{"per_scanner": {scanner: {"dice", "n", "per_class"}}, "average"}`` where
    ``dice`` is the class mean averaged over samples that have both prediction and label.
    """
    dice = np.asarray(dice, np.float64)
    per_sample = dice.mean(axis=2)
    per_scanner = {}
    for s, name in enumerate(scanners):
        per_scanner[name] = {
            "dice": _number(_nanmean(per_sample[:, s])),
            "n": int(np.count_nonzero(~np.isnan(per_sample[:, s]))),
            "per_class": {c: _number(_nanmean(dice[:, s, k])) for k, c in enumerate(classes)},
        }
    return {
        "per_scanner": per_scanner,
        "average": _number(_nanmean(_nanmean(per_sample, axis=0))),
    }
