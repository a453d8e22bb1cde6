"""Build-directory layout, Parquet manifests (schemas, atomic writes) and resume bookkeeping."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

# the writers live in files.py; imported here too so manifest users find them beside the
# Parquet writer
from scorpion_build.files import write_atomic, write_json_atomic  # noqa: F401

STATUSES = ("ok", "warn", "failed")

# Column, Parquet type, meaning. One place: docs (manifests/SCHEMAS.md) are generated from it.
SCHEMAS: dict[str, list[tuple[str, str, str]]] = {
    "slides": [
        ("slide_id", "string", "slide identifier (same glass slide across scanners)"),
        ("scanner", "string", "scanner name, e.g. AT2, GT450, DP200, P1000, Philips"),
        ("is_reference", "bool", "this scanner is the slide's registration reference"),
        ("path", "string", "absolute path (or fsspec URL) of the whole-slide image"),
        ("reader", "string", "library that opened it: openslide, tiffslide or image"),
        ("vendor", "string", "format vendor reported by the reader (aperio, generic-tiff, ...)"),
        ("width", "int64", "level-0 width in pixels"),
        ("height", "int64", "level-0 height in pixels"),
        ("level_count", "int64", "number of pyramid levels"),
        ("mpp_x", "float64", "level-0 microns per pixel along x"),
        ("mpp_y", "float64", "level-0 microns per pixel along y"),
        ("mpp_source", "string", "metadata, override (slide table), or missing"),
        ("file_size", "int64", "file size in bytes"),
        (
            "file_mtime_ns",
            "int64",
            "file modification time, ns since the epoch: with file_size, how register "
            "and extract notice a file changed since scan",
        ),
        ("status", "string", "ok, warn or failed"),
        ("message", "string", "why the status is not ok, in words a user can act on"),
    ],
    "registrations": [
        ("slide_id", "string", "slide identifier"),
        ("scanner", "string", "scanner registered to the reference"),
        ("reference", "string", "reference scanner"),
        ("method", "string", "registration method"),
        (
            "matrix",
            "list<float64>[6]",
            "affine a,b,c,d,e,f: reference level-0 px -> this "
            "scanner's level-0 px (identity for the reference)",
        ),
        ("orientation", "int64", "dihedral orientation chosen (0-3 rotations, 4-7 mirrored)"),
        ("matches", "int64", "keypoint matches after the ratio test"),
        ("inliers", "int64", "robust-estimator inliers"),
        ("inlier_ratio", "float64", "inliers / matches"),
        ("scale", "float64", "isotropic scale after mpp correction (1.0 = as metadata says)"),
        ("shear", "float64", "shear of the linear part after mpp correction"),
        ("rotation_deg", "float64", "rotation angle of the linear part"),
        ("ncc", "float64", "normalised cross-correlation on tissue after the warp"),
        ("residual_um", "float64", "median local misalignment left after refinement, um"),
        ("refine_blocks", "int64", "tissue blocks accepted by the fine refinement"),
        ("seconds", "float64", "wall time for this pair"),
        ("qc_image", "string", "QC overlay path relative to the build directory"),
        ("status", "string", "ok, warn or failed"),
        ("message", "string", "why the status is not ok, in words a user can act on"),
        ("anisotropy", "float64", "scale_x / scale_y - 1 after mpp correction"),
        ("tissue_overlap", "float64", "fraction of reference tissue that lands on scan tissue"),
        ("residual_p90_um", "float64", "90th percentile of the local misalignment, um"),
        ("refine_model", "string", "model of the fine step (affine, translation, or none)"),
    ],
    "regions": [
        ("slide_id", "string", "slide identifier"),
        ("region_index", "int64", "region number within the slide"),
        ("sample_id", "string", "unique sample identifier, '{slide_id}_r{region_index:02d}'"),
        ("x_um", "float64", "left edge of the region in the reference slide, um"),
        ("y_um", "float64", "top edge of the region in the reference slide, um"),
        ("region_um", "float64", "side of the square region, um"),
        ("tissue_fraction", "float64", "tissue fraction of the region in the reference scan"),
        ("source", "string", "sampled, or given (--regions-from)"),
        ("status", "string", "ok, warn or failed"),
        ("message", "string", "why the status is not ok, in words a user can act on"),
    ],
    "patches": [
        ("index", "int64", "position on axis 0 of patches.zarr/patches"),
        ("sample_id", "string", "sample identifier (see regions)"),
        ("slide_id", "string", "slide identifier"),
        ("region_index", "int64", "region number within the slide"),
        ("scanner", "string", "scanner; its position on axis 1 is the group attr `scanners`"),
        ("scanner_index", "int64", "position on axis 1 of patches.zarr/patches"),
        (
            "patch_to_slide",
            "list<float64>[6]",
            "affine: output-patch px -> this scanner's "
            "level-0 px, the mapping used to resample the patch",
        ),
        ("level", "int64", "pyramid level read"),
        ("correction_x_px", "float64", "local refinement shift applied, output px along x"),
        ("correction_y_px", "float64", "local refinement shift applied, output px along y"),
        ("similarity", "float64", "NCC to the reference patch on a stain-robust image"),
        ("tissue_fraction", "float64", "tissue fraction of this patch"),
        (
            "checksum",
            "string",
            "CRC-32 (8 hex digits) of the patch's decoded uint8 pixels; empty when "
            "failed. `scorpion-build verify` checks the store against it",
        ),
        ("status", "string", "ok, warn or failed"),
        ("message", "string", "why the status is not ok, in words a user can act on"),
    ],
    "annotations": [
        ("slide_id", "string", "slide identifier"),
        ("feature", "int64", "position of the feature in {slide_id}.geojson (-1: no file)"),
        ("class_name", "string", "the feature's class (classification.name, else name)"),
        ("status", "string", "ok (used), warn (used after a repair) or failed (not used)"),
        ("message", "string", "what was wrong with the feature and how to fix it"),
    ],
}


@dataclass(frozen=True)
class BuildDir:
    """Paths inside a build directory (``docs/contracts.md`` section 3)."""

    root: Path

    @classmethod
    def at(cls, path: str | os.PathLike) -> BuildDir:
        # absolute, so tasks on other processes or machines resolve the same directory
        return cls(Path(path).expanduser().resolve())

    @property
    def manifests(self) -> Path:
        return self.root / "manifests"

    def manifest(self, name: str) -> Path:
        return self.manifests / f"{name}.parquet"

    @property
    def zarr(self) -> Path:
        return self.root / "patches.zarr"

    @property
    def qc(self) -> Path:
        return self.root / "qc"

    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def state(self) -> Path:
        """Per-stage bookkeeping (partial results, stage configs) for resume."""
        return self.root / ".state"

    def read(self, name: str) -> pd.DataFrame:
        path = self.manifest(name)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found; run the stage that writes it first ({self.writer(name)})"
            )
        try:
            return pd.read_parquet(path)
        except Exception as exc:  # truncated or not Parquet: say which file and the cure
            raise ManifestError(
                f"{path} is damaged ({exc.__class__.__name__}: {exc}); rebuild it with "
                f"`{self.writer(name)}`"
            ) from exc

    def writer(self, name: str) -> str:
        """The command that (re)writes manifest ``name`` for this build."""
        return WRITERS.get(name, "scorpion-build").replace("BUILD", str(self.root))

    def refuse_links(self, *paths: Path) -> None:
        """Raise ``ValueError`` if writing to any of ``paths`` would follow a symbolic link
        planted inside the build (see :func:`ensure_inside`)."""
        for path in paths:
            ensure_inside(self.root, path)

    def write(self, name: str, table: pd.DataFrame) -> Path:
        return write_parquet_atomic(table, ensure_inside(self.root, self.manifest(name)))


class ManifestError(ValueError):
    """A manifest exists but cannot be read (truncated, not Parquet, wrong columns)."""


# The command that writes each manifest, for "run this first" messages.
WRITERS = {
    "slides": "scorpion-build scan INPUT -o BUILD",
    "registrations": "scorpion-build register BUILD",
    "regions": "scorpion-build extract BUILD",
    "patches": "scorpion-build extract BUILD",
    "annotations": "scorpion-build extract BUILD --annotations DIR",
}


def write_parquet_atomic(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a Parquet file atomically (:func:`write_atomic`)."""
    return write_atomic(path, lambda tmp: table.reset_index(drop=True).to_parquet(tmp, index=False))


def read_json(path: str | os.PathLike) -> object | None:
    """A bookkeeping JSON file, or None when it is missing or damaged (e.g. cut short by a
    full disk): bookkeeping is only a cache, so damage means "recompute", never a crash."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


# Characters allowed in a file name made from a slide id or scanner name.
_SAFE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def safe_name(name: object) -> str:
    """``name`` as a single, harmless path component.

    Slide ids and scanner names are data, not paths: anything outside letters, digits,
    ``-``, ``_`` and ``.`` becomes ``_``, and a leading dot too, so ``../../x`` can never
    climb out of a folder or hide a file.
    """
    text = "".join(c if c in _SAFE_CHARS else "_" for c in str(name))
    if text.startswith("."):
        text = "_" + text[1:]
    return text or "_"


def is_safe_name(name: object) -> bool:
    """True if ``name`` is usable as a file name as it is (see :func:`safe_name`)."""
    return isinstance(name, str) and safe_name(name) == name


def ensure_inside(root: Path, path: Path) -> Path:
    """``path``, after checking it lies under ``root`` without passing through a symlink.

    Writes into a build follow no symlink planted inside it: they would land elsewhere.
    """
    root = Path(root)
    try:
        rel = Path(os.path.normpath(path)).relative_to(os.path.normpath(root))
    except ValueError:
        raise ValueError(f"{path}: outside {root}; refusing to write there") from None
    current = root
    for part in rel.parts:
        current = current / part
        if current.is_symlink():
            raise ValueError(
                f"{current} is a symbolic link; scorpion-build does not write through links "
                f"inside {root}. Replace it with a real folder or file"
            )
    return path


def order_columns(table: pd.DataFrame, name: str) -> pd.DataFrame:
    """Schema columns first (in schema order, missing ones added empty), extras after."""
    cols = [c for c, _, _ in SCHEMAS[name]]
    for c in cols:
        if c not in table.columns:
            table[c] = None
    extras = [c for c in table.columns if c not in cols]
    return table[cols + extras]


def schemas_markdown() -> str:
    lines = ["# Manifest schemas", "", "Generated from `scorpion_build/manifest.py`.", ""]
    for name, cols in SCHEMAS.items():
        lines += [
            f"## `manifests/{name}.parquet`",
            "",
            "| column | type | meaning |",
            "|---|---|---|",
        ]
        lines += [f"| `{c}` | {t} | {m} |" for c, t, m in cols]
        lines.append("")
    return "\n".join(lines)
