"""Analysis figures (matplotlib, Agg, no pyplot global state): density contours as in the
SCORPION paper's Fig. 2, UMAP scatter, Fig. 1 style montages and alignment scores."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from scorpion_build.analysis.data import PatchStore
from scorpion_build.analysis.stats import CHANNELS
from scorpion_build.palette import STATUS_RGB, mpl

FLAGGED = mpl(STATUS_RGB["warn"])  # flagged patches, in the report's status colour
MASS_LEVELS = (0.9, 0.5)  # contours enclose these fractions of each scanner's patches
_GRID = 80


def scanner_colours(scanners: Sequence[str]) -> dict[str, tuple[float, float, float, float]]:
    """One fixed colour per scanner (tab10 in axis order) so every figure agrees."""
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {s: cmap(i % 10) for i, s in enumerate(scanners)}


def density_contours(ax: Axes, x: np.ndarray, y: np.ndarray, colour: object, label: str) -> None:
    """Points plus highest-density contours enclosing :data:`MASS_LEVELS` of them.

    The density is a Gaussian KDE (Scott's bandwidth). A contour's level is the density
    quantile at the points themselves, so the 50% contour holds about half the patches.
    Too few or degenerate points are shown as points only.
    """
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    few = len(x) < 5 or np.ptp(x) == 0 or np.ptp(y) == 0
    # with contours the points are context; without them they are the whole message
    ax.scatter(
        x,
        y,
        s=22 if few else 7,
        color=colour,
        alpha=0.9 if few else 0.35,
        linewidths=0,
        label=label,
    )
    if few:
        return
    from scipy.stats import gaussian_kde

    try:
        kde = gaussian_kde(np.vstack([x, y]))
    except np.linalg.LinAlgError:
        return  # collinear points: no 2-D density
    pad_x, pad_y = 0.25 * np.ptp(x), 0.25 * np.ptp(y)
    gx, gy = np.meshgrid(
        np.linspace(x.min() - pad_x, x.max() + pad_x, _GRID),
        np.linspace(y.min() - pad_y, y.max() + pad_y, _GRID),
    )
    density = kde(np.vstack([gx.ravel(), gy.ravel()])).reshape(gx.shape)
    at_points = kde(np.vstack([x, y]))
    levels = sorted({float(np.quantile(at_points, 1 - m)) for m in MASS_LEVELS})
    if len(levels) and levels[-1] < density.max():
        ax.contour(
            gx, gy, density, levels=levels, colors=[colour], linewidths=(0.8, 1.6)[: len(levels)]
        )


def _legend(ax: Axes) -> None:
    legend = ax.legend(fontsize=8, loc="best", markerscale=2)
    for handle in legend.legend_handles:
        handle.set_alpha(1.0)  # the faint scatter alpha would make the key unreadable


def plot_channel_density(
    stats: np.ndarray, paired: np.ndarray, scanners: Sequence[str], reference: str, path: Path
) -> Path:
    """Fig. 2 (input level): per channel, patch mean (x) vs standard deviation (y).

    Top row unpaired (each scanner's own distribution); bottom row paired (deviation from the
    reference scanner's patch of the same sample; the reference is the cross at 0, 0).
    """
    colours = scanner_colours(scanners)
    fig = Figure(figsize=(13, 8.2), dpi=90)
    axes = fig.subplots(2, 3)
    for c, channel in enumerate(CHANNELS):
        for row, (values, kind) in enumerate(((stats, "unpaired"), (paired, "paired"))):
            ax = axes[row, c]
            for s, scanner in enumerate(scanners):
                if kind == "paired" and scanner == reference:
                    continue
                density_contours(
                    ax, values[:, s, c], values[:, s, 3 + c], colours[scanner], scanner
                )
            if kind == "paired":
                ax.axhline(0, color="0.7", lw=0.6)
                ax.axvline(0, color="0.7", lw=0.6)
                ax.plot([0], [0], "k+", ms=12, mew=2, label=f"{reference} (reference)")
                ax.set_xlabel(f"Δ mean {channel} (grey levels)")
                ax.set_ylabel(f"Δ std {channel}")
            else:
                ax.set_xlabel(f"mean {channel} (grey levels)")
                ax.set_ylabel(f"std {channel}")
            ax.set_title(f"{channel}, {kind}")
    _legend(axes[1, 2])
    _legend(axes[0, 2])
    # a fixed grid needs no tight_layout, which would double the drawing time
    fig.subplots_adjust(left=0.06, right=0.985, bottom=0.07, top=0.96, hspace=0.32, wspace=0.26)
    fig.savefig(path)
    return path


def plot_embedding(
    emb: np.ndarray,
    paired: np.ndarray,
    scanners: Sequence[str],
    reference: str,
    path: Path,
    title: str,
) -> Path:
    """Fig. 2 (feature level): UMAP of patch features, unpaired and paired to the reference."""
    colours = scanner_colours(scanners)
    fig = Figure(figsize=(12, 5.4), dpi=90)
    ax_u, ax_p = fig.subplots(1, 2)
    for s, scanner in enumerate(scanners):
        density_contours(ax_u, emb[:, s, 0], emb[:, s, 1], colours[scanner], scanner)
        if scanner != reference:
            density_contours(ax_p, paired[:, s, 0], paired[:, s, 1], colours[scanner], scanner)
    ax_p.axhline(0, color="0.7", lw=0.6)
    ax_p.axvline(0, color="0.7", lw=0.6)
    ax_p.plot([0], [0], "k+", ms=12, mew=2, label=f"{reference} (reference)")
    ax_u.set_title("unpaired")
    ax_p.set_title(f"paired (deviation from {reference}, same sample)")
    for ax in (ax_u, ax_p):
        ax.set_xlabel("UMAP 1")
        ax.set_ylabel("UMAP 2")
        _legend(ax)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    return path


def plot_montage(store: PatchStore, samples: Sequence[int], path: Path, tile_px: int = 256) -> Path:
    """Fig. 1 style: each row one tissue region (sample), each column one scanner."""
    n_s = len(store.scanners)
    fig = Figure(figsize=(2.3 * n_s, 2.45 * len(samples) + 0.3), dpi=100)
    axes = fig.subplots(len(samples), n_s, squeeze=False)
    for r, n in enumerate(samples):
        for s, scanner in enumerate(store.scanners):
            ax = axes[r, s]
            ax.set_xticks([])
            ax.set_yticks([])
            if store.valid[n, s]:
                ax.imshow(store.thumbnail(n, s, tile_px))
            else:
                ax.imshow(np.full((tile_px, tile_px, 3), 220, np.uint8))
                ax.text(tile_px / 2, tile_px / 2, "not extracted", ha="center", va="center")
            if r == 0:
                ax.set_title(scanner + (" (ref)" if scanner == store.reference else ""))
        axes[r, 0].set_ylabel(store.sample_ids[n], fontsize=9)
    top = 1 - 0.3 / fig.get_figheight()
    fig.subplots_adjust(left=0.05, right=0.995, bottom=0.01, top=top, wspace=0.04, hspace=0.06)
    fig.savefig(path)
    return path


def plot_similarity(
    patches: pd.DataFrame, scanners: Sequence[str], reference: str, path: Path
) -> Path:
    """Alignment score (NCC to the reference patch) per scanner; flagged patches in orange."""
    fig = Figure(figsize=(1.4 * len(scanners) + 2.5, 3.8), dpi=90)
    ax = fig.add_subplot()
    rng = np.random.default_rng(0)  # horizontal jitter only, fixed for reproducible pictures
    for s, scanner in enumerate(scanners):
        rows = patches[(patches["scanner"] == scanner) & np.isfinite(patches["similarity"])]
        if scanner == reference or rows.empty:
            continue
        flagged = rows["status"] != "ok"
        x = s + rng.uniform(-0.18, 0.18, len(rows))
        ax.scatter(x[~flagged], rows["similarity"][~flagged], s=10, color="0.35", alpha=0.6)
        ax.scatter(x[flagged], rows["similarity"][flagged], s=22, color=FLAGGED, label=None)
        ax.hlines(rows["similarity"].median(), s - 0.3, s + 0.3, color="k", lw=1.5)
    ax.set_xticks(range(len(scanners)), scanners)
    ax.set_xlim(-0.6, len(scanners) - 0.4)
    ax.set_ylabel("NCC to reference patch")
    ax.set_title("Patch alignment (orange: flagged; bar: median)")
    fig.tight_layout()
    fig.savefig(path)
    return path


def write_pair_image(store: PatchStore, n: int, s: int, path: Path, tile_px: int = 224) -> Path:
    """Reference patch beside one scanner's patch of the same sample, as a PNG."""
    gap = np.full((tile_px, 6, 3), 255, np.uint8)
    tiles = []
    for j in (store.ref_index, s):
        tiles.append(
            store.thumbnail(n, j, tile_px)
            if store.valid[n, j]
            else np.full((tile_px, tile_px, 3), 220, np.uint8)
        )
    image = np.hstack([tiles[0], gap, tiles[1]])
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {path}")
    return path
