"""The protocol's numbers from per-sample pairwise Dice (docs/contracts.md §5): average and
minimum over pairs, per class, failure rate, percentile bootstrap intervals over samples."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from scorpion_build.metrics.dice import DEFAULT_THRESHOLD, scanner_pairs


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
    dice, scanners, pairs, classes = _checked(dice, scanners, classes)
    sample_dice = dice.mean(axis=2)  # NaN stays NaN: a pair is missing for all classes at once
    present = ~np.isnan(sample_dice)
    pair_dice = _nanmean(sample_dice, axis=0)
    pair_class_dice = _nanmean(dice, axis=0)
    has_pair, worst_pair, worst_dice = _worst_pairs(sample_dice)
    failed = has_pair & (worst_dice < threshold)
    failure_rate = failed.sum() / has_pair.sum() if has_pair.any() else np.nan

    ci = (
        _bootstrap(sample_dice, failed, has_pair, pairs, scanners, n_bootstrap, confidence, seed)
        if n_bootstrap > 0 and dice.shape[0] > 0
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


def _checked(
    dice: np.ndarray, scanners: Sequence[str], classes: Sequence[str] | None
) -> tuple[np.ndarray, list[str], list[tuple[int, int]], list[str]]:
    """``(dice as float64, scanners, pairs, class names)``; ValueError on mismatched shapes."""
    dice = np.asarray(dice, np.float64)
    if dice.ndim != 3:
        raise ValueError(f"dice must be (N, P, C), got shape {dice.shape}")
    scanners = list(scanners)
    pairs = scanner_pairs(len(scanners))
    n_pairs, n_classes = dice.shape[1:]
    if n_pairs != len(pairs):
        raise ValueError(f"{len(scanners)} scanners give {len(pairs)} pairs, dice has {n_pairs}")
    classes = list(classes) if classes is not None else [f"class_{k}" for k in range(n_classes)]
    if len(classes) != n_classes:
        raise ValueError(f"{len(classes)} class names for {n_classes} classes")
    return dice, scanners, pairs, classes


def _worst_pairs(sample_dice: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per sample of ``(N, P)`` Dice: whether any pair is present, the worst pair's index
    (-1 when none) and its Dice (NaN when none)."""
    present = ~np.isnan(sample_dice)
    has_pair = present.any(axis=1)
    worst_pair = np.where(has_pair, np.argmin(np.where(present, sample_dice, np.inf), axis=1), -1)
    worst_dice = np.where(has_pair, _nanmin(np.where(present, sample_dice, np.nan), axis=1), np.nan)
    return has_pair, worst_pair, worst_dice


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
