"""Input-level statistics: per-patch RGB mean and standard deviation, unpaired and paired.

The paired view (SCORPION paper, Fig. 2) subtracts, for every sample, the reference
scanner's statistics of the *same tissue*, so tissue-to-tissue variation cancels and only
the scanner's effect remains; the reference sits at (0, 0) by construction.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from scorpion_build.analysis.data import PatchStore

CHANNELS = ("R", "G", "B")
# column order of the last axis of a stats array
STAT_NAMES = tuple(f"mean_{c}" for c in CHANNELS) + tuple(f"std_{c}" for c in CHANNELS)
_LEVELS = np.arange(256, dtype=np.float64)


def channel_stats(patch: np.ndarray) -> np.ndarray:
    """Mean and standard deviation of each RGB channel of one uint8 patch.

    Computed exactly from 256-bin histograms (no float copy of the patch), over every
    pixel of the patch, background included.

    Parameters
    ----------
    patch : numpy.ndarray
        uint8 ``(H, W, 3)`` RGB.

    Returns
    -------
    numpy.ndarray
        float64 ``(6,)``: ``mean_R, mean_G, mean_B, std_R, std_G, std_B`` in 0-255 grey
        levels; the standard deviation is the population one (``ddof=0``).
    """
    if patch.dtype != np.uint8 or patch.ndim != 3 or patch.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) RGB patch, got {patch.dtype} {patch.shape}")
    out = np.empty(6)
    pixels = patch.reshape(-1, 3)
    for c in range(3):
        hist = np.bincount(pixels[:, c], minlength=256).astype(np.float64)
        total = hist.sum()
        mean = hist @ _LEVELS / total
        out[c] = mean
        out[3 + c] = np.sqrt(max(hist @ (_LEVELS - mean) ** 2 / total, 0.0))
    return out


def collect_stats(store: PatchStore) -> np.ndarray:
    """Channel statistics of every patch in the store, streamed one sample at a time.

    Returns
    -------
    numpy.ndarray
        float64 ``(N, S, 6)`` in :data:`STAT_NAMES` order; NaN for patches that were not
        extracted (``store.valid`` is False).
    """
    stats = np.full((store.n_samples, len(store.scanners), 6), np.nan)
    for n, patches in store.iter_samples():
        for s in np.flatnonzero(store.valid[n]):
            stats[n, s] = channel_stats(patches[s])
    return stats


def paired_deviations(values: np.ndarray, ref_index: int) -> np.ndarray:
    """Subtract each sample's reference-scanner value from every scanner's value.

    Parameters
    ----------
    values : numpy.ndarray
        ``(N, S, ...)`` per-patch values (statistics, embeddings), NaN where missing.
    ref_index : int
        Position of the reference scanner on axis 1.

    Returns
    -------
    numpy.ndarray
        Same shape; the reference column is exactly 0 wherever it exists, and a sample
        without a reference patch is NaN throughout (it cannot be paired).
    """
    values = np.asarray(values, dtype=np.float64)
    return values - values[:, ref_index : ref_index + 1]


def stats_table(stats: np.ndarray, store: PatchStore) -> pd.DataFrame:
    """Long table: one row per extracted patch with its sample, scanner and statistics."""
    rows = []
    for n in range(stats.shape[0]):
        for s, scanner in enumerate(store.scanners):
            if np.isfinite(stats[n, s]).all():
                rows.append(
                    {"index": n, "sample_id": store.sample_ids[n], "scanner": scanner}
                    | dict(zip(STAT_NAMES, stats[n, s].tolist(), strict=True))
                )
    return pd.DataFrame(rows, columns=["index", "sample_id", "scanner", *STAT_NAMES])


def summary_table(
    values: np.ndarray, scanners: Sequence[str], names: Sequence[str] = STAT_NAMES
) -> pd.DataFrame:
    """Per scanner: number of patches, then mean and standard deviation over patches of each
    column of ``values`` (``(N, S, K)``), ignoring NaN.

    Applied to :func:`paired_deviations` output this is the per-scanner mean deviation from
    the reference (the reference row is all zeros).
    """
    rows = []
    for s, scanner in enumerate(scanners):
        v = values[:, s]
        have = np.isfinite(v).all(axis=1)
        row: dict[str, object] = {"scanner": scanner, "n": int(have.sum())}
        for k, name in enumerate(names):
            col = v[have, k]
            row[name] = float(col.mean()) if col.size else np.nan
            row[f"{name}_sd"] = float(col.std()) if col.size else np.nan
        rows.append(row)
    return pd.DataFrame(rows)
