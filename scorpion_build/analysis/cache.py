"""Cache of analysis arrays in ``BUILD/analysis/``, keyed by everything they depend on.

Each entry is ``NAME.npy`` plus ``NAME.json``, its record under the build's one resume rule
(:mod:`scorpion_build.resume`): a mismatching key (new patches, other weights, other
settings) or a replaced array means the entry is stale and is recomputed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from scorpion_build import resume
from scorpion_build.files import file_sha256, write_atomic
from scorpion_build.manifest import BuildDir


def patches_digest(build: BuildDir) -> str:
    """Fingerprint of the extracted patches: the patches manifest and the Zarr metadata.

    Extraction is deterministic and rewrites the manifest whenever patches change, so the
    manifest's bytes (with the array's shape and group attributes) identify the pixels
    without hashing them.
    """
    h = hashlib.sha256()
    for path in (
        build.manifest("patches"),
        build.zarr / "zarr.json",
        build.zarr / "patches" / "zarr.json",
    ):
        h.update(path.name.encode())
        h.update(file_sha256(path).encode() if path.is_file() else b"-")
    return h.hexdigest()


def make_key(**parts: Any) -> str:
    """A stable key from JSON-serialisable parts (:func:`scorpion_build.resume.fingerprint`)."""
    return resume.fingerprint(parts)


def load(directory: Path, name: str, key: str) -> np.ndarray | None:
    """The cached array, or None when absent, damaged, replaced or computed from other
    inputs (the build's one resume rule, :func:`scorpion_build.resume.load`)."""
    if resume.load(directory / f"{name}.json", key, root=directory) is None:
        return None
    try:
        return np.load(directory / f"{name}.npy", allow_pickle=False)
    except (OSError, ValueError):
        return None  # a damaged entry is recomputed, never trusted


def save(directory: Path, name: str, key: str, array: np.ndarray, **info: Any) -> Path:
    """Write the array then its record, each atomically, so a record never points at stale
    data."""
    path = write_atomic(directory / f"{name}.npy", lambda tmp: _save_npy(tmp, array))
    resume.save(directory / f"{name}.json", key, [path.name], root=directory, **info)
    return path


def _save_npy(path: str, array: np.ndarray) -> None:
    with open(path, "wb") as fh:  # a handle: np.save would add ".npy" to a bare temp name
        np.save(fh, array, allow_pickle=False)
