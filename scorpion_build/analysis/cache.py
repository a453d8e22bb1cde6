"""Cache of analysis arrays in ``BUILD/analysis/``, keyed by everything they depend on.

Each entry is ``NAME.npy`` plus ``NAME.json`` holding the key; a mismatching key (new
patches, other weights, other settings) means the entry is stale and is recomputed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from scorpion_build.files import file_sha256, write_atomic, write_json_atomic
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
    """A stable key from JSON-serialisable parts."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def load(directory: Path, name: str, key: str) -> np.ndarray | None:
    """The cached array, or None when absent or computed from other inputs."""
    meta, data = directory / f"{name}.json", directory / f"{name}.npy"
    if not (meta.is_file() and data.is_file()):
        return None
    try:
        if json.loads(meta.read_text()).get("key") != key:
            return None
        return np.load(data, allow_pickle=False)
    except (OSError, ValueError):
        return None  # a damaged entry is recomputed, never trusted


def save(directory: Path, name: str, key: str, array: np.ndarray, **info: Any) -> Path:
    """Write the array then its key, each atomically, so a key never points at stale data."""
    path = write_atomic(directory / f"{name}.npy", lambda tmp: _save_npy(tmp, array))
    write_json_atomic({"key": key, **info}, directory / f"{name}.json")
    return path


def _save_npy(path: str, array: np.ndarray) -> None:
    with open(path, "wb") as fh:  # a handle: np.save would add ".npy" to a bare temp name
        np.save(fh, array, allow_pickle=False)
