"""2-D UMAP embedding of patch features (McInnes et al., 2018, arXiv:1802.03426).

Features are first reduced to at most 50 principal components, the usual practice that
makes UMAP faster and less noisy on 2048-D CNN features.
"""

from __future__ import annotations

import warnings

import numpy as np

PCA_COMPONENTS = 50
MIN_POINTS = 4  # UMAP needs a neighbourhood graph; fewer points have no meaningful layout


def umap_embedding(features: np.ndarray, seed: int = 0, n_neighbors: int = 15) -> np.ndarray:
    """Embed usable patches' features in 2-D.

    Parameters
    ----------
    features : numpy.ndarray
        ``(N, S, D)`` with NaN rows for missing patches.
    seed : int
        UMAP random state; fixed so reruns give the same picture (UMAP then runs on one
        thread).
    n_neighbors : int
        UMAP neighbourhood size, capped at the number of points minus one.

    Returns
    -------
    numpy.ndarray
        float64 ``(N, S, 2)``; NaN where the patch is missing. All NaN when there are fewer
        than :data:`MIN_POINTS` usable patches.
    """
    n, s = features.shape[:2]
    out = np.full((n, s, 2), np.nan)
    have = np.isfinite(features).all(axis=-1)
    x = features[have].astype(np.float32)
    if len(x) < MIN_POINTS:
        return out
    from sklearn.decomposition import PCA
    from umap import UMAP  # imported here: umap pulls in numba, slow to import

    k = min(PCA_COMPONENTS, x.shape[0], x.shape[1])
    x = PCA(n_components=k, random_state=seed).fit_transform(x)
    reducer = UMAP(
        n_components=2,
        n_neighbors=max(2, min(n_neighbors, len(x) - 1)),
        random_state=seed,
        init="spectral" if len(x) > MIN_POINTS + 2 else "random",
    )
    with warnings.catch_warnings():
        # "n_jobs overridden by random_state" is the point of seeding, not a problem
        warnings.filterwarnings("ignore", message=".*n_jobs.*", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*k >= N.*")
        out[have] = reducer.fit_transform(x)
    return out
