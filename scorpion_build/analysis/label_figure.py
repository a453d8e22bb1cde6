"""The label-overlay picture: one sample's label map over its patch in every scanner.

Each scanner's label map (``labels`` in patches.zarr, docs/contracts.md section 4) is drawn
over that scanner's image as translucent class colours with outlines, so a reader sees
whether the annotation sits on the same tissue in every scan.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import zarr
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from scorpion_build.analysis.data import PatchStore
from scorpion_build.labels import LABELS_ARRAY

# Class colours (RGB) that stand out from H&E pinks and purples; background stays uncoloured.
PALETTE = np.array(
    [[0, 0, 0], [255, 200, 0], [0, 170, 255], [60, 200, 75], [255, 110, 0], [200, 0, 200]],
    np.uint8,
)


def class_colours(n_classes: int) -> np.ndarray:
    """(n_classes, 3) uint8 RGB, cycling the palette past its length."""
    return PALETTE[np.r_[0, 1 + (np.arange(1, n_classes) - 1) % (len(PALETTE) - 1)]]


def overlay(image: np.ndarray, label: np.ndarray, n_classes: int, alpha: float = 0.4):
    """RGB ``image`` with ``label``'s classes blended in (``alpha``) and outlined."""
    colours = class_colours(n_classes)
    out = image.astype(np.float32)
    tinted = colours[np.minimum(label, n_classes - 1)].astype(np.float32)
    fg = label > 0
    out[fg] = (1 - alpha) * out[fg] + alpha * tinted[fg]
    out = out.astype(np.uint8)
    for c in range(1, n_classes):
        contours, _ = cv2.findContours(
            (label == c).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE
        )
        width = max(1, round(label.shape[0] / 192))  # about 1 px in a 256 px figure tile
        cv2.drawContours(out, contours, -1, tuple(int(v) for v in colours[c]), width)
    return out


def plot_label_overlay(store: PatchStore, labels: zarr.Array, n: int, path: Path) -> Path:
    """One row, one column per scanner: sample ``n`` with its label map; a class legend."""
    classes = list(labels.attrs.get("classes", []))
    n_classes = max(len(classes), int(np.asarray(labels[n]).max()) + 1)
    n_s = len(store.scanners)
    fig = Figure(figsize=(2.6 * n_s, 3.2), dpi=100)
    axes = fig.subplots(1, n_s, squeeze=False)[0]
    for s, scanner in enumerate(store.scanners):
        ax = axes[s]
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(scanner + (" (ref)" if scanner == store.reference else ""), fontsize=10)
        if store.valid[n, s]:
            ax.imshow(overlay(np.asarray(store.array[n, s]), np.asarray(labels[n, s]), n_classes))
        else:
            ax.text(0.5, 0.5, "not extracted", ha="center", va="center", transform=ax.transAxes)
    colours = class_colours(n_classes) / 255.0
    handles = [Patch(color=colours[c], label=classes[c]) for c in range(1, len(classes))]
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
