"""The scanners' own containers (synth --native) as OpenSlide reads them, and Slide on each."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import openslide
import pandas as pd
import pytest
import tifffile
from helpers import write_pyramid

from scorpion_build.scan import scan
from scorpion_build.slide import Slide
from scorpion_build.synth import SynthConfig, synthesize
from scorpion_build.synth.truth import load_truth

CONFIG = SynthConfig(n_slides=1, width_um=700.0, height_um=560.0, seed=3, native=True)
# scanner -> (suffix, OpenSlide format and vendor)
EXPECTED = {
    "AT2": (".svs", "aperio"),
    "GT450": (".svs", "aperio"),
    "DP200": (".bif", "ventana"),
    "Philips": (".tiff", "philips"),
    "P1000": (".mrxs", "mirax"),
}


@pytest.fixture(scope="module")
def native_set(tmp_path_factory) -> pd.DataFrame:
    return synthesize(tmp_path_factory.mktemp("native"), CONFIG)


def _scan(table: pd.DataFrame, scanner: str) -> Path:
    return Path(table.loc[table["scanner"] == scanner, "path"].iloc[0])


@pytest.mark.parametrize("scanner", sorted(EXPECTED))
def test_each_scanner_in_its_own_container(native_set, scanner):
    suffix, vendor = EXPECTED[scanner]
    path = _scan(native_set, scanner)
    assert path.suffix == suffix
    assert openslide.OpenSlide.detect_format(str(path)) == vendor
    with Slide(path) as s:
        assert s.vendor == vendor and s.reader == "openslide"
        assert s.mpp[0] == pytest.approx(CONFIG.mpp_of(scanner), rel=1e-4)
        assert s.level_count >= 2


def _boxes(w: int, h: int) -> list[tuple[int, int, int, int]]:
    """Inside, across every edge and corner, and wholly outside."""
    return [
        (w // 3, h // 4, min(211, w // 2), min(157, h // 2)),
        (-17, -9, 60, 45),
        (w - 40, h - 30, 80, 61),
        (w // 2, -5, 33, 20),
        (-3, h // 2, 25, 17),
        (w + 5, h + 5, 10, 10),
        *([(0, 0, w, h)] if w * h <= 4e6 else []),  # whole coarse levels
    ]


@pytest.mark.parametrize("scanner", sorted(EXPECTED))
def test_slide_reads_equal_openslide_on_every_level(native_set, scanner):
    path = _scan(native_set, scanner)
    ref = openslide.OpenSlide(str(path))
    with Slide(path, mpp=0.25) as s:
        assert s.level_dimensions == ref.level_dimensions
        for level, (w, h) in enumerate(ref.level_dimensions):
            ds = ref.level_downsamples[level]
            for box in _boxes(w, h):
                x, y, bw, bh = box
                loc = (round(x * ds), round(y * ds))
                rgba = np.asarray(ref.read_region(loc, level, (bw, bh))).astype(np.int64)
                alpha = rgba[..., 3:]  # straight alpha on white, rounded to nearest
                expected = (rgba[..., :3] * alpha + 255 * (255 - alpha) + 127) // 255
                np.testing.assert_array_equal(s.read(level, box), expected, err_msg=str(box))


def test_direct_decoding_only_where_tiles_do_not_overlap(native_set, caplog):
    with (
        caplog.at_level(logging.INFO, logger="scorpion_build.tiles"),
        Slide(_scan(native_set, "DP200")) as bif,
    ):
        assert bif._backend._tiles is None  # overlapping camera tiles: OpenSlide reads
    assert sum("ventana" in r.getMessage() for r in caplog.records) == 1
    with Slide(_scan(native_set, "Philips")) as philips:
        # padded reduced pages and a sparse level 0 are still served directly
        assert sorted(philips._backend._tiles.pages) == list(range(philips.level_count))
    with Slide(_scan(native_set, "AT2")) as svs:
        assert sorted(svs._backend._tiles.pages) == list(range(svs.level_count))


def test_philips_level_is_sparse_and_reads_white_there(native_set):
    path = _scan(native_set, "Philips")
    with tifffile.TiffFile(path) as tif:
        counts = np.asarray(tif.pages[0].databytecounts)
        across = -(-tif.pages[0].imagewidth // tif.pages[0].tilewidth)
    missing = np.flatnonzero(counts == 0)
    assert 0 < len(missing) < len(counts)
    ty, tx = divmod(int(missing[0]), across)
    with Slide(path) as s:
        tile = s.read(0, (tx * 256, ty * 256, 256, 256))
    assert (tile == 255).all()


def test_bif_stitched_pixels_follow_the_truth(native_set, tmp_path):
    """The stitched DP200 level 0 shows the specimen where the ground truth puts it."""
    out = _scan(native_set, "AT2").parent.parent
    truth = load_truth(out, "synth_000")
    with Slide(_scan(native_set, "AT2")) as at2, Slide(_scan(native_set, "DP200")) as dp:
        assert dp.dimensions == truth.size_px("DP200")
        diffs = []
        for p in truth.tissue_points(6, np.random.default_rng(0)):
            q = truth.ref_to_scanner("DP200", p[None])[0]
            a = at2.read_region_at((p[0] - 100, p[1] - 100, 200, 200), 2.0)
            b = dp.read_region_at((q[0] - 100, q[1] - 100, 200, 200), 2.0)
            diffs.append(np.corrcoef(a.mean(2).ravel(), b.mean(2).ravel())[0, 1])
    assert np.median(diffs) > 0.8


def test_mirax_scans_only_tissue_fields_and_slide_keeps_to_them(native_set):
    path = _scan(native_set, "P1000")
    assert (path.with_suffix("") / "Slidedat.ini").is_file()
    props = openslide.OpenSlide(str(path)).properties
    bounds = tuple(int(props[f"openslide.bounds-{k}"]) for k in ("x", "y", "width", "height"))
    with Slide(path) as s:
        assert s.bounds == bounds and s.mpp[0] == pytest.approx(CONFIG.mpp_of("P1000"))
        w0, h0 = s.dimensions
        assert bounds[2] * bounds[3] < w0 * h0  # camera fields without tissue were skipped
        bx, by, bw, bh = bounds
        # a box straddling the scanned area's right or bottom edge is white outside it
        if bx + bw < w0:
            assert (s.read(0, (bx + bw - 8, by + bh // 2, 40, 20))[:, 8:] == 255).all()
        if by + bh < h0:
            assert (s.read(0, (bx + bw // 2, by + bh - 8, 20, 40))[8:] == 255).all()


def test_scanned_bounds_read_white_outside(tmp_path):
    """A TIFF with unscanned border tiles: OpenSlide reports bounds; Slide honours them."""
    img = np.full((512, 512, 3), 90, np.uint8)
    path = write_pyramid(tmp_path / "s.tif", img, 0.5, levels=1)
    with tifffile.TiffFile(path, mode="r+b") as tif:  # drop the first tile row (64 px tiles)
        tag = tif.pages[0].tags["TileByteCounts"]
        counts = list(tag.value)
        counts[:8] = [0] * 8
        tag.overwrite(counts)
    with Slide(path) as s:
        assert s.bounds == (0, 64, 512, 448)
        region = s.read(0, (100, 40, 50, 50))
        assert (region[:24] == 255).all() and (region[24:] == 90).all()


@pytest.mark.parametrize(
    ("suffix", "format_name"),
    [(".isyntax", "Philips iSyntax"), (".vsi", "Olympus VSI"), (".czi", "Zeiss CZI")],
)
def test_unreadable_vendor_formats_name_the_conversion(tmp_path, cmu_svs, suffix, format_name):
    (tmp_path / "s1").mkdir()
    (tmp_path / "s1" / "AT2.svs").symlink_to(cmu_svs)
    (tmp_path / "s1" / f"B{suffix}").write_bytes(b"\0" * 64)
    rows = scan(tmp_path).set_index("scanner")
    assert rows.loc["B", "status"] == "failed"
    message = rows.loc["B", "message"]
    assert format_name in message and "OME-TIFF" in message and "DICOM" in message
    assert f"B{suffix}" in message


def test_a_failing_direct_decode_falls_back_once_and_says_so(native_set, caplog, monkeypatch):
    from scorpion_build.tiles import TileReader

    def broken(self, *args):  # noqa: ANN001, ANN002
        raise ValueError("odd tile")

    path = _scan(native_set, "AT2")
    with Slide(path) as s:
        expected = s.read(0, (100, 100, 300, 200))
    monkeypatch.setattr(TileReader, "read", broken)
    with caplog.at_level(logging.WARNING, logger="scorpion_build.backends"), Slide(path) as s:
        for _ in range(3):
            np.testing.assert_array_equal(s.read(0, (100, 100, 300, 200)), expected)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and path.name in warnings[0] and "odd tile" in warnings[0]


def test_a_read_too_large_for_memory_is_a_clear_error(tmp_path, monkeypatch):
    from scorpion_build import slide as slide_module
    from scorpion_build.slide import SlideError

    path = write_pyramid(tmp_path / "big.tif", np.full((600, 800, 3), 90, np.uint8), 0.5, 3)
    monkeypatch.setattr(slide_module, "MAX_READ_PX", 200_000)
    with Slide(path) as s:
        assert s.thumbnail_at(8.0).shape == (38, 50, 3)  # from the coarsest level: fine
        with pytest.raises(SlideError, match="big.tif.*pyramidal TIFF"):
            s.read_region_at((0, 0, 800, 600), 0.5)


def test_transparency_blends_on_white_rounded_to_nearest():
    from scorpion_build.backends import flatten_on_white

    rgba = np.array([[[0, 0, 0, 128], [200, 100, 50, 0], [10, 20, 30, 255], [255, 0, 9, 1]]])
    flat = flatten_on_white(rgba.astype(np.uint8))
    exact = (rgba[..., :3] * rgba[..., 3:] + 255.0 * (255 - rgba[..., 3:])) / 255.0
    np.testing.assert_array_equal(flat, np.floor(exact + 0.5).astype(np.uint8))
    assert flat[0, 1].tolist() == [255, 255, 255] and flat[0, 2].tolist() == [10, 20, 30]
