"""Scanner-paired patches for your own training loop: a torch ``Dataset`` and a plain iterator.

The same samples come out of a build directory, its ``patches.zarr`` store or an exported
release folder (``export --format png`` for bit-identical pixels; JPEG is lossy)::

    from scorpion_build.data import PairedPatches

    data = PairedPatches("BUILD", scanners=["AT2", "P1000"])
    item = data[0]
    item["images"]["P1000"]    # uint8 tensor (3, size, size), RGB
    item["labels"]["P1000"]    # int64 tensor (size, size), class index (with labels)

:func:`iter_paired` yields the same items as NumPy arrays and needs no torch. See
docs/training.md; the store layout is docs/contracts.md section 4.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scorpion_build.bench.layout import DataError, export_index
from scorpion_build.bench.sources import PatchSource, open_patch_source


class PairedData:
    """Samples whose every chosen scanner has a patch, read as NumPy arrays (no torch).

    Parameters
    ----------
    path : a build directory, a ``patches.zarr`` store, or a release folder.
    scanners : scanners to return, in this order; default every scanner of the data.
    with_labels : also return each scanner's label map, and only samples that have them
        (samples of unannotated slides are left out); raises when the data has none.
    transform : optional callable applied to each item (the dict below) before it is
        returned, e.g. joint augmentations of every scanner's image and label; it gets
        NumPy arrays here, tensors from :class:`PairedPatches`.

    Attributes
    ----------
    scanners, classes (None without labels), sample_ids (the build's ids; a release
    folder exported by ``scorpion-build export`` maps back through its ``index.csv``),
    indices (each sample's position in the source), mpp (um/px, None when not known).
    """

    def __init__(
        self,
        path: str | Path,
        scanners: Sequence[str] | None = None,
        with_labels: bool = True,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        self.transform = transform
        self.source: PatchSource = open_patch_source(path, min_scanners=1)
        known = self.source.scanners
        self.scanners = list(scanners) if scanners else list(known)
        unknown = [s for s in self.scanners if s not in known]
        if unknown:
            raise DataError(f"{path}: no scanner(s) {unknown}; it holds {known}")
        self.with_labels = with_labels
        if with_labels and not self.source.has_labels:
            raise DataError(
                f"{path}: holds no label maps; build it with `extract --annotations DIR` (and "
                "export it again), or pass with_labels=False"
            )
        self._axis = [known.index(s) for s in self.scanners]
        # a sample counts only when every chosen scanner has its patch (and label map)
        keep = self.source.valid[:, self._axis].all(axis=1)
        if with_labels:
            keep &= [all(self.source.labelled(n, k) for k in self._axis) for n in range(len(keep))]
        self.indices = np.flatnonzero(keep)
        ids = self.source.sample_ids
        if self.source.kind == "release":
            back = export_index(self.source.path)
            ids = [back.get(i, i) for i in ids]
        self.sample_ids = [ids[n] for n in self.indices]

    @property
    def classes(self) -> list[str] | None:
        return self.source.classes

    @property
    def mpp(self) -> float | None:
        mpp = self.source.attrs.get("mpp")
        return float(mpp) if mpp is not None else None

    def __len__(self) -> int:
        return len(self.indices)

    def item(self, i: int) -> dict[str, Any]:
        """``{"sample_id", "images": {scanner: (H, W, 3) uint8}, "labels": {scanner: (H, W)
        uint8}}``; ``labels`` only with ``with_labels``; through ``transform`` if given."""
        return self._transformed(self.read(i))

    def _transformed(self, item: dict[str, Any]) -> dict[str, Any]:
        return self.transform(item) if self.transform is not None else item

    def read(self, i: int) -> dict[str, Any]:
        """Sample ``i`` as stored, NumPy arrays, no ``transform``."""
        n = int(self.indices[i])
        out: dict[str, Any] = {
            "sample_id": self.sample_ids[i],
            "images": {
                s: self.source.read(n, k) for s, k in zip(self.scanners, self._axis, strict=True)
            },
        }
        if self.with_labels:
            out["labels"] = {
                s: self._label(n, k) for s, k in zip(self.scanners, self._axis, strict=True)
            }
        return out

    def _label(self, n: int, k: int) -> np.ndarray:
        label = self.source.read_labels(n, k)
        if label is None:
            raise DataError(
                f"{self.source.path}: sample {self.source.sample_ids[n]} has no label map for "
                f"{self.source.scanners[k]}; export the build again"
            )
        return label


def iter_paired(
    path: str | Path,
    scanners: Sequence[str] | None = None,
    with_labels: bool = True,
    transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> Iterator[dict[str, Any]]:
    """Every sample of :class:`PairedData` as NumPy arrays, one at a time (no torch)."""
    data = PairedData(path, scanners, with_labels, transform)
    for i in range(len(data)):
        yield data.item(i)


def _paired_patches() -> type:
    """Build :class:`PairedPatches` on first use, so importing this module needs no torch."""
    import torch
    from torch.utils.data import Dataset

    class PairedPatches(PairedData, Dataset):
        """:class:`PairedData` as a ``torch.utils.data.Dataset`` of tensors.

        ``data[i]`` is ``{"sample_id", "images": {scanner: uint8 (3, H, W)}, "labels":
        {scanner: int64 (H, W)}}``; the default collate batches each scanner's tensors.
        """

        def __getitem__(self, i: int) -> dict[str, Any]:
            item = self.read(i)
            item["images"] = {
                s: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))
                for s, a in item["images"].items()
            }
            if "labels" in item:
                item["labels"] = {
                    s: torch.from_numpy(a.astype(np.int64)) for s, a in item["labels"].items()
                }
            return self._transformed(item)

    # importable as scorpion_build.data.PairedPatches (module __getattr__), so it pickles
    # into DataLoader worker processes
    PairedPatches.__module__, PairedPatches.__qualname__ = __name__, "PairedPatches"
    return PairedPatches


_LAZY: dict[str, type] = {}


def __getattr__(name: str) -> type:
    if name != "PairedPatches":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name not in _LAZY:
        _LAZY[name] = _paired_patches()
    return _LAZY[name]
