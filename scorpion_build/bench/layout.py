"""The SCORPION release layout, ``slide_{i}/sample_{j}/<name>.<ext>``, read-only helpers.

The official release (Zenodo 16517924) holds ``{AT2,DP200,GT450,P1000,Philips}.jpg`` per
sample; prediction folders hold ``<scanner>.png`` label maps and the synthetic set adds a
``label.png`` ground truth. A *sample id* in this layout is ``"slide_{i}/sample_{j}"``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import zarr

from scorpion_build import imageio
from scorpion_build.errors import DataError

LABEL_STEM = "label"
"""Ground-truth file stem in a sample folder; never a scanner name."""
EXPORT_INDEX = "index.csv"
"""Written by ``export``: maps each ``slide_i/sample_j`` folder back to the build's sample."""
LABELS_DIR = "labels"
"""Per-scanner label maps of an export with labels: ``slide_i/sample_j/labels/<scanner>.png``."""
CLASSES_FILE = "classes.json"
"""Class names of those label maps, at the top of the folder."""
ATTRS_FILE = "attrs.json"
"""Written by ``export``: the store's scanners, reference, mpp, region_um and size."""


def natural_key(text: str) -> list[int | str]:
    """Sort key that orders ``slide_2`` before ``slide_10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def sample_dirs(root: Path) -> list[Path]:
    """``root/slide_*/sample_*`` folders in natural order (empty when the layout is absent)."""
    dirs = [d for d in root.glob("slide_*/sample_*") if d.is_dir()]
    return sorted(dirs, key=lambda d: natural_key(d.relative_to(root).as_posix()))


def sample_id(root: Path, folder: Path) -> str:
    return folder.relative_to(root).as_posix()


def scan_layout(root: Path, suffixes: tuple[str, ...]) -> dict[str, dict[str, Path]]:
    """``{sample_id: {scanner: file}}`` for files whose suffix is in ``suffixes``.

    ``label.*`` (ground truth) is left out, so scanner names are exactly the other stems.
    """
    table: dict[str, dict[str, Path]] = {}
    for folder in sample_dirs(root):
        files = {
            f.stem: f
            for f in sorted(folder.iterdir())
            if f.is_file() and f.suffix.lower() in suffixes and f.stem != LABEL_STEM
        }
        if files:
            table[sample_id(root, folder)] = files
    return table


def export_index(root: Path) -> dict[str, str]:
    """``{"slide_i/sample_j": sample_id}`` from the ``index.csv`` that ``export`` writes.

    Empty when the folder has none (the official release, the synthetic set).
    """
    path = root / EXPORT_INDEX
    if not path.is_file():
        return {}
    try:
        table = pd.read_csv(path, usecols=["slide", "sample", "sample_id"], dtype=str)
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(
            f"{path}: needs columns slide, sample, sample_id as `scorpion-build export` writes "
            f"them ({exc}); re-export or delete it"
        ) from exc
    return {f"{r.slide}/{r.sample}": r.sample_id for r in table.itertuples(index=False)}


def match_samples(
    wanted: list[str], available: list[str], root: Path, what: str
) -> tuple[list[str | None], str]:
    """Map each of the data's sample ids to a sample folder (``slide_i/sample_j``) under root.

    Tried in turn: the ids themselves (a release folder against itself or its predictions);
    the ``index.csv`` written by ``export`` (a build against its export); position, when the
    counts agree (export numbers samples in sorted slide and region order, like the build).

    Returns the folder per wanted sample (None = absent) and how they were matched:
    ``"id"``, ``"export index"`` or ``"order"``.
    """
    available_set = set(available)
    if any(s in available_set for s in wanted):
        return [s if s in available_set else None for s in wanted], "id"
    by_sample_id = {sid: key for key, sid in export_index(root).items() if key in available_set}
    if any(s in by_sample_id for s in wanted):
        return [by_sample_id.get(s) for s in wanted], "export index"
    if len(wanted) == len(available):
        return list(available), "order"
    raise DataError(
        f"{root}: its {what} samples ({len(available)}, e.g. {available[:2]}) match none of the "
        f"data's {len(wanted)} sample ids (e.g. {wanted[:2]}); point it at a folder exported "
        "from the same data (scorpion-build export writes index.csv) so ids or counts agree"
    )


def read_rgb(path: Path) -> np.ndarray:
    return imageio.read_rgb(path, DataError)


def read_label_map(path: Path) -> np.ndarray:
    return imageio.read_label_map(path, DataError)


def open_zarr_array(path: Path, name: str, hint: str = "") -> tuple[zarr.Array, dict]:
    """The array ``name`` of the Zarr group at ``path`` (or the array at ``path`` itself),
    and the group's attributes (empty for a bare array). ``hint`` ends a missing-array error."""
    try:
        node = zarr.open(path, mode="r")
    except Exception as exc:
        raise DataError(f"{path}: not a readable Zarr store ({exc})") from exc
    if not isinstance(node, zarr.Group):
        return node, {}
    if name not in node:
        raise DataError(f"{path}: Zarr group without a '{name}' array{hint}")
    return node[name], dict(node.attrs)
