"""Train / val / test splits that keep every group (specimen, slide) in one split."""

from __future__ import annotations

import numpy as np

HELD_FRACTION = 0.15
"""Share of the groups in val, and again in test (at least one each)."""


def group_splits(owners: list[int], n_groups: int, rng: np.random.Generator) -> list[str]:
    """Split of each item, about 70/15/15, by group when there are at least three groups.

    Parameters
    ----------
    owners : group index (0..n_groups-1) of each item, e.g. its slide.
    rng : draws which groups (or, with fewer than three groups, which items) are held out.

    With fewer than three groups no split could keep groups apart, so items are split
    instead (tissue then leaks between splits; callers should say so).
    """
    if n_groups >= 3:
        n_held = max(1, round(HELD_FRACTION * n_groups))
        order = rng.permutation(n_groups)
        split_of = {int(s): "train" for s in order}
        for s in order[:n_held]:
            split_of[int(s)] = "val"
        for s in order[n_held : 2 * n_held]:
            split_of[int(s)] = "test"
        return [split_of[o] for o in owners]
    n = len(owners)
    n_held = max(1, round(HELD_FRACTION * n)) if n >= 3 else 0
    order = rng.permutation(n)
    out = ["train"] * n
    for k in order[:n_held]:
        out[k] = "val"
    for k in order[n_held : 2 * n_held]:
        out[k] = "test"
    return out
