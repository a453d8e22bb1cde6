"""Read QuPath-style GeoJSON annotations of the reference slides, and check every feature.

One file per slide, ``DIR/{slide_id}.geojson``: a FeatureCollection of Polygon and
MultiPolygon features (holes allowed) in **reference level-0 px** (docs/contracts.md
section 1), the class in ``properties.classification.name`` or else ``properties.name``.
Every feature gets one row in ``manifests/annotations.parquet``: ``ok``, ``warn`` (used
after a repair: clipped to the slide, self-intersection resolved) or ``failed`` (not used,
with the reason); nothing is dropped silently.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import shapely
from shapely.geometry import shape
from shapely.validation import explain_validity

BACKGROUND = "background"
SUFFIX = ".geojson"

Rings = list[np.ndarray]
"""One polygon: its exterior ring, then its holes, each (K, 2) float64 x, y."""


class AnnotationError(ValueError):
    """An annotation folder or class file that cannot be used; names the file and the fix."""


@dataclass(frozen=True)
class Annotation:
    """One usable feature: its class and its polygons in reference level-0 px.

    ``edges`` (E, 2, 2) holds every ring's segments (start and end x, y), ``bounds`` the
    (x0, y0, x1, y1) box: what rasterising needs, computed once.
    """

    feature: int
    class_index: int
    polygons: tuple[Rings, ...]
    edges: np.ndarray = field(init=False, repr=False, compare=False)
    bounds: tuple[float, float, float, float] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        rings = [ring for rings in self.polygons for ring in rings]
        # a ring's last vertex repeats its first, so consecutive pairs close it
        edges = np.concatenate([np.stack([r[:-1], r[1:]], axis=1) for r in rings])
        pts = np.concatenate(rings)
        object.__setattr__(self, "edges", edges)
        object.__setattr__(self, "bounds", (*pts.min(axis=0), *pts.max(axis=0)))


@dataclass
class AnnotationSet:
    """Annotations of every slide, with the class list and one report row per feature."""

    classes: list[str]
    by_slide: dict[str, list[Annotation]] = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)
    digest: str = ""

    def class_indices(self, names: list[str] | tuple[str, ...]) -> list[int]:
        """Indices of ``names``; an unknown one raises naming the known classes."""
        unknown = [n for n in names if n not in self.classes[1:]]
        if unknown:
            raise AnnotationError(
                f"--roi-class {', '.join(unknown)}: not an annotated class; "
                f"choose from {', '.join(self.classes[1:]) or '(none found)'}"
            )
        return [self.classes.index(n) for n in names]


def read_class_file(path: Path) -> list[str]:
    """``--classes FILE``: a JSON list of names, index 0 being background / unannotated."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise AnnotationError(f"{path}: cannot read a JSON list of class names ({exc})") from exc
    if (
        not isinstance(raw, list)
        or len(raw) < 2
        or not all(isinstance(c, str) and c for c in raw)
        or len(set(raw)) != len(raw)
    ):
        raise AnnotationError(
            f"{path}: expected a JSON list of distinct names, background first, e.g. "
            f'["background", "tumour", "stroma"]'
        )
    return raw


def feature_class(feature: dict) -> str | None:
    """QuPath's ``classification.name``, else ``name``; None when neither is set."""
    props = feature.get("properties") or {}
    cls = props.get("classification")
    if isinstance(cls, dict) and cls.get("name"):
        return str(cls["name"])
    if props.get("name"):
        return str(props["name"])
    return None


def _features(path: Path) -> list[dict]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise AnnotationError(f"{path}: not readable GeoJSON ({exc}); export it again") from exc
    if isinstance(doc, list):  # QuPath can export a bare list of features
        return doc
    if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        return list(doc.get("features") or [])
    if isinstance(doc, dict) and doc.get("type") == "Feature":
        return [doc]
    raise AnnotationError(f"{path}: expected a GeoJSON FeatureCollection of polygon features")


def load_annotations(
    folder: Path,
    slide_sizes: dict[str, tuple[int, int]],
    classes: list[str] | None = None,
) -> AnnotationSet:
    """Read ``folder/{slide_id}.geojson`` for every slide of ``slide_sizes``.

    Parameters
    ----------
    folder : the ``--annotations`` folder.
    slide_sizes : slide_id -> reference level-0 (width, height) px; coordinates are checked
        against it.
    classes : fixed class order (index 0 = background); default background then the sorted
        names found.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise AnnotationError(
            f"{folder}: no such folder; --annotations takes a folder of {{slide_id}}.geojson files"
        )
    files = {sid: folder / f"{sid}{SUFFIX}" for sid in slide_sizes}
    found = {sid: _features(p) for sid, p in files.items() if p.is_file()}
    if not found:
        raise AnnotationError(
            f"{folder}: none of the build's slides has a {{slide_id}}{SUFFIX} file "
            f"(expected e.g. {next(iter(files.values()), folder).name})"
        )
    if classes is None:
        names = {feature_class(f) for feats in found.values() for f in feats}
        classes = [BACKGROUND] + sorted(n for n in names if n and n != BACKGROUND)
    out = AnnotationSet(classes=list(classes))
    digest = hashlib.sha1(json.dumps(classes).encode())
    for sid in sorted(slide_sizes):
        if sid not in found:
            out.rows.append(_row(sid, -1, "", "warn", f"no {files[sid]}: slide unannotated"))
            continue
        digest.update(files[sid].read_bytes())
        out.by_slide[sid] = []
        for k, feature in enumerate(found[sid]):
            ann, row = check_feature(feature, k, out.classes, slide_sizes[sid])
            out.rows.append({"slide_id": sid, **row})
            if ann is not None:
                out.by_slide[sid].append(ann)
    for path in sorted(folder.glob(f"*{SUFFIX}")):
        if path.stem not in slide_sizes:  # a typo in a file name would leave a slide bare
            out.rows.append(
                _row(path.stem, -1, "", "warn", f"{path}: no slide {path.stem!r} in the build")
            )
    out.digest = digest.hexdigest()[:16]
    return out


def _row(slide_id: str, feature: int, cls: str, status: str, message: str) -> dict:
    return {
        "slide_id": slide_id,
        "feature": feature,
        "class_name": cls,
        "status": status,
        "message": message,
    }


def check_feature(
    feature: dict, index: int, classes: list[str], size_px: tuple[int, int]
) -> tuple[Annotation | None, dict]:
    """One feature -> (annotation or None, report row without slide_id)."""
    name = feature_class(feature) or ""

    def verdict(status: str, message: str) -> dict:
        return {"feature": index, "class_name": name, "status": status, "message": message}

    geom_raw = feature.get("geometry") or {}
    kind = geom_raw.get("type")
    if kind not in ("Polygon", "MultiPolygon"):
        return None, verdict(
            "failed",
            f"feature {index}: {kind or 'no'} geometry; only "
            "Polygon and MultiPolygon areas become labels",
        )
    if not name:
        return None, verdict(
            "failed", f"feature {index}: no classification or name; classify it in QuPath"
        )
    if name not in classes:
        return None, verdict(
            "failed",
            f"feature {index}: class {name!r} is not in the class "
            f"list {classes}; add it to --classes or reclassify the feature",
        )
    try:
        geom = shape(geom_raw)
    except (ValueError, TypeError, AttributeError, IndexError) as exc:
        return None, verdict("failed", f"feature {index}: unreadable coordinates ({exc})")
    notes = []
    if not geom.is_empty and not geom.is_valid:
        why = explain_validity(geom)
        geom = _polygonal(shapely.make_valid(geom))
        notes.append(f"self-intersecting or invalid polygon ({why}) repaired; check its outline")
    if geom.is_empty or geom.area <= 0:
        return None, verdict("failed", f"feature {index}: empty polygon (no area); delete it")
    w, h = size_px
    slide_box = shapely.box(0, 0, w, h)
    if not slide_box.contains(geom):
        inside = _polygonal(geom.intersection(slide_box))
        if inside.is_empty or inside.area <= 0:
            return None, verdict(
                "failed",
                f"feature {index}: lies outside the {w}x{h} px "
                "reference slide; coordinates must be reference level-0 px",
            )
        notes.append(f"{1 - inside.area / geom.area:.0%} of it outside the slide, clipped")
        geom = inside
    polygons = tuple(_rings(p) for p in shapely.get_parts(geom))
    status = "warn" if notes else "ok"
    message = f"feature {index}: " + "; ".join(notes) if notes else ""
    return Annotation(index, classes.index(name), polygons), verdict(status, message)


def _polygonal(geom: shapely.Geometry) -> shapely.Geometry:
    """The area part of a geometry (make_valid and clipping may add lines and points)."""
    parts = [p for p in shapely.get_parts(geom) if p.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts) if parts else shapely.Polygon()


def _rings(polygon: shapely.Polygon) -> Rings:
    return [np.asarray(polygon.exterior.coords, np.float64)] + [
        np.asarray(r.coords, np.float64) for r in polygon.interiors
    ]


def load_build_annotations(
    slides: pd.DataFrame, folder: Path, class_file: Path | None = None
) -> AnnotationSet:
    """:func:`load_annotations` for the slides of a build's ``slides`` manifest, coordinates
    checked against each slide's reference scan."""
    refs = slides[slides["is_reference"]]
    sizes = {str(r.slide_id): (int(r.width), int(r.height)) for r in refs.itertuples()}
    classes = read_class_file(class_file) if class_file is not None else None
    return load_annotations(folder, sizes, classes)
