"""Synthetic scanner-paired slides: formats readers meet, exact ground truth, labelled sets."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import cv2
import numpy as np
import openslide
import pandas as pd
import pytest
import tiffslide
from click.testing import CliRunner
from skimage.registration import phase_cross_correlation

from scorpion_build.synth import (
    CLASSES,
    ScannerStyle,
    Scenario,
    SynthConfig,
    SynthConfigError,
    TextureError,
    TruthError,
    load_truth,
    specimen_for,
    specimen_from_texture,
    style_for,
    synthesize,
)
from scorpion_build.synth.labelled import write_train_set
from scorpion_build.synth.writers import level_sizes

SCANNERS = ("AT2", "GT450", "DP200", "P1000", "Philips")
CONFIG = SynthConfig(
    n_slides=1,
    width_um=700.0,
    height_um=520.0,
    max_margin_um=80.0,
    scenarios=(Scenario("rot90", "GT450"), Scenario("mirror", "DP200")),
    labelled=True,
    n_train=6,
    n_paired_slides=1,
    paired_samples=2,
    patch_px=64,
)


@pytest.fixture(scope="module")
def synth_set(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    out = tmp_path_factory.mktemp("synth")
    return out, synthesize(out, CONFIG)


def _gray(region) -> np.ndarray:
    return cv2.cvtColor(np.asarray(region)[..., :3], cv2.COLOR_RGB2GRAY).astype(np.float32)


# ---------------------------------------------------------------- formats


def test_openslide_sees_vendor_levels_and_mpp(synth_set):
    out, table = synth_set
    truth = load_truth(out, "synth_000")
    for row in table.itertuples():
        with openslide.OpenSlide(row.path) as slide:
            vendor = slide.properties["openslide.vendor"]
            assert vendor == ("aperio" if row.scanner in ("AT2", "GT450") else "generic-tiff")
            w, h = truth.size_px(row.scanner)
            assert slide.dimensions == (w, h)
            assert slide.level_dimensions == tuple(level_sizes(w, h, 4))
            assert slide.level_count >= 2
            assert min(slide.level_dimensions[-1]) <= 1024
            assert slide.level_downsamples[1] == pytest.approx(4.0, abs=0)
            mpp = slide.properties.get(openslide.PROPERTY_NAME_MPP_X)
            if row.scanner == "P1000":
                assert mpp is None, "P1000 is the scan without mpp metadata"
            else:
                assert float(mpp) == pytest.approx(CONFIG.mpp_of(row.scanner), abs=1e-6)
                assert float(slide.properties[openslide.PROPERTY_NAME_MPP_Y]) == pytest.approx(
                    float(mpp)
                )


def test_tiffslide_reads_the_same_pixels(synth_set):
    _, table = synth_set
    for row in table.itertuples():
        with openslide.OpenSlide(row.path) as a, tiffslide.TiffSlide(row.path) as b:
            assert b.level_dimensions == a.level_dimensions
            mpp = b.properties.get("tiffslide.mpp-x")
            assert (mpp is None) == (row.scanner == "P1000")
            for level in (0, a.level_count - 1):
                w, h = a.level_dimensions[level]
                loc = (0, 0) if level else (w // 3, h // 3)
                size = (min(300, w), min(200, h))
                ra = np.asarray(a.read_region(loc, level, size).convert("RGB"))
                rb = np.asarray(b.read_region(loc, level, size).convert("RGB"))
                assert np.abs(ra.astype(int) - rb.astype(int)).max() <= 1


def test_writer_rejects_sizes_that_break_the_pyramid(tmp_path):
    from scorpion_build.synth.writers import write_pyramid

    with pytest.raises(ValueError, match="bad.tif.*multiple of 256"):
        write_pyramid(tmp_path / "bad.tif", iter([]), 300, 256, flavour="tiff", mpp=None)
    with pytest.raises(ValueError, match="needs an mpp"):
        write_pyramid(tmp_path / "bad.svs", iter([]), 256, 256, flavour="svs", mpp=None)
    assert level_sizes(4096, 2048, 4) == [(4096, 2048), (1024, 512)]
    assert level_sizes(8192, 4096, 2) == [(8192, 4096), (4096, 2048), (2048, 1024), (1024, 512)]


def test_slide_table_paths_and_mpp(synth_set):
    out, table = synth_set
    csv = pd.read_csv(out / "slides.csv")
    assert list(csv.columns) == ["slide_id", "scanner", "path", "mpp"]
    assert list(csv["scanner"]) == list(SCANNERS)
    for row in csv.itertuples():
        path = out / row.path
        assert path.exists() and not Path(row.path).is_absolute()
        assert path.name == f"{row.scanner}.{'svs' if row.scanner in ('AT2', 'GT450') else 'tif'}"
        if row.scanner == "P1000":
            assert row.mpp == pytest.approx(0.243)
        else:
            assert math.isnan(row.mpp), "mpp is filled only where the file lacks it"
    assert [Path(p) for p in table["path"]] == [(out / p).resolve() for p in csv["path"]]


# ---------------------------------------------------------------- ground truth


def test_truth_round_trip_within_a_hundredth_of_a_pixel(synth_set):
    out, _ = synth_set
    truth = load_truth(out, "synth_000")
    rng = np.random.default_rng(0)
    pts = truth.tissue_points(500, rng)
    assert (truth.label_at("AT2", pts) > 0).all(), "tissue points lie on tissue"
    for scanner in SCANNERS:
        there = truth.ref_to_scanner(scanner, pts)
        assert np.abs(truth.scanner_to_ref(scanner, there) - pts).max() < 0.01
        w, h = truth.size_px(scanner)
        scan_pts = rng.random((500, 2)) * [w, h]
        back = truth.ref_to_scanner(scanner, truth.scanner_to_ref(scanner, scan_pts))
        assert np.abs(back - scan_pts).max() < 0.01


def test_truth_has_affine_part_plus_small_nonrigid_residual(synth_set):
    out, _ = synth_set
    truth = load_truth(out, "synth_000")
    pts = truth.tissue_points(400, np.random.default_rng(1))
    np.testing.assert_allclose(truth.affine("AT2"), [[1, 0, 0], [0, 1, 0]], atol=1e-12)
    for scanner in SCANNERS[1:]:
        m = truth.affine(scanner)
        # the linear part carries the mpp ratio; rot90 and mirror show in its sign pattern
        scale = math.sqrt(abs(np.linalg.det(m[:, :2])))
        assert scale == pytest.approx(truth.mpp("AT2") / truth.mpp(scanner), rel=1e-9)
        if scanner == "GT450":
            assert abs(m[0, 1]) > 0.9 and abs(m[0, 0]) < 0.1
        if scanner == "DP200":
            assert np.linalg.det(m[:, :2]) < 0
        residual_um = np.hypot(*(pts @ m[:, :2].T + m[:, 2] - truth.ref_to_scanner(scanner, pts)).T)
        residual_um *= truth.mpp(scanner)
        # 3 um of distortion plus a few um of accumulated stitching shifts
        assert 0.2 < residual_um.max() < 8.0


def _shift_px(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(dy, dx) that registers b onto a: windowed phase correlation, 1/50 px steps."""
    han = cv2.createHanningWindow(a.shape[::-1], cv2.CV_32F)
    shift, _, _ = phase_cross_correlation(
        (a - a.mean()) * han, (b - b.mean()) * han, upsample_factor=50, normalization=None
    )
    return np.asarray(shift)


def test_truth_matches_pixels_read_back_from_the_files(synth_set):
    """Each scan, as openslide reads it, equals the specimen resampled through the truth:
    no shift is left, while a map off by one reference pixel is seen as one."""
    out, table = synth_set
    truth = load_truth(out, "synth_000")
    specimen = specimen_for(CONFIG, 0)
    win = 160
    jj, ii = np.meshgrid(np.arange(win) + 0.5, np.arange(win) + 0.5)
    grid = np.stack([jj.ravel(), ii.ravel()], axis=1)
    ref_um = truth.mpp("AT2")  # the reference scan is the specimen frame, scaled

    coloured = {s: style_for(s).colourize(specimen.stains, specimen.mpp) for s in SCANNERS}

    def expected(scanner, offset_ref_px, x0, y0):
        ref_pts = truth.scanner_to_ref(scanner, grid + [x0, y0]) + [offset_ref_px, 0]
        raster = (ref_pts * ref_um / specimen.mpp - 0.5).astype(np.float32)  # OpenCV centres
        rgb = coloured[scanner]
        return _gray(
            cv2.remap(
                rgb,
                raster[:, 0].reshape(win, win),
                raster[:, 1].reshape(win, win),
                cv2.INTER_LINEAR,
            )
        )

    pts = truth.tissue_points(3, np.random.default_rng(2))
    for row in table.itertuples():
        with openslide.OpenSlide(row.path) as scan:
            for p in truth.ref_to_scanner(row.scanner, pts):
                x0, y0 = (int(v) - win // 2 for v in p)
                seen = _gray(scan.read_region((x0, y0), 0, (win, win)))
                assert np.hypot(*_shift_px(expected(row.scanner, 0, x0, y0), seen)) < 0.1
                assert np.abs(expected(row.scanner, 0, x0, y0) - seen).mean() < 6.0
                off = np.hypot(*_shift_px(expected(row.scanner, 1, x0, y0), seen))
                assert 0.7 < off * truth.mpp(row.scanner) / ref_um < 1.3


def test_rendered_feature_lands_where_the_truth_says():
    """Stain dots in the specimen show up, in every scan, at ``specimen_to_px``, with
    stitching seams every 60-80 um (dots on a seam are split by it, as in real scans)."""
    from scorpion_build.synth.placement import random_geometry
    from scorpion_build.synth.render import assemble, render_tile_rows

    mpp_c, size = 0.5, 400
    rng = np.random.default_rng(7)
    dots_um = rng.uniform(20, size * mpp_c - 20, (12, 2))
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    h_od = np.zeros((size, size), np.float32)
    for x, y in dots_um:
        h_od = np.maximum(h_od, np.exp(-((xx - x / mpp_c) ** 2 + (yy - y / mpp_c) ** 2) / 12.5))
    stains = np.stack([(h_od * 200).astype(np.uint8), np.zeros_like(h_od, np.uint8)], axis=-1)
    style = ScannerStyle(blur_um=0.0, noise=0.0)
    rgb = style.colourize(stains, mpp_c)
    checked = 0
    for k, scenarios in enumerate([(), ("rot90",), ("mirror", "rot180")]):
        geom = random_geometry(
            np.random.default_rng(k),
            (size * mpp_c, size * mpp_c),
            0.243,
            64,
            scenarios=scenarios,
            max_margin_um=20.0,
            stitch_tile_um=(60.0, 80.0),
        )
        img = assemble(render_tile_rows(rgb, mpp_c, geom, style, np.random.default_rng(0), 64))
        dark = 255.0 - img.mean(axis=2)
        tile = geom.stitching.tile_um
        for target in geom.specimen_to_px(dots_um):
            v = target * geom.mpp
            if (np.minimum(v % tile, tile - v % tile) < 5.0).any():
                continue  # within reach of a seam
            x0, y0 = (int(t) - 30 for t in target)
            patch = dark[y0 : y0 + 60, x0 : x0 + 60]
            patch = np.where(patch > 0.1 * patch.max(), patch, 0.0)
            jj, ii = np.meshgrid(np.arange(60) + x0 + 0.5, np.arange(60) + y0 + 0.5)
            centroid = np.array([(patch * jj).sum(), (patch * ii).sum()]) / patch.sum()
            assert np.hypot(*(centroid - target)) < 0.05, (scenarios, centroid, target)
            checked += 1
    assert checked >= 10


def test_load_truth_errors_name_the_file(tmp_path):
    with pytest.raises(TruthError, match="synth_009.json"):
        load_truth(tmp_path, "synth_009")
    (tmp_path / "truth").mkdir()
    (tmp_path / "truth" / "x.json").write_text("{")
    with pytest.raises(TruthError, match="not valid JSON"):
        load_truth(tmp_path, "x")


def test_truth_json_records_scenarios(synth_set):
    out, _ = synth_set
    doc = json.loads((out / "truth" / "synth_000.json").read_text())
    assert doc["reference"] == "AT2"
    assert doc["scanners"]["GT450"]["scenarios"] == ["rot90"]
    assert doc["scanners"]["DP200"]["scenarios"] == ["mirror"]
    assert doc["scanners"]["AT2"]["affine"] == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]


# ---------------------------------------------------------------- scenarios, determinism


TINY = SynthConfig(
    n_slides=1,
    scanners=("AT2", "DP200", "P1000"),
    width_um=360.0,
    height_um=280.0,
    max_margin_um=40.0,
    labelled=True,
    n_train=3,
    n_paired_slides=1,
    paired_samples=1,
    patch_px=48,
)


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_same_seed_gives_byte_identical_files(tmp_path):
    synthesize(tmp_path / "a", TINY)
    synthesize(tmp_path / "b", TINY)
    a, b = _digest(tmp_path / "a"), _digest(tmp_path / "b")
    assert len(a) > 12 and a == b
    synthesize(tmp_path / "c", SynthConfig(**{**TINY.__dict__, "seed": 1, "labelled": False}))
    c = _digest(tmp_path / "c")
    assert c["synth_000/DP200.tif"] != a["synth_000/DP200.tif"]


def test_failure_scenarios(tmp_path):
    config = SynthConfig(
        n_slides=2,
        scanners=("AT2", "GT450", "DP200", "Philips"),
        width_um=360.0,
        height_um=280.0,
        max_margin_um=40.0,
        scenarios=(
            Scenario("blank", "GT450", 1),
            Scenario("unrelated", "DP200", 1),
            Scenario("partial", "Philips"),
            Scenario("strong-stain", "Philips", 0),
        ),
    )
    table = synthesize(tmp_path, config)
    paths = {(r.slide_id, r.scanner): r.path for r in table.itertuples()}
    t0, t1 = load_truth(tmp_path, "synth_000"), load_truth(tmp_path, "synth_001")
    assert t1.expect_failure("GT450") and t1.expect_failure("DP200")
    assert not t0.expect_failure("GT450") and not t1.expect_failure("Philips")
    assert t0.scenarios["Philips"] == ("strong-stain", "partial")
    with openslide.OpenSlide(paths[("synth_001", "GT450")]) as blank:
        thumb = _gray(blank.read_region((0, 0), blank.level_count - 1, blank.level_dimensions[-1]))
        assert thumb.std() < 3.0, "a blank scan shows glass only"
    with openslide.OpenSlide(paths[("synth_000", "GT450")]) as normal:
        thumb = _gray(
            normal.read_region((0, 0), normal.level_count - 1, normal.level_dimensions[-1])
        )
        assert thumb.std() > 10.0
    # a partial scan misses tissue the reference sees
    for truth in (t0, t1):
        pts = truth.ref_to_scanner("Philips", truth.tissue_points(2000, np.random.default_rng(3)))
        w, h = truth.size_px("Philips")
        inside = (pts >= 0).all(axis=1) & (pts[:, 0] < w) & (pts[:, 1] < h)
        assert 0.05 < inside.mean() < 0.95


def test_config_errors_say_what_to_change():
    with pytest.raises(SynthConfigError, match="unknown scenario"):
        SynthConfig(scenarios=(Scenario("rot45"),)).validate()
    with pytest.raises(SynthConfigError, match="--reference"):
        SynthConfig(reference="Hamamatsu").validate()
    with pytest.raises(SynthConfigError, match="non-reference"):
        SynthConfig(scenarios=(Scenario.parse("mirror:AT2"),)).validate()
    with pytest.raises(SynthConfigError, match="slide index"):
        SynthConfig(n_slides=1, scenarios=(Scenario.parse("blank:GT450:3"),)).validate()
    assert Scenario.parse("blank:P1000:1") == Scenario("blank", "P1000", 1)
    assert Scenario.parse("rot90") == Scenario("rot90")


# ---------------------------------------------------------------- labelled sets


def test_train_set_format(synth_set):
    out, _ = synth_set
    train = out / "train"
    assert json.loads((train / "classes.json").read_text()) == CLASSES
    assert CLASSES == ["background", "cancer_area", "cancer_stroma"]
    images = sorted(p.stem for p in (train / "images").glob("*.png"))
    masks = sorted(p.stem for p in (train / "masks").glob("*.png"))
    assert images == masks and len(images) == CONFIG.n_train
    split = pd.read_csv(train / "split.csv")
    assert list(split.columns) == ["stem", "split"]
    assert sorted(split["stem"]) == images
    assert set(split["split"]) <= {"train", "val", "test"} and "train" in set(split["split"])
    seen = set()
    for stem in images:
        img = cv2.imread(str(train / "images" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        mask = cv2.imread(str(train / "masks" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8
        assert mask.shape == (64, 64) and mask.dtype == np.uint8 and mask.max() <= 2
        seen |= set(np.unique(mask).tolist())
    assert {1, 2} <= seen, "both tissue classes occur"


def test_paired_set_layout_and_styles(synth_set):
    out, _ = synth_set
    samples = sorted((out / "paired").glob("slide_*/sample_*"))
    assert [s.relative_to(out / "paired").as_posix() for s in samples] == [
        "slide_1/sample_1",
        "slide_1/sample_2",
    ]
    for sample in samples:
        assert sorted(p.name for p in sample.iterdir()) == sorted(
            [f"{s}.jpg" for s in SCANNERS] + ["label.png"]
        )
        label = cv2.imread(str(sample / "label.png"), cv2.IMREAD_UNCHANGED)
        assert label.shape == (64, 64) and label.max() <= 2
        imgs = {s: cv2.imread(str(sample / f"{s}.jpg")).astype(np.float32) for s in SCANNERS}
        assert all(im.shape == (64, 64, 3) for im in imgs.values())
        # same tissue, pixel-aligned: structure correlates strongly across styles ...
        g = {s: im.mean(axis=2).ravel() for s, im in imgs.items()}
        for s in SCANNERS[1:]:
            assert np.corrcoef(g["AT2"], g[s])[0, 1] > 0.6
        # ... while colour differs visibly between scanners
        means = np.array([im.reshape(-1, 3).mean(axis=0) for im in imgs.values()])
        spread = np.abs(means[:, None] - means[None]).max(axis=2)
        assert spread[np.triu_indices(len(SCANNERS), 1)].min() > 3.0


# ---------------------------------------------------------------- texture, CLI


def test_texture_png_needs_mpp(tmp_path):
    png = tmp_path / "he.png"
    cv2.imwrite(str(png), np.full((40, 50, 3), 200, np.uint8))
    with pytest.raises(TextureError, match="--texture-mpp"):
        specimen_from_texture(png, 0.5)
    spec = specimen_from_texture(png, 0.5, texture_mpp=1.0)
    assert spec.stains.shape == (80, 100, 2)


def test_real_texture_from_cmu_small_region(tmp_path, cmu_svs):
    """CMU-1-Small-Region (skipped when ../shared/data/real is absent) as the specimen."""
    config = SynthConfig(
        n_slides=1,
        scanners=("AT2", "DP200"),
        scanner_mpp={"AT2": 2.0, "DP200": 2.0},
        canonical_mpp=1.0,
        texture=cmu_svs,
        max_margin_um=50.0,
    )
    table = synthesize(tmp_path, config)
    truth = load_truth(tmp_path, "synth_000")
    with openslide.OpenSlide(str(cmu_svs)) as src:
        w0, h0 = src.dimensions
        real = _gray(src.get_thumbnail((w0 // 8, h0 // 8)))
    # 2220 x 2967 px at 0.499 um/px
    assert truth.labels.shape == (round(h0 * 0.499), round(w0 * 0.499))
    with openslide.OpenSlide(table["path"][0]) as ref:
        rendered = _gray(ref.read_region((0, 0), 0, ref.dimensions))
    h, w = truth.labels.shape
    rendered = cv2.resize(
        rendered[: h // 2, : w // 2], real.shape[::-1], interpolation=cv2.INTER_AREA
    )
    assert np.corrcoef(rendered.ravel(), real.ravel())[0, 1] > 0.8
    pts = truth.tissue_points(50, np.random.default_rng(0))
    back = truth.scanner_to_ref("DP200", truth.ref_to_scanner("DP200", pts))
    assert np.abs(back - pts).max() < 0.01


def test_cli_writes_set_and_rejects_bad_scenario(tmp_path):
    from scorpion_build.cli.main import main

    runner = CliRunner()
    args = ["synth", str(tmp_path / "o"), "--slides", "1", "--width-um", "300", "--height-um"]
    args += ["240", "--scanners", "AT2,P1000", "--scenario", "rot180:P1000", "--mpp", "AT2=0.5"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    csv = pd.read_csv(tmp_path / "o" / "slides.csv")
    assert list(csv["scanner"]) == ["AT2", "P1000"]
    truth = load_truth(tmp_path / "o", "synth_000")
    assert truth.mpp("AT2") == 0.5 and truth.scenarios["P1000"] == ("rot180",)
    bad = runner.invoke(main, ["synth", str(tmp_path / "x"), "--scenario", "sideways"])
    assert bad.exit_code != 0 and "unknown scenario" in bad.output


def test_hts_train_set_mixes_two_looks_within_each_split(tmp_path):
    # 6 specimens of 16 tiles: 4 train, 1 val, 1 test; same tissue and masks in both sets
    config = SynthConfig(labelled=True, n_train=96, patch_px=32, patch_mpp=2.0)
    write_train_set(tmp_path / "one", config, ["LabScanA"])
    write_train_set(tmp_path / "two", config, ["LabScanA", "LabScanB"])
    split = pd.read_csv(tmp_path / "two" / "split.csv")
    assert split.equals(pd.read_csv(tmp_path / "one" / "split.csv"))

    def read(sub: str, kind: str, stem: str) -> np.ndarray:
        return cv2.imread(str(tmp_path / sub / kind / f"{stem}.png"))

    looks_in_train = set()
    for stem, part in zip(split["stem"], split["split"], strict=True):
        np.testing.assert_array_equal(read("one", "masks", stem), read("two", "masks", stem))
        if part == "train":
            same = np.array_equal(read("one", "images", stem), read("two", "images", stem))
            looks_in_train.add(bool(same))
    assert looks_in_train == {True, False}, "the train split holds tiles of both scanners"
