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

No torch here, so the trainer and the benchmark share the same numbers. ``dice`` counts
(per class, per pair, against ground truth); ``summary`` turns them into the protocol's
averages, minima, failure rate and bootstrap intervals.
"""

from scorpion_build.metrics.dice import (
    DEFAULT_THRESHOLD,
    dice_per_class,
    pair_valid,
    pairwise_dice,
    scanner_pairs,
    task_dice,
)
from scorpion_build.metrics.summary import ConsistencySummary, consistency_summary, task_summary

__all__ = [
    "DEFAULT_THRESHOLD",
    "ConsistencySummary",
    "consistency_summary",
    "dice_per_class",
    "pair_valid",
    "pairwise_dice",
    "scanner_pairs",
    "task_dice",
    "task_summary",
]
