"""Labelled patch sets for the SimCons trainer, drawn from the same tissue generator.

``OUT_DIR/train/``: ``images/{stem}.png`` (RGB, the reference scanner's look),
``masks/{stem}.png`` (uint8 class index), ``split.csv`` (stem,split) and ``classes.json``.
Splits are made per specimen when there are at least three, so no tissue leaks between
train, val and test.

``OUT_DIR/paired/``: the SCORPION release layout, ``slide_{i}/sample_{j}/{scanner}.jpg``
for every scanner (pixel-aligned, same tissue, only the appearance differs) plus
``label.png``; i and j count from 1.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from scorpion_build.splits import group_splits
from scorpion_build.synth.config import SynthConfig
from scorpion_build.synth.seeds import rng_for
from scorpion_build.synth.styles import NoiseBank, ScannerStyle, style_for
from scorpion_build.synth.tissue import LABEL_NAMES, Specimen, generate_specimen

CLASSES: list[str] = list(LABEL_NAMES)
_PATCHES_PER_SPECIMEN = 16
_MIN_TISSUE = 0.5  # share of tissue pixels a patch should have


def write_labelled_sets(out_dir: str | Path, config: SynthConfig) -> None:
    """Write ``train/`` and ``paired/`` under ``out_dir`` (see the module docstring)."""
    out = Path(out_dir)
    write_train_set(out / "train", config)
    write_paired_set(out / "paired", config)


def write_train_set(
    folder: Path, config: SynthConfig, scanners: Sequence[str] | None = None
) -> None:
    """``config.n_train`` patches with masks and splits, in the reference scanner's style.

    ``scanners`` gives other looks instead, dealt out in turn to the specimens of each
    split, so every split with two or more specimens holds each look (two names make an
    HTS-like set from two scanners). A name outside the SCORPION five gets a reproducible
    variation of the AT2 look (:func:`~scorpion_build.synth.styles.style_for`), a scanner
    the paired set never shows.
    """
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    looks = [style_for(name) for name in (scanners or [config.reference])]
    n_specimens = math.ceil(config.n_train / _PATCHES_PER_SPECIMEN)
    counts = [min(_PATCHES_PER_SPECIMEN, config.n_train - s * _PATCHES_PER_SPECIMEN)
              for s in range(n_specimens)]  # fmt: skip
    owners = [s for s, n in enumerate(counts) for _ in range(n)]
    splits = group_splits(owners, n_specimens, rng_for(config.seed, "split"))
    look_of = _deal_looks(owners, splits, len(looks))
    stems = []
    for s, want in enumerate(counts):
        rng = rng_for(config.seed, "train", s)
        specimen = _patch_specimen(config, want, rng)
        style = looks[look_of[s]]
        rgb = style.colourize(specimen.stains, specimen.mpp)
        bank = _bank(style, config.patch_px, rng)
        for p, (x, y) in enumerate(_patch_origins(specimen.labels, config.patch_px, want, rng)):
            image, mask = _cut(rgb, specimen.labels, x, y, config.patch_px)
            image = _scanner_output(image, style, bank, rng)
            stem = f"s{s:03d}_p{p:03d}"
            _write(folder / "images" / f"{stem}.png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            _write(folder / "masks" / f"{stem}.png", mask)
            stems.append(stem)
    lines = ["stem,split"] + [f"{a},{b}" for a, b in zip(stems, splits, strict=True)]
    (folder / "split.csv").write_text("\n".join(lines) + "\n")
    (folder / "classes.json").write_text(json.dumps(CLASSES) + "\n")


def write_paired_set(folder: Path, config: SynthConfig) -> None:
    """``n_paired_slides x paired_samples`` aligned samples, one JPEG per scanner style."""
    styles = {s: style_for(s) for s in config.scanners}
    for i in range(config.n_paired_slides):
        rng = rng_for(config.seed, "paired", i)
        specimen = _patch_specimen(config, config.paired_samples, rng)
        origins = _patch_origins(specimen.labels, config.patch_px, config.paired_samples, rng)
        for scanner, style in styles.items():
            rgb = style.colourize(specimen.stains, specimen.mpp)
            bank = _bank(style, config.patch_px, rng_for(config.seed, "paired-noise", i, scanner))
            noise_rng = rng_for(config.seed, "paired-noise-offsets", i, scanner)
            for j, (x, y) in enumerate(origins):
                sample = folder / f"slide_{i + 1}" / f"sample_{j + 1}"
                sample.mkdir(parents=True, exist_ok=True)
                image, mask = _cut(rgb, specimen.labels, x, y, config.patch_px)
                image = bank.apply(image, noise_rng) if bank is not None else image
                bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
                _write(
                    sample / f"{scanner}.jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, style.jpeg_quality]
                )
                if scanner == config.scanners[0]:
                    _write(sample / "label.png", mask)


def _patch_specimen(config: SynthConfig, n_patches: int, rng: np.random.Generator) -> Specimen:
    """A tissue-rich specimen large enough for ``n_patches`` non-overlapping patches."""
    patch_um = config.patch_px * config.patch_mpp
    cells = math.ceil(math.sqrt(2 * n_patches)) + 1
    side_um = max(cells * patch_um, 600.0)
    return generate_specimen(
        side_um, side_um, config.patch_mpp, rng, tissue_fraction=0.8, edge_margin_um=0.0
    )


def _patch_origins(labels: np.ndarray, size: int, n: int, rng: np.random.Generator):
    """Top-left corners of ``n`` non-overlapping patches, tissue-richest cells preferred."""
    h, w = labels.shape
    cells = [(x, y) for y in range(0, h - size + 1, size) for x in range(0, w - size + 1, size)]
    order = rng.permutation(len(cells))
    tissue = [float((labels[y : y + size, x : x + size] > 0).mean()) for x, y in cells]
    rich = [k for k in order if tissue[k] >= _MIN_TISSUE]
    rest = sorted((k for k in order if tissue[k] < _MIN_TISSUE), key=lambda k: -tissue[k])
    picked = (rich + rest)[:n]
    if len(picked) < n:
        raise ValueError(f"specimen of {w}x{h} px cannot hold {n} patches of {size} px")
    return [cells[k] for k in picked]


def _cut(rgb: np.ndarray, labels: np.ndarray, x: int, y: int, size: int):
    return rgb[y : y + size, x : x + size].copy(), labels[y : y + size, x : x + size].copy()


def _bank(style: ScannerStyle, patch_px: int, rng: np.random.Generator) -> NoiseBank | None:
    return NoiseBank(style.noise, rng, patch_px * patch_px * 3) if style.noise > 0 else None


def _scanner_output(
    image: np.ndarray, style: ScannerStyle, bank: NoiseBank | None, rng: np.random.Generator
) -> np.ndarray:
    """Sensor noise, then the scanner's JPEG round trip (train images are stored as PNG)."""
    if bank is not None:
        image = bank.apply(image, rng)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, style.jpeg_quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)


def _deal_looks(owners: list[int], splits: list[str], n_looks: int) -> dict[int, int]:
    """Look index per specimen: dealt in turn within each split, by specimen order."""
    split_of = dict(zip(owners, splits, strict=True))
    dealt: dict[str, int] = {}
    look_of = {}
    for s in sorted(split_of):
        k = dealt.get(split_of[s], 0)
        look_of[s] = k % n_looks
        dealt[split_of[s]] = k + 1
    return look_of


def _write(path: Path, image: np.ndarray, params: list[int] | None = None) -> None:
    if not cv2.imwrite(str(path), image, params or []):
        raise OSError(f"{path}: could not write the image; check the folder is writable")
