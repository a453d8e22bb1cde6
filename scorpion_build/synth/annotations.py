"""Ground-truth tissue classes of a synthetic slide as QuPath-style GeoJSON annotations.

``OUT_DIR/annotations/{slide_id}.geojson`` holds one feature per class (a Polygon, or a
MultiPolygon when the class has several islands; gland lumens and holes are polygon
holes) in reference level-0 px, the class in ``properties.classification.name``: exactly
what ``extract --annotations`` reads (docs/contracts.md section 1 for the pixel frame).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import shapely
from shapely.geometry import mapping, shape

from scorpion_build import geometry as geo
from scorpion_build.files import write_text_atomic
from scorpion_build.synth.tissue import LABEL_NAMES
from scorpion_build.synth.truth import SlideTruth

ANNOTATIONS_DIR = "annotations"
# Outlines are simplified by this much (label px): the raster's staircase carries no
# information, and fewer vertices keep files small and rasterising fast.
SIMPLIFY_PX = 0.5


def class_polygons(labels: np.ndarray, value: int) -> shapely.Geometry:
    """Polygons (with holes) of the pixels equal to ``value``, in label px (corner frame).

    Contours run through boundary pixel centres; the result is buffered out by half a
    pixel (mitred), so an isolated pixel becomes its own unit square.
    """
    mask = (labels == value).astype(np.uint8)
    contours, hierarchy = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return shapely.Polygon()
    polygons = []
    for k, c in enumerate(contours):
        if hierarchy[0][k][3] >= 0:  # a hole: added with its parent
            continue
        holes = []
        child = hierarchy[0][k][2]
        while child >= 0:
            if len(contours[child]) >= 3:
                holes.append(contours[child][:, 0] + 0.5)
            child = hierarchy[0][child][0]
        outer = shapely.Polygon(c[:, 0] + 0.5) if len(c) >= 3 else shapely.Point(c[0, 0] + 0.5)
        # the half-pixel buffer grows the outline and shrinks each hole to the pixel edges
        grown = outer.buffer(0.5, join_style="mitre")
        for h in holes:
            grown = grown.difference(shapely.Polygon(h).buffer(-0.5, join_style="mitre"))
        polygons.append(grown)
    merged = shapely.make_valid(shapely.union_all(polygons).simplify(SIMPLIFY_PX))
    parts = [p for p in shapely.get_parts(merged) if p.geom_type == "Polygon" and p.area > 0]
    return shapely.MultiPolygon(parts) if len(parts) > 1 else (parts[0] if parts else merged)


def truth_features(truth: SlideTruth) -> list[dict]:
    """One GeoJSON feature per tissue class of the truth label map, reference level-0 px."""
    ref = truth.geometries[truth.reference]
    features = []
    for value, name in enumerate(LABEL_NAMES):
        if value == 0:
            continue
        geom = class_polygons(truth.labels, value)
        if geom.is_empty:
            continue
        # label px -> specimen um -> reference level-0 px (exact for every vertex)
        geom = shapely.transform(geom, lambda xy: ref.specimen_to_px(xy * truth.labels_mpp))
        features.append(
            {
                "type": "Feature",
                "geometry": mapping(geom),
                "properties": {
                    "objectType": "annotation",
                    "classification": {"name": name},
                },
            }
        )
    return features


def write_truth_geojson(out_dir: str | Path, truth: SlideTruth) -> Path:
    """Write ``OUT_DIR/annotations/{slide_id}.geojson``; return its path."""
    path = Path(out_dir) / ANNOTATIONS_DIR / f"{truth.slide_id}.geojson"
    doc = {"type": "FeatureCollection", "features": truth_features(truth)}
    return write_text_atomic(path, json.dumps(doc))


def truth_label_map(
    truth: SlideTruth,
    features: list[dict],
    classes: list[str],
    scanner: str,
    patch_to_slide: np.ndarray,
    size: int,
) -> np.ndarray:
    """The label map a patch *should* have: ``features`` (GeoJSON, reference level-0 px)
    warped by the exact reference -> ``scanner`` map (turns, mirror, distortion, stitching),
    then into the patch by ``inverse(patch_to_slide)``; a pixel takes a class when its
    centre is inside (shapely, independent of :mod:`scorpion_build.labels`)."""
    to_patch = geo.invert(patch_to_slide)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    out = np.zeros((size, size), np.uint8)
    for f in features:
        geom = shapely.transform(
            shape(f["geometry"]), lambda p: geo.apply(to_patch, truth.ref_to_scanner(scanner, p))
        )
        out[shapely.contains_xy(geom, xx, yy)] = classes.index(
            f["properties"]["classification"]["name"]
        )
    return out


def read_features(out_dir: str | Path, slide_id: str) -> list[dict]:
    """The features :func:`write_truth_geojson` wrote for a slide."""
    path = Path(out_dir) / ANNOTATIONS_DIR / f"{slide_id}.geojson"
    return json.loads(path.read_text())["features"]
