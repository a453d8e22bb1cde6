"""Scanners at very different magnifications: scan, register and extract all work, and a
wrong mpp is caught by registration with the corrected value in its message."""

from __future__ import annotations

import re

import numpy as np
import pytest

from scorpion_build import geometry as geo
from scorpion_build.extract import ExtractConfig, extract_build
from scorpion_build.manifest import BuildDir
from scorpion_build.register import RegisterConfig, qc, register_build
from scorpion_build.scan import scan
from scorpion_build.synth import SynthConfig, load_truth, synthesize

# A 40x reference beside a 20x scanner and the real Hamamatsu/Olympus ratio (0.227 vs 0.346).
MPPS = {"AT2": 0.25, "GT450": 0.5, "Philips": 0.25 * 0.346 / 0.227}
SLIDE = "synth_000"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("magnification")
    config = SynthConfig(
        n_slides=1,
        scanners=tuple(MPPS),
        scanner_mpp=MPPS,
        no_mpp_scanners=(),
        width_um=1200.0,
        height_um=900.0,
        max_margin_um=80.0,
    )
    table = synthesize(root / "synth", config)
    csv = root / "slides.csv"
    table[["slide_id", "scanner", "path"]].to_csv(csv, index=False)
    build = BuildDir.at(root / "build")
    slides = scan(csv)
    build.write("slides", slides)
    regs = register_build(
        build.root, config=RegisterConfig(max_blocks=8), workers=1, progress=False
    )
    return {"root": root, "build": build.root, "slides": slides, "regs": regs}


def test_scan_accepts_every_magnification_and_explains_the_ratio(built):
    t = built["slides"].set_index("scanner")
    assert t.loc["AT2", "status"] == "ok"
    for scanner in ("GT450", "Philips"):
        assert t.loc[scanner, "status"] == "warn", t.loc[scanner, "message"]
        assert t.loc[scanner, "mpp_x"] == pytest.approx(MPPS[scanner], rel=1e-3)
        assert "x the reference scan" in t.loc[scanner, "message"]


def test_registration_recovers_the_mpp_ratio(built):
    regs = built["regs"].set_index("scanner")
    assert (regs["status"] != "failed").all(), regs["message"].tolist()
    truth = load_truth(built["root"] / "synth", SLIDE)
    pts = truth.tissue_points(200, np.random.default_rng(0))
    for scanner in ("GT450", "Philips"):
        assert regs.loc[scanner, "scale"] == pytest.approx(1.0, abs=0.01)
        matrix = np.asarray(regs.loc[scanner, "matrix"]).reshape(2, 3)
        got = np.sqrt(abs(np.linalg.det(matrix[:, :2])))  # reference px -> this scan's px
        assert got == pytest.approx(MPPS["AT2"] / MPPS[scanner], rel=0.01)
        err_px = geo.apply(matrix, pts) - truth.ref_to_scanner(scanner, pts)
        err_um = np.hypot(*err_px.T) * MPPS[scanner]
        assert np.median(err_um) < 1.5, np.median(err_um)


def test_extract_pairs_patches_across_magnifications(built):
    config = ExtractConfig(regions=2, region_um=200.0, size=128, seed=0)  # 1.56 um/px
    regions, patches = extract_build(built["build"], config, workers=1, progress=False)
    assert (regions["status"] == "ok").all(), regions["message"].tolist()
    assert (patches["status"] == "ok").all(), patches["message"].tolist()
    assert (patches["similarity"] > 0.7).all()
    # finer than the 20x scan (0.5 um/px): its patches are upsampled and say so
    config = ExtractConfig(regions=2, region_um=200.0, size=512, seed=0)  # 0.39 um/px
    _, patches = extract_build(built["build"], config, workers=1, progress=False)
    by = patches.groupby("scanner")
    assert by.get_group("GT450")["message"].str.contains("patch upsampled 1.28x").all()
    assert (by.get_group("GT450")["status"] == "warn").all()
    assert not by.get_group("AT2")["message"].str.contains("upsampled").any()


def test_wrong_mpp_is_caught_by_registration_with_the_corrected_value(built, tmp_path):
    """GT450 declared at 0.45 instead of 0.5 um/px: scan accepts it, registration measures
    scale 0.9 and gives mpp_x / scale = 0.5 as the fix."""
    slides = built["slides"].copy()
    gt = slides["scanner"] == "GT450"
    slides.loc[gt, ["mpp_x", "mpp_y"]] = 0.45
    build = BuildDir.at(tmp_path / "build")
    build.write("slides", slides)
    regs = register_build(
        build.root, config=RegisterConfig(max_blocks=8), workers=1, progress=False
    )
    row = regs.set_index("scanner").loc["GT450"]
    assert row["scale"] == pytest.approx(0.9, abs=0.01)
    assert row["status"] == "warn", row["message"]
    found = re.search(r"true mpp is ([0-9.]+) \(mpp_x / scale\)", row["message"])
    assert found and float(found.group(1)) == pytest.approx(MPPS["GT450"], rel=0.01)


def test_judge_gives_the_corrected_mpp():
    row = {"scale": 1.25, "shear": 0.0, "ncc": 0.9, "tissue_overlap": 1.0}
    status, message = qc.judge(row, mpp_x=0.3)
    assert status == "failed" and "true mpp is 0.24 (mpp_x / scale)" in message
    assert qc.judge({**row, "scale": 1.0}, mpp_x=0.3) == ("ok", "")
