"""Per-patch checksums: trust the store, not the bookkeeping.

``patches.parquet`` records, for every patch that was written, a checksum of the pixels a
reader gets back from ``patches.zarr`` (after decoding, so JPEG stores are covered too).
Extract re-checks them on every re-run, ``scorpion-build verify`` on demand, and export,
analyze and benchmark refuse a patch whose chunk is missing or does not decode to it
(``docs/contracts.md`` section 4).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd


class CorruptPatchError(ValueError):
    """A patch's chunk is missing, undecodable, or not the pixels that were written."""


def patch_checksum(pixels: np.ndarray) -> str:
    """CRC-32 of a patch's uint8 bytes (C order), as 8 hex digits.

    CRC-32 catches damage (missing, truncated, overwritten chunks) at ~4 ms per 1024 px
    patch, a quarter of a cryptographic hash's cost; it is not meant to resist tampering.
    """
    return format(zlib.crc32(np.ascontiguousarray(pixels).data.cast("B")), "08x")


def open_patch_array(path: Path, build_root: Path | None = None):  # noqa: ANN201 - zarr.Array
    """``patches.zarr/patches`` with its group attributes, or an error naming the store and
    the command that rebuilds it when it is missing or its metadata is damaged."""
    import zarr

    fix = f"rebuild it with `scorpion-build extract {build_root or path.parent} --force`"
    if not path.is_dir():
        raise FileNotFoundError(f"{path} not found; {fix}")
    try:
        group = zarr.open_group(str(path), mode="r")
        array = group["patches"]
        scanners = list(group.attrs["scanners"])
    except Exception as exc:  # any metadata damage: a missing key, bad JSON, wrong node
        raise CorruptPatchError(
            f"{path} is damaged ({exc.__class__.__name__}: {exc}); {fix}"
        ) from exc
    return array, scanners


def has_checksum(checksum: object) -> bool:
    """Whether a manifest cell holds a recorded checksum (older stores have none: NaN)."""
    return isinstance(checksum, str) and bool(checksum)


def chunk_problem(array, n: int, s: int, checksum: str | None) -> str:  # noqa: ANN001 - zarr.Array
    """Why patch ``(n, s)`` of ``array`` cannot be trusted, or "" when it checks out.

    A patch without a recorded checksum (a store from an older version) is not checked.
    """
    if not has_checksum(checksum):
        return ""
    try:
        pixels = np.asarray(array[n, s])
    except Exception as exc:  # any codec error: the chunk's bytes are damaged
        return f"chunk cannot be decoded ({exc.__class__.__name__}: {exc})"
    if patch_checksum(pixels) != checksum:
        if not pixels.any():
            return "chunk is missing (reads as the fill value)"
        return "chunk does not match its checksum (changed or damaged)"
    return ""


def checked_reader(
    array,
    patches: pd.DataFrame | None,
    scanners: list[str],
    build_hint: str,  # noqa: ANN001
) -> Callable[[int, int], np.ndarray]:
    """``read(n, s)`` that returns a patch only if it matches its recorded checksum.

    Raises :class:`CorruptPatchError` naming the sample and scanner and the command that
    repairs it.
    """
    expected: dict[tuple[int, int], tuple[str, str]] = {}
    if patches is not None and "checksum" in patches.columns:
        for row in patches.itertuples():
            if row.status != "failed" and has_checksum(row.checksum):
                expected[(int(row.index), int(row.scanner_index))] = (row.sample_id, row.checksum)

    def read(n: int, s: int) -> np.ndarray:
        sample_id, checksum = expected.get((n, s), (f"#{n}", ""))
        try:
            pixels = np.asarray(array[n, s])
        except Exception as exc:
            raise CorruptPatchError(
                f"patch {sample_id} {scanners[s]}: chunk cannot be decoded ({exc}); run "
                f"`scorpion-build verify {build_hint} --repair`"
            ) from exc
        if checksum and patch_checksum(pixels) != checksum:
            raise CorruptPatchError(
                f"patch {sample_id} {scanners[s]}: chunk is missing or damaged (checksum "
                f"mismatch); run `scorpion-build verify {build_hint} --repair`"
            )
        return pixels

    return read
