"""Scanner-paired patch sources: a build directory, a Zarr store, or a release-layout folder.

All three look the same to the benchmark: ``scanners`` (axis order), ``sample_ids``,
``valid`` (N, S) and ``read(n, s)`` -> one RGB patch; with labels (``extract
--annotations``), ``classes`` and ``read_labels(n, s)`` -> that patch's label map. Patches
are read one at a time, so memory stays bounded by the batch size whatever the dataset size.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import zarr

from scorpion_build.bench.layout import (
    ATTRS_FILE,
    CLASSES_FILE,
    LABELS_DIR,
    DataError,
    natural_key,
    open_zarr_array,
    read_label_map,
    read_rgb,
    scan_layout,
)
from scorpion_build.integrity import checked_reader
from scorpion_build.labels import LABELS_ARRAY, UNANNOTATED
from scorpion_build.manifest import BuildDir

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")  # the release is JPEG; `export --format png` too
PATCHES_ARRAY = "patches"


class PatchSource(ABC):
    """Paired patches: N samples x S scanners of ``size_px`` RGB uint8 images.

    Attributes
    ----------
    path : where the data lives.
    kind : ``"build"``, ``"zarr"`` or ``"release"``.
    scanners : S scanner names, in axis order.
    sample_ids : N sample ids, in axis order.
    valid : bool ``(N, S)``, False where a scanner's patch is missing or failed.
    """

    path: Path
    kind: str
    scanners: list[str]
    sample_ids: list[str]
    valid: np.ndarray
    classes: list[str] | None = None  # set when the source holds label maps
    attrs: dict[str, Any] = {}  # store attrs (mpp, size, ...) where the data keeps them

    @property
    def has_labels(self) -> bool:
        return self.classes is not None

    @property
    def n_samples(self) -> int:
        return len(self.sample_ids)

    @property
    @abstractmethod
    def size_px(self) -> tuple[int, int]:
        """Patch height and width in pixels."""

    @abstractmethod
    def read(self, n: int, s: int) -> np.ndarray:
        """Patch of sample ``n``, scanner ``s`` as uint8 RGB ``(H, W, 3)``."""

    def read_labels(self, n: int, s: int) -> np.ndarray | None:
        """Label map ``(H, W)`` uint8 of that patch, or None without labels."""
        return None

    def labelled(self, n: int, s: int) -> bool:
        """Whether that patch has a label map (its slide was annotated), without reading it."""
        return False

    def describe(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "kind": self.kind,
            "n_samples": self.n_samples,
            "size_px": list(self.size_px),
        }


class ZarrPatches(PatchSource):
    """``patches.zarr`` from ``extract`` (docs/contracts.md §3), with its manifest when present.

    A manifest row with status ``failed``, or no row at all for a (sample, scanner), marks
    that patch missing; without a manifest every patch counts as present.
    """

    def __init__(self, store: Path, manifest: Path | None, kind: str) -> None:
        self.path, self.kind = store, kind
        hint = "; point --data at the patches.zarr written by `scorpion-build extract`"
        array, group_attrs = open_zarr_array(store, PATCHES_ARRAY, hint)
        attrs = {**group_attrs, **dict(array.attrs)}
        if array.ndim != 5 or array.shape[-1] != 3 or array.dtype != np.uint8:
            raise DataError(
                f"{store}: '{PATCHES_ARRAY}' is {array.dtype} {array.shape}; expected uint8 "
                "(N, S, size, size, 3) as written by `scorpion-build extract`"
            )
        n, s = array.shape[:2]
        scanners = attrs.get("scanners") or [f"scanner_{k}" for k in range(s)]
        if len(scanners) != s:
            raise DataError(f"{store}: attrs list {len(scanners)} scanners for axis 1 of size {s}")
        self._array = array
        self._read = None
        self._labels = _labels_array(store, array.shape[:4])
        self._unannotated: set[int] = set()
        if self._labels is not None:
            self.classes = [str(c) for c in self._labels.attrs.get("classes", [])] or None
            self._unannotated = {int(n) for n in self._labels.attrs.get(UNANNOTATED, [])}
        self.scanners = [str(x) for x in scanners]
        self.attrs = attrs
        self.sample_ids = [f"sample_{k}" for k in range(n)]
        self.valid = np.ones((n, s), bool)
        self.manifest = manifest if manifest is not None and manifest.is_file() else None
        if self.manifest is not None:
            self._apply_manifest(self.manifest)

    def _apply_manifest(self, manifest: Path) -> None:
        try:
            checks = pd.read_parquet(manifest)
            table = checks[["index", "sample_id", "scanner", "status"]]
        except Exception as exc:
            raise DataError(
                f"{manifest}: cannot read columns index, sample_id, scanner, status ({exc}); "
                "re-run `scorpion-build extract`"
            ) from exc
        n, s = self.valid.shape
        rows = table["index"].to_numpy(np.int64)
        cols = table["scanner"].map({name: k for k, name in enumerate(self.scanners)})
        outside = (rows < 0) | (rows >= n) | cols.isna().to_numpy()
        if outside.any():
            bad = table[outside].iloc[0]
            raise DataError(
                f"{manifest}: row ({bad['sample_id']}, {bad['scanner']}) points at index "
                f"{bad['index']} outside the store's {n} samples x {self.scanners}; the "
                "manifest and patches.zarr are from different runs, re-run extract"
            )
        cols = cols.to_numpy(np.int64)
        # no row at all for a (sample, scanner) also means missing: it was never extracted
        self.valid = np.zeros((n, s), bool)
        self.valid[rows, cols] = (table["status"] != "failed").to_numpy()
        for index, sid in zip(rows, table["sample_id"].astype(str), strict=True):
            self.sample_ids[index] = sid
        if "checksum" in checks.columns:
            checks = checks.assign(scanner_index=cols)
            self._read = checked_reader(
                self._array, checks, self.scanners, str(manifest.parent.parent)
            )

    @property
    def size_px(self) -> tuple[int, int]:
        return int(self._array.shape[2]), int(self._array.shape[3])

    def read(self, n: int, s: int) -> np.ndarray:
        if self._read is not None:  # refuses a chunk that does not match its checksum
            return self._read(n, s)
        return np.asarray(self._array[n, s])

    def read_labels(self, n: int, s: int) -> np.ndarray | None:
        return np.asarray(self._labels[n, s]) if self.labelled(n, s) else None

    def labelled(self, n: int, s: int) -> bool:
        return self._labels is not None and n not in self._unannotated

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["manifest"] = str(self.manifest) if self.manifest else None
        for key in ("reference", "mpp", "region_um"):
            if key in self.attrs:
                out[key] = self.attrs[key]
        return out


class ReleasePatches(PatchSource):
    """A folder in the release layout, ``slide_{i}/sample_{j}/<scanner>.jpg``.

    Scanner names are the file stems found (sorted); a sample without one of them has that
    scanner marked missing.
    """

    def __init__(self, root: Path) -> None:
        self.path, self.kind = root, "release"
        table = scan_layout(root, IMAGE_SUFFIXES)
        self._files = table
        self.sample_ids = list(table)
        self.scanners = sorted(
            {name for files in table.values() for name in files}, key=natural_key
        )
        self.valid = np.array(
            [[name in table[sid] for name in self.scanners] for sid in self.sample_ids], bool
        ).reshape(len(self.sample_ids), len(self.scanners))
        self._size: tuple[int, int] | None = None
        classes = _read_json(root / CLASSES_FILE, list)
        self.classes = [str(c) for c in classes] if classes is not None else None
        self.attrs = _read_json(root / ATTRS_FILE, dict) or {}

    @property
    def size_px(self) -> tuple[int, int]:
        if self._size is None:
            first = next(iter(next(iter(self._files.values())).values()))
            self._size = read_rgb(first).shape[:2]
        return self._size

    def read(self, n: int, s: int) -> np.ndarray:
        path = self._files[self.sample_ids[n]][self.scanners[s]]
        image = read_rgb(path)
        if image.shape[:2] != self.size_px:
            raise DataError(
                f"{path}: {image.shape[1]}x{image.shape[0]} px, but the other patches are "
                f"{self.size_px[1]}x{self.size_px[0]} px; re-export all patches at one size"
            )
        return image

    def read_labels(self, n: int, s: int) -> np.ndarray | None:
        return read_label_map(self._label_file(n, s)) if self.labelled(n, s) else None

    def labelled(self, n: int, s: int) -> bool:
        return self.classes is not None and self._label_file(n, s).is_file()

    def _label_file(self, n: int, s: int) -> Path:
        folder = next(iter(self._files[self.sample_ids[n]].values())).parent
        return folder / LABELS_DIR / f"{self.scanners[s]}.png"


def _read_json(path: Path, kind: type) -> Any:
    """A JSON file ``export`` wrote, or None when absent; a damaged one is an error."""
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not readable JSON ({exc}); export the build again") from exc
    if not isinstance(value, kind):
        raise DataError(f"{path}: expected a JSON {kind.__name__}; export the build again")
    return value


def _labels_array(store: Path, shape: tuple[int, ...]) -> zarr.Array | None:
    """The store's ``labels`` array (N, S, H, W) beside ``patches``, if it has one."""
    try:
        group = zarr.open_group(store, mode="r")
    except Exception:  # a bare array: no labels beside it
        return None
    if LABELS_ARRAY not in group:
        return None
    labels = group[LABELS_ARRAY]
    if tuple(labels.shape) != tuple(shape):
        raise DataError(
            f"{store}: '{LABELS_ARRAY}' is {labels.shape} but patches are {shape}; the store is "
            "damaged, re-run extract"
        )
    return labels


def _is_zarr(path: Path) -> bool:
    return any((path / marker).is_file() for marker in ("zarr.json", ".zgroup", ".zarray"))


def open_patch_source(path: str | Path, min_scanners: int = 2) -> PatchSource:
    """Open ``--data``: a build directory, a Zarr store, or a release-layout folder.

    ``min_scanners`` is the fewest scanners the caller can use.

    Raises
    ------
    DataError
        When the path is missing, of no known layout, or holds too few scanners.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory; pass a build, store or folder")
    build = BuildDir.at(path)
    if path.is_dir() and _is_zarr(build.zarr):
        source: PatchSource = ZarrPatches(build.zarr, build.manifest("patches"), "build")
    elif _is_zarr(path):
        # a store inside a build directory still has its manifest one level up
        manifest = BuildDir.at(path.parent).manifest("patches")
        source = ZarrPatches(path, manifest, "zarr")
    elif path.is_dir() and scan_layout(path, IMAGE_SUFFIXES):
        source = ReleasePatches(path)
    else:
        raise DataError(
            f"{path}: unknown layout; --data takes a build directory (with patches.zarr), a "
            "Zarr store (patches.zarr), or a folder in the release layout "
            "slide_{i}/sample_{j}/<scanner>.jpg|.png"
        )
    if len(source.scanners) < min_scanners:
        raise DataError(
            f"{path}: found {len(source.scanners)} scanner(s) {source.scanners}; paired "
            f"patches from at least {min_scanners} scanners are needed here"
        )
    if source.n_samples == 0:
        raise DataError(f"{path}: holds no samples")
    return source
