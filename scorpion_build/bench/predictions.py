"""Prediction stores and ground truth: the label maps the metrics compare.

Predictions are ``(N, S, H, W)`` uint8 class indices aligned with a :class:`PatchSource`.
They come from a Zarr array (the benchmark's own ``predictions.zarr``, or any model's), or
from PNG label maps in the release layout. :data:`MISSING` (255) marks a patch without a
prediction, so a Zarr array left partly unwritten reads as "missing", never as class 0.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import zarr

from scorpion_build.bench.layout import (
    LABEL_STEM,
    DataError,
    match_samples,
    open_zarr_array,
    read_label_map,
    sample_dirs,
    sample_id,
    scan_layout,
)
from scorpion_build.bench.sources import PatchSource

MISSING = 255
PREDICTIONS_ARRAY = "predictions"


def create_prediction_array(path: Path, source: PatchSource, attrs: dict[str, Any]) -> zarr.Array:
    """A fresh ``(N, S, H, W)`` uint8 Zarr array for ``source``, one chunk per patch, all MISSING.

    ``attrs`` (e.g. the checkpoint's hash) are stored beside scanners and sample ids.
    """
    n, s = source.valid.shape
    array = zarr.create_array(
        store=str(path),
        shape=(n, s, *source.size_px),
        chunks=(1, 1, *source.size_px),
        dtype=np.uint8,
        fill_value=MISSING,
        overwrite=True,
    )
    array.attrs.update(
        {
            "scanners": source.scanners,
            "sample_ids": source.sample_ids,
            "missing_value": MISSING,
            "complete": False,
            **attrs,
        }
    )
    return array


class Predictions(ABC):
    """Predicted label maps aligned with the data: ``read(n0, n1)`` -> ``(n1-n0, S, H, W)``.

    A plane that is MISSING everywhere has no prediction; MISSING pixels inside a predicted
    plane belong to no class.
    """

    path: Path
    size_px: tuple[int, int]  # label-map height and width
    attrs: dict[str, Any]  # metadata stored with the predictions (e.g. "classes")
    matched_by = "axis order"  # how samples were paired with the data's

    @abstractmethod
    def read(self, n0: int, n1: int) -> np.ndarray:
        """Samples ``n0:n1`` as uint8; MISSING where there is no prediction."""


class ZarrPredictions(Predictions):
    """A Zarr ``(N, S, H, W)`` integer array (or a group holding ``predictions``).

    Axis order must be the data's; ``scanners``/``sample_ids`` attrs, when present, are
    checked against it.
    """

    def __init__(self, path: Path, source: PatchSource) -> None:
        self.path = path
        node, _ = open_zarr_array(path, PREDICTIONS_ARRAY)
        if node.ndim != 4 or not np.issubdtype(node.dtype, np.integer):
            raise DataError(
                f"{path}: {node.dtype} {node.shape}; predictions must be integer class indices "
                "shaped (N, S, H, W)"
            )
        expected = source.valid.shape
        if tuple(node.shape[:2]) != expected:
            raise DataError(
                f"{path}: {node.shape[0]} samples x {node.shape[1]} scanners, but the data "
                f"{source.path} has {expected[0]} x {expected[1]}; predict on the same data"
            )
        for key, ours in (("scanners", source.scanners), ("sample_ids", source.sample_ids)):
            theirs = node.attrs.get(key)
            if theirs is not None and list(theirs) != list(ours):
                raise DataError(
                    f"{path}: attrs '{key}' {list(theirs)[:5]} differ from the data's "
                    f"{list(ours)[:5]}; the predictions belong to other data"
                )
        self._array = node
        self.attrs = dict(node.attrs)
        self.size_px = (int(node.shape[2]), int(node.shape[3]))

    def read(self, n0: int, n1: int) -> np.ndarray:
        block = np.asarray(self._array[n0:n1])
        if block.dtype != np.uint8:
            if block.max(initial=0) > MISSING or block.min(initial=0) < 0:
                raise DataError(f"{self.path}: class indices outside 0..255")
            block = block.astype(np.uint8)
        return block


class PngPredictions(Predictions):
    """PNG label maps in the release layout, ``slide_{i}/sample_{j}/<scanner>.png``."""

    def __init__(self, root: Path, source: PatchSource) -> None:
        self.path, self.attrs = root, {}
        table = scan_layout(root, (".png",))
        if not table:
            raise DataError(
                f"{root}: no PNG label maps found; --predictions takes a Zarr (N, S, H, W) array "
                "or a folder slide_{i}/sample_{j}/<scanner>.png"
            )
        found = {name for files in table.values() for name in files}
        if not found & set(source.scanners):
            raise DataError(
                f"{root}: PNG names {sorted(found)} match none of the data's scanners "
                f"{source.scanners}; name each map <scanner>.png"
            )
        mapping, self.matched_by = match_samples(source.sample_ids, list(table), root, "PNG")
        self._files = [
            [table[key].get(name) if key is not None else None for name in source.scanners]
            for key in mapping
        ]
        first = next(f for row in self._files for f in row if f is not None)
        self.size_px = read_label_map(first).shape[:2]

    def read(self, n0: int, n1: int) -> np.ndarray:
        n_scanners = len(self._files[0])
        block = np.full((n1 - n0, n_scanners, *self.size_px), MISSING, np.uint8)
        for n in range(n0, n1):
            for s, path in enumerate(self._files[n]):
                if path is not None:
                    block[n - n0, s] = _same_size(read_label_map(path), self.size_px, path)
        return block


def _same_size(label: np.ndarray, size_px: tuple[int, int], path: Path) -> np.ndarray:
    if label.shape != size_px:
        raise DataError(
            f"{path}: {label.shape[1]}x{label.shape[0]} px, the other maps are "
            f"{size_px[1]}x{size_px[0]} px; write every label map at one size"
        )
    return label


def open_predictions(path: str | Path, source: PatchSource) -> Predictions:
    """Open ``--predictions``: a Zarr array/group, or a release-layout folder of PNGs."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such predictions file or folder")
    if any((path / m).is_file() for m in ("zarr.json", ".zarray", ".zgroup")):
        return ZarrPredictions(path, source)
    if path.is_dir():
        return PngPredictions(path, source)
    raise DataError(
        f"{path}: unknown predictions format; pass a Zarr (N, S, H, W) array or a folder "
        "slide_{i}/sample_{j}/<scanner>.png"
    )


class GroundTruth:
    """``label.png`` per sample in a release-layout folder, aligned with the data's samples.

    ``read(n, size_px)`` gives the map at the predictions' size (nearest-neighbour, so class
    indices stay class indices) or None when the sample has no ground truth.
    """

    def __init__(self, root: str | Path, source: PatchSource) -> None:
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"{root}: no such labels folder")
        files = {
            sample_id(root, d): d / f"{LABEL_STEM}.png"
            for d in sample_dirs(root)
            if (d / f"{LABEL_STEM}.png").is_file()
        }
        if not files:
            raise DataError(
                f"{root}: no slide_{{i}}/sample_{{j}}/{LABEL_STEM}.png found; --labels takes a "
                "release-layout folder with a label.png ground truth per sample"
            )
        self.path = root
        mapping, self.matched_by = match_samples(source.sample_ids, list(files), root, "label")
        self._files = [files[key] if key is not None else None for key in mapping]

    @property
    def available(self) -> np.ndarray:
        return np.array([f is not None for f in self._files], bool)

    def read(self, n: int, s: int, size_px: tuple[int, int]) -> np.ndarray | None:
        """Sample ``n``'s map (the same for every scanner ``s``), or None."""
        path = self._files[n]
        if path is None:
            return None
        return _resized(read_label_map(path), size_px)


class DataLabels:
    """The data's own label map per (sample, scanner): the ``labels`` array of a build or
    store, or ``labels/<scanner>.png`` in an exported release folder."""

    matched_by = "id"

    def __init__(self, source: PatchSource) -> None:
        if not source.has_labels:
            raise DataError(
                f"{source.path}: holds no label maps; build it with `extract --annotations "
                "DIR`, or pass --labels DIR with a release folder of label.png files"
            )
        self.path, self._source = source.path, source

    def read(self, n: int, s: int, size_px: tuple[int, int]) -> np.ndarray | None:
        label = self._source.read_labels(n, s)
        return None if label is None else _resized(label, size_px)


def _resized(label: np.ndarray, size_px: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour to the predictions' size, so class indices stay class indices."""
    if label.shape != tuple(size_px):
        label = cv2.resize(label, size_px[::-1], interpolation=cv2.INTER_NEAREST)
    return label
