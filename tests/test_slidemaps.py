"""Slide maps: the regions drawn on every scan land on the same tissue, however the scan is
turned or mirrored, and the picture is written where the report looks for it."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from scorpion_build import geometry as geo
from scorpion_build.manifest import BuildDir, order_columns
from scorpion_build.report.slidemaps import (
    describe_orientation,
    slide_panels,
    write_slide_maps,
)
from scorpion_build.sample import sample_regions
from scorpion_build.scan import scan
from scorpion_build.synth import Scenario, SynthConfig, load_truth, synthesize
from scorpion_build.tissue import tissue_mask

SCENARIOS = {"GT450": "rot90", "DP200": "mirror"}
REGION_UM = 150.0


def _inside(box: np.ndarray, mask: np.ndarray) -> float:
    """Share of the box (thumbnail px, our convention) that lies on ``mask``."""
    poly = np.zeros(mask.shape, np.uint8)
    # OpenCV puts pixel centres on integers, our convention on half-integers
    cv2.fillPoly(poly, [np.round(box - 0.5).astype(np.int32)], 1)
    area = poly.sum()
    return float((poly.astype(bool) & mask).sum() / area) if area else 0.0


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    """Three scans of one synthetic slide (reference, turned 90 degrees, mirrored), with the
    true maps as registrations and regions sampled on the reference tissue."""
    root = tmp_path_factory.mktemp("slidemaps")
    config = SynthConfig(
        n_slides=1,
        scanners=("AT2", *SCENARIOS),
        width_um=1400.0,
        height_um=1000.0,
        seed=3,
        scenarios=tuple(Scenario(name, scanner) for scanner, name in SCENARIOS.items()),
    )
    synthesize(root / "synth", config)
    bd = BuildDir.at(root / "build")
    slides = scan(root / "synth" / "slides.csv")
    assert (slides["status"] == "ok").all(), slides["message"].tolist()
    bd.write("slides", slides)
    slide_id = slides["slide_id"].iloc[0]
    truth = load_truth(root / "synth", slide_id)
    regs = [
        {
            "slide_id": slide_id,
            "scanner": s,
            "reference": "AT2",
            "matrix": geo.to_six(geo.identity() if s == "AT2" else truth.affine(s)),
            "orientation": {"AT2": 0, "GT450": 1, "DP200": 4}[s],
            "status": "ok",
            "message": "",
        }
        for s in ("AT2", *SCENARIOS)
    ]
    bd.write("registrations", order_columns(pd.DataFrame(regs), "registrations"))
    ref = slides[slides["scanner"] == "AT2"].iloc[0]
    from scorpion_build.slide import Slide

    with Slide(ref["path"]) as s:
        mpp = 8.0
        thumb = s.thumbnail_at(mpp)
    picked = sample_regions(tissue_mask(thumb, mpp), mpp, REGION_UM, 6, seed=1, min_tissue=0.95)
    assert len(picked) >= 3
    regions = pd.DataFrame(
        {
            "slide_id": slide_id,
            "region_index": range(len(picked)),
            "sample_id": [f"{slide_id}_r{k:02d}" for k in range(len(picked))],
            "x_um": [r.x_um for r in picked],
            "y_um": [r.y_um for r in picked],
            "region_um": REGION_UM,
            "tissue_fraction": 1.0,
            "source": "sampled",
            "status": ["ok"] * (len(picked) - 1) + ["warn"],
            "message": [""] * (len(picked) - 1) + ["low tissue"],
        }
    )
    bd.write("regions", order_columns(regions, "regions"))
    tables = {n: bd.read(n) for n in ("slides", "registrations", "regions")}
    tables["patches"] = None
    return bd, slide_id, tables


def test_boxes_land_on_tissue_in_every_turned_or_mirrored_scan(build):
    _, slide_id, tables = build
    panels = slide_panels(slide_id, tables)
    assert [p.scanner for p in panels] == ["AT2", "DP200", "GT450"]
    assert panels[0].reference and panels[0].mask is not None and panels[0].mask.any()
    n = len(tables["regions"])
    reference = [_inside(b.corners, panels[0].mask) for b in panels[0].boxes]
    for panel in panels:
        assert panel.rgb is not None, panel.caption
        assert len(panel.boxes) == n
        # this scan's own tissue, from its own thumbnail: each box covers as much tissue as
        # the same region does in the reference
        shares = [_inside(b.corners, panel.mask) for b in panel.boxes]
        assert min(shares) > 0.8, (panel.scanner, shares)
        assert np.allclose(shares, reference, atol=0.06), (panel.scanner, shares, reference)
    # the warned region is drawn as warned
    assert [b.status for b in panels[0].boxes].count("warn") == 1


def test_boxes_follow_the_turn_and_the_mirror(build):
    _, slide_id, tables = build
    panels = {p.scanner: p for p in slide_panels(slide_id, tables)}
    for scanner, sign in (("GT450", 1), ("DP200", -1)):
        corners = panels[scanner].boxes[0].corners
        top = corners[1] - corners[0]  # the region's top edge as the reference sees it
        left = corners[3] - corners[0]
        # a turn keeps the handedness of the corners, a mirror flips it
        assert np.sign(top[0] * left[1] - top[1] * left[0]) == sign
    assert "turned 90 deg" in panels["GT450"].caption
    assert "mirrored" in panels["DP200"].caption


def test_wrong_registration_misses_the_tissue(build):
    """The check above can fail: without the turn the boxes land off the tissue."""
    bd, slide_id, tables = build
    regs = tables["registrations"].copy()
    regs["matrix"] = [geo.to_six(geo.identity())] * len(regs)
    panels = {p.scanner: p for p in slide_panels(slide_id, {**tables, "registrations": regs})}
    mask = panels["GT450"].mask
    shares = [_inside(b.corners, mask) for b in panels["GT450"].boxes]
    assert min(shares) < 0.5


def test_slide_map_written_in_qc(build):
    bd, slide_id, tables = build
    maps = write_slide_maps(bd.root, tables)
    assert [m["slide_id"] for m in maps] == [slide_id]
    path = maps[0]["path"]
    assert path == bd.qc / "slides" / f"{slide_id}.png"
    image = cv2.imread(str(path))
    assert image is not None and image.shape[1] >= 1000 and image.std() > 20


def test_a_region_with_no_place_is_left_out(build):
    _, slide_id, tables = build
    regions = tables["regions"]
    unplaced = regions.iloc[:1].assign(
        region_index=99, x_um=np.nan, y_um=np.nan, status="failed", message="no region fits"
    )
    panels = slide_panels(slide_id, {**tables, "regions": pd.concat([regions, unplaced])})
    assert all(len(p.boxes) == len(regions) for p in panels)


def test_unreadable_reference_is_a_note_not_a_crash(build, tmp_path):
    bd, slide_id, tables = build
    slides = tables["slides"].copy()
    slides.loc[slides["is_reference"], "path"] = str(tmp_path / "gone.svs")
    maps = write_slide_maps(tmp_path, {**tables, "slides": slides})
    assert maps[0]["path"] is None and "gone.svs" in maps[0]["note"]


def test_orientation_words():
    assert describe_orientation(0) == "same orientation as the reference"
    assert describe_orientation(3) == "turned 270 deg"
    assert describe_orientation(4) == "mirrored"
    assert describe_orientation(6) == "mirrored, turned 180 deg"
    assert describe_orientation(float("nan")) == ""


def test_an_unregistered_scan_is_shown_without_boxes_and_named(build, tmp_path):
    _, slide_id, tables = build
    regs = tables["registrations"].copy()
    regs.loc[regs["scanner"] == "GT450", ["status", "message"]] = ["failed", "too few inliers"]
    maps = write_slide_maps(tmp_path, {**tables, "registrations": regs})
    assert maps[0]["path"] is not None
    assert maps[0]["note"] == "GT450: not registered, so no regions drawn"
    panels = {p.scanner: p for p in slide_panels(slide_id, {**tables, "registrations": regs})}
    assert panels["GT450"].rgb is not None and panels["GT450"].boxes == []
    assert len(panels["DP200"].boxes) == len(tables["regions"])
