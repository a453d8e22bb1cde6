"""Label maps from annotations: rasterised per patch, for every scanner, into ``patches.zarr``.

Polygons live in reference level-0 px. An affine maps vertices exactly, so a label map is
drawn by mapping the vertices into the patch and filling there (holes stay empty), never
by warping a raster. docs/contracts.md section 4 describes the ``labels``
array.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import zarr

from scorpion_build import geometry as geo
from scorpion_build.annotations import Annotation, AnnotationSet

LABELS_ARRAY = "labels"
UNANNOTATED = "unannotated_samples"
"""Attr of ``labels``: axis-0 positions of samples from slides without annotations, whose
all-zero maps mean "not annotated", not "background"."""


def rasterize(
    annotations: Sequence[Annotation],
    ref_to_out: geo.Affine,
    shape: tuple[int, int],
    only: Sequence[int] | None = None,
) -> np.ndarray:
    """Class map (H, W) uint8 of ``annotations`` seen through ``ref_to_out``.

    Parameters
    ----------
    annotations : drawn in order; where features overlap the later one wins.
    ref_to_out : affine, reference level-0 px -> output px (docs/contracts.md section 2).
    shape : output (height, width) px.
    only : draw only these class indices (1 each), for masks such as ``--roi-class``.

    A pixel takes a polygon's class when its centre lies inside (even-odd rule over the
    exterior and its holes), so a polygon covers exactly its area, with no half-pixel bias.
    Only vertices are mapped, exact for an affine.
    """
    out = np.zeros(shape, np.uint8)
    h, w = shape
    corners = np.array([[0.0, 0.0], [w, 0.0], [0.0, h], [w, h]])
    view = geo.apply(geo.invert(ref_to_out), corners)  # output frame in reference px
    vx0, vy0 = view.min(axis=0)
    vx1, vy1 = view.max(axis=0)
    for ann in annotations:
        if only is not None and ann.class_index not in only:
            continue
        x0, y0, x1, y1 = ann.bounds
        if x1 < vx0 or x0 > vx1 or y1 < vy0 or y0 > vy1:
            continue
        value = 1 if only is not None else ann.class_index
        edges = geo.apply(ref_to_out, ann.edges.reshape(-1, 2)).reshape(-1, 2, 2)
        out[inside(edges, shape)] = value
    return out


def inside(edges: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixels whose centre lies inside closed rings given as edges (E, 2, 2), even-odd rule.

    A scanline fill: each edge crosses the rows whose centre y it spans (half-open, so a
    vertex counts once); a crossing at x flips every pixel whose centre lies right of x.
    Exact at pixel centres, O(crossings + pixels) whatever the number of vertices.
    """
    h, w = shape
    (x0, y0), (x1, y1) = edges[:, 0].T, edges[:, 1].T
    lo, hi = np.minimum(y0, y1), np.maximum(y0, y1)
    # rows r with lo <= r + 0.5 < hi, clipped to the output
    first = np.clip(np.ceil(lo - 0.5), 0, h).astype(np.int64)
    stop = np.clip(np.ceil(hi - 0.5), 0, h).astype(np.int64)
    count = np.maximum(stop - first, 0)
    keep = count > 0
    idx = np.repeat(np.flatnonzero(keep), count[keep])
    rows = np.repeat(first[keep], count[keep]) + _ramps(count[keep])
    t = (rows + 0.5 - y0[idx]) / (y1[idx] - y0[idx])
    xs = x0[idx] + t * (x1[idx] - x0[idx])
    # first column whose centre c + 0.5 lies right of the crossing
    cols = np.clip(np.floor(xs - 0.5).astype(np.int64) + 1, 0, w)
    flips = np.zeros((h, w + 1), np.int32)
    np.add.at(flips, (rows, cols), 1)
    return (np.cumsum(flips[:, :w], axis=1) & 1).astype(bool)


def _ramps(counts: np.ndarray) -> np.ndarray:
    """0..n-1 for each n in ``counts``, concatenated."""
    ends = np.cumsum(counts)
    return np.arange(ends[-1] if len(ends) else 0) - np.repeat(ends - counts, counts)


def sample_label_map(
    annotations: Sequence[Annotation], ref_patch_to_slide: geo.Affine, size: int
) -> np.ndarray:
    """Label map (size, size) of one sample in its reference patch's pixels.

    It is every scanner's label map too: each scanner's ``patch_to_slide`` is the
    registration, as refined for this patch, composed with the reference's, so
    ``inverse(patch_to_slide(s)) . registration(s)`` is ``inverse(patch_to_slide(ref))``
    (docs/contracts.md section 2): the same tissue sits on the same pixel in every scanner.
    """
    return rasterize(annotations, geo.invert(ref_patch_to_slide), (size, size))


def create_labels_array(
    group: zarr.Group,
    samples: pd.DataFrame,
    n_scanners: int,
    size: int,
    annotations: AnnotationSet,
) -> zarr.Array:
    """``labels`` (N, S, size, size) uint8 beside ``patches`` for ``samples`` (slide_id and
    index per row), class names and the unannotated samples in its attrs."""
    n = len(samples)
    arr = group.create_array(
        LABELS_ARRAY,
        shape=(n, n_scanners, size, size),
        chunks=(1, 1, size, size),
        dtype="uint8",
        fill_value=0,
        compressors=[zarr.codecs.BloscCodec(cname="zstd", clevel=3, shuffle="noshuffle")],
    )
    bare = ~samples["slide_id"].isin(list(annotations.by_slide))
    arr.attrs.update(
        {
            "classes": list(annotations.classes),
            UNANNOTATED: [int(i) for i in samples.loc[bare, "index"]],
        }
    )
    return arr


def write_sample_labels(
    arr: zarr.Array, rows: list[dict], annotations: Sequence[Annotation], size: int
) -> None:
    """Write one sample's label map into the ``labels`` array ``arr`` for every scanner
    whose patch is not ``failed``."""
    ref = next((r for r in rows if r["scanner_index"] == 0), None)
    if ref is None or ref["status"] == "failed":
        return
    label = sample_label_map(annotations, geo.from_six(ref["patch_to_slide"]), size)
    for row in rows:
        if row["status"] != "failed":
            arr[row["index"], row["scanner_index"]] = label


def roi_mask(
    annotations: Sequence[Annotation],
    roi: Sequence[int],
    ref_size_px: tuple[int, int],
    shape: tuple[int, int],
) -> np.ndarray:
    """Where classes ``roi`` are annotated, on a (H, W) raster spanning the whole reference
    slide of level-0 (width, height) ``ref_size_px``: ``--roi-class`` sampling."""
    (ref_w, ref_h), (h, w) = ref_size_px, shape
    return rasterize(annotations, geo.scaling(w / ref_w, h / ref_h), shape, only=roi) > 0
