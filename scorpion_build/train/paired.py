"""Labelled training data straight from a build, its ``patches.zarr`` or an exported release.

Training images are the patches of the chosen scanners (default: the reference), masks
their label maps (``extract --annotations``). Samples are split train / val / test **by
slide**, so no tissue is in two splits; the split is written to the run folder
(``split.csv``) and read back on ``--resume``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from scorpion_build.bench.sources import PatchSource
from scorpion_build.data import PairedData
from scorpion_build.errors import DataError
from scorpion_build.splits import group_splits
from scorpion_build.train.data import SPLITS, LabelledData, load_labelled_data

SPLIT_FILE = "split.csv"
_SAMPLE_RE = re.compile(r"^(?P<slide>.+)_r\d+$")  # sample_id = "{slide_id}_r{index:02d}"


@dataclass(frozen=True)
class PatchItem:
    """One (sample, scanner) patch and its label map, read from a :class:`PatchSource`."""

    stem: str
    split: str
    source: PatchSource
    n: int
    s: int

    @property
    def image(self) -> str:  # for messages, like a file path
        return f"{self.source.path} [{self.stem}]"

    mask = image

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        label = self.source.read_labels(self.n, self.s)
        if label is None:
            raise DataError(f"{self.image}: no label map; re-export the build with labels")
        return self.source.read(self.n, self.s), label


def slide_of(sample_id: str) -> str:
    """Slide of a sample: ``{slide_id}_rNN`` in a build, ``slide_i/sample_j`` in a release."""
    match = _SAMPLE_RE.match(sample_id)
    return match.group("slide") if match else sample_id.split("/")[0]


def is_paired_data(path: str | Path) -> bool:
    """A build, Zarr store or release folder with label maps (not an images/ + masks/ folder)."""
    path = Path(path)
    if (path / "images").is_dir() and (path / "masks").is_dir():
        return False
    try:  # labels are checked later, with a message saying how to add them
        return PairedData(path, with_labels=False) is not None
    except DataError:
        return False


def load_paired_data(
    path: str | Path,
    scanners: Sequence[str] | None,
    seed: int,
    run_dir: Path,
    classes: Sequence[str] | None = None,
) -> tuple[LabelledData, pd.DataFrame]:
    """Training items of ``scanners`` (default the reference), split by slide.

    Returns the data and the split table (sample_id, slide_id, split). A ``split.csv`` in
    ``run_dir`` (an earlier start of the same run) is reused as it is.
    """
    everything = PairedData(path, with_labels=False)
    reference = everything.source.attrs.get("reference") or everything.scanners[0]
    chosen = list(scanners) if scanners else [reference]
    unknown = [s for s in chosen if s not in everything.scanners]
    if unknown:
        raise DataError(
            f"{path}: --train-scanners {unknown} not in the data's {everything.scanners}"
        )
    # samples whose chosen scanners all have a patch and a label map
    data = PairedData(path, scanners=chosen, with_labels=True)
    names = list(data.classes or [])
    if classes and list(classes) != names:
        raise DataError(f"{path}: its label maps use classes {names}, not {list(classes)}")
    table = _split_table(data, seed, run_dir / SPLIT_FILE)
    split_of = dict(zip(table["sample_id"], table["split"], strict=True))
    source = data.source
    items = []
    for sid, n in zip(data.sample_ids, data.indices, strict=True):
        for scanner in chosen:
            s = source.scanners.index(scanner)
            items.append(PatchItem(f"{sid}/{scanner}", split_of[sid], source, int(n), s))
    for needed in ("train", "val"):
        if not any(item.split == needed for item in items):
            raise DataError(
                f"{path}: no {needed!r} samples after the split by slide ({len(items)} patches "
                "in all); add slides or samples"
            )
    return LabelledData(Path(path), tuple(names), tuple(items)), table


def _split_table(data: PairedData, seed: int, saved: Path) -> pd.DataFrame:
    """sample_id, slide_id, split for every sample; from ``saved`` when it exists."""
    if saved.is_file():
        table = pd.read_csv(saved, dtype=str, keep_default_na=False)
        missing = sorted(set(data.sample_ids) - set(table["sample_id"]))
        if missing or not set(table["split"]) <= set(SPLITS):
            raise DataError(
                f"{saved}: does not cover the data's samples ({missing[:3]}); the data changed "
                "since the run started: start a new --out"
            )
        return table
    slides = [slide_of(sid) for sid in data.sample_ids]
    groups = sorted(set(slides))
    owners = [groups.index(s) for s in slides]
    splits = group_splits(owners, len(groups), np.random.default_rng([seed, 0x5B11]))
    # fewer than three slides cannot be split by slide: say so in the recorded table
    by = "slide" if len(groups) >= 3 else "sample (fewer than 3 slides)"
    return pd.DataFrame(
        {"sample_id": data.sample_ids, "slide_id": slides, "split": splits, "split_by": by}
    )


@dataclass(frozen=True)
class TrainingData:
    """What the trainer trains on, and what the checkpoint should record about it."""

    data: LabelledData
    split_table: pd.DataFrame | None  # by-slide split of a build (None: the folder's split.csv)
    mpp: float | None  # um/px of the patches, when the data says
    scanners: list[str] | None  # scanners whose patches are training images


def load_training_data(
    path: str | Path,
    classes: Sequence[str] | None,
    scanners: Sequence[str] | None,
    seed: int,
    run_dir: Path,
) -> TrainingData:
    """A build / store / release with label maps, or an images/ + masks/ folder."""
    if not is_paired_data(path):
        if scanners:
            raise DataError(
                f"{path}: --train-scanners needs a build, patches.zarr or exported release "
                "with label maps; an images/ + masks/ folder has one image per tile"
            )
        return TrainingData(load_labelled_data(path, classes), None, None, None)
    data, table = load_paired_data(path, scanners, seed, run_dir, classes)
    source = data.items[0].source
    mpp = source.attrs.get("mpp")
    chosen = sorted({item.stem.rsplit("/", 1)[1] for item in data.items})
    return TrainingData(data, table, float(mpp) if mpp is not None else None, chosen)
