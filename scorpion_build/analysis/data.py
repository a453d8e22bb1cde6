"""Read-only access to a build's ``patches.zarr`` aligned with ``patches.parquet``.

Streams one sample (all scanners) at a time so memory stays bounded by ``S * size**2 * 3``
bytes whatever the number of samples.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import zarr

from scorpion_build.integrity import checked_reader
from scorpion_build.manifest import BuildDir


class PatchStoreError(ValueError):
    """The patch store is missing or does not follow ``docs/contracts.md`` section 4."""


@dataclass
class PatchStore:
    """``patches.zarr/patches`` with its axis labels and which patches are usable.

    Attributes
    ----------
    array : zarr.Array
        uint8 ``(N, S, size, size, 3)``, RGB.
    scanners : list of str
        Scanner names in axis-1 order.
    reference : str
        Reference scanner; ``scanners.index(reference)`` is ``ref_index``.
    sample_ids : list of str
        Sample id of each axis-0 position (``"#n"`` where the manifest has no row).
    valid : numpy.ndarray
        bool ``(N, S)``: a patch was written (manifest status is not ``failed``).
    mpp : float
        Microns per pixel of the patches.
    """

    array: zarr.Array
    scanners: list[str]
    reference: str
    sample_ids: list[str]
    valid: np.ndarray
    mpp: float
    path: Path
    # read(n, s) that refuses a patch not matching its checksum (integrity.checked_reader)
    checked: Callable[[int, int], np.ndarray] | None = None

    def patch(self, n: int, s: int) -> np.ndarray:
        """Patch ``(n, s)``; raises ``CorruptPatchError`` if its chunk is missing or damaged."""
        if self.checked is None:
            return np.asarray(self.array[n, s])
        return self.checked(n, s)

    @property
    def ref_index(self) -> int:
        return self.scanners.index(self.reference)

    @property
    def n_samples(self) -> int:
        return int(self.array.shape[0])

    @property
    def size_px(self) -> int:
        return int(self.array.shape[2])

    def read(self, n: int) -> np.ndarray:
        """All scanners' patches of sample ``n``: uint8 ``(S, size, size, 3)``."""
        if self.checked is None:
            return np.asarray(self.array[n])
        return np.stack([self.checked(n, s) for s in range(self.array.shape[1])])

    def iter_samples(self) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(n, patches)`` for every sample that has at least one usable patch."""
        for n in range(self.n_samples):
            if self.valid[n].any():
                yield n, self.read(n)

    def thumbnail(self, n: int, s: int, size_px: int) -> np.ndarray:
        """One patch area-downsampled to ``size_px`` square (uint8 RGB)."""
        return downsample(self.patch(n, s), size_px)


def downsample(patch: np.ndarray, size_px: int) -> np.ndarray:
    """Area-average an RGB patch to ``size_px`` square (never upsamples with area averaging)."""
    if patch.shape[0] == size_px and patch.shape[1] == size_px:
        return patch
    interp = cv2.INTER_AREA if patch.shape[0] >= size_px else cv2.INTER_LINEAR
    return cv2.resize(patch, (size_px, size_px), interpolation=interp)


def open_patches(build: BuildDir, patches: pd.DataFrame | None = None) -> PatchStore:
    """Open ``BUILD/patches.zarr`` and mark usable patches from ``patches.parquet``.

    Parameters
    ----------
    build : BuildDir
        The build directory.
    patches : pandas.DataFrame, optional
        The patches manifest if already read; read from the build when omitted. When the
        manifest is absent every patch that is not all zeros (the store's fill value) counts
        as usable.

    Raises
    ------
    PatchStoreError
        The store is missing, has no ``patches`` array or lacks its group attributes.
    """
    path = build.zarr
    group, array = _open_store(build)
    attrs = dict(group.attrs)
    scanners = [str(s) for s in attrs["scanners"]]
    if patches is None and build.manifest("patches").is_file():
        patches = build.read("patches")
    valid, ids = _usable_patches(array, patches)
    return PatchStore(
        array=array,
        scanners=scanners,
        reference=str(attrs["reference"]),
        sample_ids=ids,
        valid=valid,
        mpp=float(attrs.get("mpp", np.nan)),
        path=path,
        checked=checked_reader(array, patches, scanners, str(build.root)),
    )


def _open_store(build: BuildDir) -> tuple[zarr.Group, zarr.Array]:
    """The store's group and its checked ``patches`` array; PatchStoreError names the fix."""
    path = build.zarr
    if not path.exists():
        raise PatchStoreError(f"{path} not found; run `scorpion-build extract {build.root}` first")
    try:
        group = zarr.open_group(str(path), mode="r")
        array = group["patches"]
    except (KeyError, FileNotFoundError, ValueError) as exc:
        raise PatchStoreError(
            f"{path} has no 'patches' array ({exc}); re-run `scorpion-build extract "
            f"{build.root} --force`"
        ) from exc
    attrs = dict(group.attrs)
    missing = [k for k in ("scanners", "reference") if k not in attrs]
    if missing or array.ndim != 5 or array.shape[-1] != 3:
        raise PatchStoreError(
            f"{path}: expected a (N, S, size, size, 3) 'patches' array with group attributes "
            f"scanners and reference (missing {missing}, shape {array.shape}); re-run "
            f"`scorpion-build extract {build.root} --force`"
        )
    scanners = [str(s) for s in attrs["scanners"]]
    if attrs["reference"] not in scanners or len(scanners) != array.shape[1]:
        raise PatchStoreError(
            f"{path}: attribute scanners {scanners} does not match axis 1 ({array.shape[1]}) "
            f"or lacks the reference {attrs['reference']!r}"
        )
    return group, array


def _usable_patches(
    array: zarr.Array, patches: pd.DataFrame | None
) -> tuple[np.ndarray, list[str]]:
    """``(N, S)`` usable flags and the N sample ids, from the manifest when there is one."""
    n, s = array.shape[:2]
    ids = [f"#{i}" for i in range(n)]
    if patches is None or not len(patches):
        # no manifest: an all-zero patch is the fill value, i.e. never written
        valid = np.array(
            [[bool(np.asarray(array[i, j]).any()) for j in range(s)] for i in range(n)]
        )
        return valid, ids
    valid = np.zeros((n, s), bool)
    ok = patches[patches["status"] != "failed"]
    idx, sidx = ok["index"].to_numpy(int), ok["scanner_index"].to_numpy(int)
    inside = (idx < n) & (sidx < s)
    valid[idx[inside], sidx[inside]] = True
    for i, sid in zip(patches["index"], patches["sample_id"], strict=True):
        if 0 <= int(i) < n:
            ids[int(i)] = str(sid)
    return valid, ids
