"""Labelled training data: ``images/`` + ``masks/`` + ``split.csv`` (+ ``classes.json``).

Layout (what ``scorpion-build synth --labelled`` writes under ``OUT/train``)::

    DIR/images/<stem>.png|.jpg|.tif   RGB tiles
    DIR/masks/<stem>.png              label maps: one class index per pixel, 0..C-1
    DIR/split.csv                     columns stem, split (train / val / test)
    DIR/classes.json                  optional: ["background", "cancer_area", ...]

Everything is checked before training starts, and every problem is reported with the file
and the fix, so a bad dataset fails in seconds rather than mid-epoch.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from scorpion_build import imageio
from scorpion_build.errors import DataError
from scorpion_build.models import DEFAULT_CLASSES

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Item:
    stem: str
    image: Path
    mask: Path
    split: str

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        """RGB image (H, W, 3) uint8 and label map (H, W)."""
        return read_rgb(self.image), read_mask(self.mask)


@dataclass(frozen=True)
class LabelledData:
    """A checked dataset: its items by split and its class names."""

    root: Path
    classes: tuple[str, ...]
    items: tuple[Item, ...]

    def split(self, name: str) -> list[Item]:
        return [item for item in self.items if item.split == name]


def read_rgb(path: Path) -> np.ndarray:
    return imageio.read_rgb(path, DataError)


def read_mask(path: Path) -> np.ndarray:
    return imageio.read_label_map(path, DataError)


def read_classes(root: Path, classes: Sequence[str] | None) -> tuple[str, ...]:
    """Class names: given ones win, else ``classes.json``, else the three SCORPION classes."""
    if classes:
        return tuple(classes)
    path = root / "classes.json"
    if not path.is_file():
        return DEFAULT_CLASSES
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc}); write a list of class names") from exc
    if isinstance(raw, dict):  # {"classes": [...]} as well as a bare list
        raw = raw.get("classes")
    if not isinstance(raw, list) or len(raw) < 2 or not all(isinstance(c, str) for c in raw):
        raise DataError(
            f'{path}: expected a JSON list of at least two class names (or {{"classes": [...]}})'
        )
    return tuple(raw)


def _files_by_stem(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    if not folder.is_dir():
        raise DataError(f"{folder}: missing folder; the data folder needs images/ and masks/")
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in suffixes:
            if path.stem in files:
                raise DataError(f"{path}: two files share the stem {path.stem!r}; keep one")
            files[path.stem] = path
    return files


def _read_split(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: missing; write a CSV with columns stem,split (train/val/test)")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = {"stem", "split"} - set(table.columns)
    if missing:
        raise DataError(f"{path}: missing column(s) {sorted(missing)}; columns must be stem,split")
    table["split"] = table["split"].str.strip().str.lower()
    bad = sorted(set(table["split"]) - set(SPLITS))
    if bad:
        raise DataError(f"{path}: unknown split value(s) {bad}; use train, val or test")
    dupes = table["stem"][table["stem"].duplicated()].tolist()
    if dupes:
        raise DataError(f"{path}: stem(s) listed twice: {dupes[:5]}; list each stem once")
    return table


def _sample(items: list[str], k: int = 5) -> str:
    return ", ".join(items[:k]) + (" ..." if len(items) > k else "")


def load_labelled_data(
    root: str | Path,
    classes: Sequence[str] | None = None,
    check_pixels: bool = True,
) -> LabelledData:
    """Index and check a labelled dataset.

    Checks: both folders present; every image has a mask and every mask an image; every
    ``split.csv`` stem exists and every file is in ``split.csv``; a train and a val split
    exist; image and mask sizes agree; label values are below the number of classes.
    ``check_pixels=False`` skips the last two (reading every mask) for very large datasets.

    Raises
    ------
    DataError naming the offending file(s) and what to do.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such data folder; pass --data DIR with images/ and masks/")
    class_names = read_classes(root, classes)
    images = _files_by_stem(root / "images", IMAGE_SUFFIXES)
    masks = _files_by_stem(root / "masks", (".png",))
    only_images = sorted(set(images) - set(masks))
    only_masks = sorted(set(masks) - set(images))
    if only_images or only_masks:
        parts = []
        if only_images:
            parts.append(f"{len(only_images)} image(s) without a mask ({_sample(only_images)})")
        if only_masks:
            parts.append(f"{len(only_masks)} mask(s) without an image ({_sample(only_masks)})")
        raise DataError(
            f"{root}: stems of images/ and masks/ do not match: {'; '.join(parts)}; every "
            "images/<stem>.* needs masks/<stem>.png"
        )
    split_path = root / "split.csv"
    table = _read_split(split_path)
    unknown = sorted(set(table["stem"]) - set(images))
    if unknown:
        raise DataError(f"{split_path}: stem(s) with no image/mask: {_sample(unknown)}")
    unlisted = sorted(set(images) - set(table["stem"]))
    if unlisted:
        raise DataError(
            f"{split_path}: {len(unlisted)} file(s) not listed ({_sample(unlisted)}); add them "
            "with a split or remove them"
        )
    for needed in ("train", "val"):
        if not (table["split"] == needed).any():
            raise DataError(f"{split_path}: no {needed!r} rows; training needs train and val")
    if (table["split"] == "train").sum() < 2:
        raise DataError(f"{split_path}: one 'train' row; batch norm needs at least two images")
    items = tuple(
        Item(row.stem, images[row.stem], masks[row.stem], row.split)
        for row in table.itertuples(index=False)
    )
    if check_pixels:
        for item in items:
            check_item(item, len(class_names))
    return LabelledData(root, class_names, items)


def check_item(item: Item, num_classes: int) -> None:
    """Sizes of image and mask agree and label values are class indices."""
    with Image.open(item.image) as image:  # header only: no pixel decode
        width, height = image.size
    mask = read_mask(item.mask)
    if mask.shape != (height, width):
        raise DataError(
            f"{item.mask}: label map is {mask.shape[1]}x{mask.shape[0]} px but {item.image.name} "
            f"is {width}x{height} px; they must be pixel-aligned and the same size"
        )
    top = int(mask.max(initial=0))
    if top >= num_classes:
        raise DataError(
            f"{item.mask}: label value {top} but only {num_classes} classes "
            f"(0..{num_classes - 1}); fix the mask or list every class name in classes.json"
        )


class SegmentationDataset(Dataset):
    """uint8 tensors for training or evaluation.

    Training (``crop_px`` set): keys are ``(index, crop_seed)`` pairs from
    :class:`EpochSampler`, and each item is a random ``crop_px`` square chosen by that seed,
    so crops are reproducible whatever the number of loader workers. Evaluation
    (``crop_px`` None): keys are plain indices and items are whole tiles.

    Items: ``image`` uint8 ``(3, H, W)`` RGB, ``mask`` int64 ``(H, W)``.
    """

    def __init__(self, items: Sequence[Item], crop_px: int | None = None) -> None:
        self.items = list(items)
        self.crop_px = crop_px

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        item = self.items[index]
        image, mask = item.read()
        if image.shape[:2] != mask.shape:
            raise DataError(f"{item.mask}: size differs from {item.image}; re-export the pair")
        return image, mask

    def __getitem__(self, key) -> dict[str, torch.Tensor]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        image, mask = self.load(index)
        if self.crop_px is not None:
            image, mask = random_crop(image, mask, self.crop_px, seed, self.items[index].image)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "mask": torch.from_numpy(mask.astype(np.int64)),
        }


def random_crop(
    image: np.ndarray, mask: np.ndarray, size_px: int, seed: int | None, path: Path
) -> tuple[np.ndarray, np.ndarray]:
    """A ``size_px`` square at a position drawn from ``seed`` (deterministic)."""
    height, width = mask.shape
    if height < size_px or width < size_px:
        raise DataError(
            f"{path}: {width}x{height} px is smaller than the training crop --size {size_px}; "
            "lower --size or use larger tiles"
        )
    rng = np.random.default_rng(seed)
    top = int(rng.integers(0, height - size_px + 1))
    left = int(rng.integers(0, width - size_px + 1))
    return (
        image[top : top + size_px, left : left + size_px],
        mask[top : top + size_px, left : left + size_px],
    )


class EpochSampler(Sampler):
    """Shuffled ``(index, crop_seed)`` keys, fixed by ``(seed, epoch)``.

    Each epoch's order and crops depend only on the seed and the epoch number, so a run
    resumed at epoch e sees exactly the data an uninterrupted run would have.
    """

    def __init__(self, n: int, seed: int, epoch: int = 0) -> None:
        self.n, self.seed, self.epoch = n, seed, epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, self.epoch, 0x5EED])
        order = rng.permutation(self.n)
        crop_seeds = rng.integers(0, 2**63 - 1, size=self.n)
        return iter((int(i), int(s)) for i, s in zip(order, crop_seeds, strict=True))
