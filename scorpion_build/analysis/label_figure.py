"""The label-overlay picture: one sample's label map over its patch in every scanner.

Each scanner's label map (``labels`` in patches.zarr, docs/contracts.md section 4) is drawn
over that scanner's image as translucent class colours with outlines, so a reader sees
whether the annotation sits on the same tissue in every scan.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr
from matplotlib.figure import Figure

from scorpion_build.analysis.data import PatchStore
from scorpion_build.labels import LABELS_ARRAY
from scorpion_build.palette import class_legend, overlay


def plot_label_overlay(store: PatchStore, labels: zarr.Array, n: int, path: Path) -> Path:
    """One row, one column per scanner: sample ``n`` with its label map; a class legend."""
    classes = list(labels.attrs.get("classes", []))
    n_s = len(store.scanners)
    fig = Figure(figsize=(2.6 * n_s, 3.2), dpi=100)
    axes = fig.subplots(1, n_s, squeeze=False)[0]
    for s, scanner in enumerate(store.scanners):
        ax = axes[s]
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(scanner + (" (ref)" if scanner == store.reference else ""), fontsize=10)
        if store.valid[n, s]:
            ax.imshow(overlay(np.asarray(store.array[n, s]), np.asarray(labels[n, s])))
        else:
            ax.text(0.5, 0.5, "not extracted", ha="center", va="center", transform=ax.transAxes)
    handles = class_legend(classes)
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=9, frameon=False)
    fig.suptitle(f"{store.sample_ids[n]}: labels carried to every scanner", fontsize=10)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.1, top=0.86, wspace=0.04)
    fig.savefig(path)
    return path


def pick_labelled_sample(store: PatchStore, labels: zarr.Array) -> int | None:
    """The complete sample (every scanner extracted) showing the most annotated classes."""
    best, best_score = None, -1.0
    for n in np.flatnonzero(store.valid.all(axis=1)):
        ref = np.asarray(labels[n, store.ref_index])
        present = np.bincount(ref.ravel(), minlength=2)[1:] > 0.02 * ref.size
        score = present.sum() + (ref > 0).mean()  # more classes first, then more area
        if score > best_score:
            best, best_score = int(n), float(score)
    return best


def label_section(store: PatchStore, figures: Path) -> dict | None:
    """The report's label section (picture + what it shows), None without a labels array."""
    group = zarr.open_group(str(store.path), mode="r")
    if LABELS_ARRAY not in group:
        return None
    labels = group[LABELS_ARRAY]
    n = pick_labelled_sample(store, labels)
    if n is None:
        return None
    path = plot_label_overlay(store, labels, n, figures / "labels.png")
    return {
        "figure": f"{figures.name}/{path.name}",
        "sample": store.sample_ids[n],
        "classes": list(labels.attrs.get("classes", [])),
    }
