import cv2
import numpy as np
import pytest

from scorpion_build import geometry as geo


def test_compose_invert_round_trip():
    m = geo.compose(geo.translation(3, -2), geo.rotation_deg(17, 5, 6), geo.scaling(1.3, 0.8))
    pts = np.random.default_rng(0).uniform(0, 100, (20, 2))
    back = geo.apply(geo.invert(m), geo.apply(m, pts))
    np.testing.assert_allclose(back, pts, atol=1e-9)


def test_six_float_layout_is_row_major():
    m = geo.from_six([1, 2, 3, 4, 5, 6])
    np.testing.assert_allclose(
        geo.apply(m, [[10, 100]]), [[1 * 10 + 2 * 100 + 3, 4 * 10 + 5 * 100 + 6]]
    )
    assert geo.to_six(m) == [1, 2, 3, 4, 5, 6]


def test_opencv_half_pixel_helper_matches_pixel_centres():
    # Downscale by 2 with our convention: output pixel (0,0) centre (0.5,0.5) maps to source
    # (1.0, 1.0), the corner shared by source pixels 0 and 1, so bilinear gives their mean.
    src = np.zeros((4, 4), np.float32)
    src[:, 0], src[:, 1] = 0.0, 10.0
    m = geo.scaling(2.0)  # output px -> source px
    out = cv2.warpAffine(
        src, geo.to_opencv(m), (2, 2), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    )
    assert out[0, 0] == pytest.approx(5.0)
    # without the helper OpenCV would sample at source (0,0): value 0
    naive = cv2.warpAffine(src, m, (2, 2), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    assert naive[0, 0] == pytest.approx(0.0)
    np.testing.assert_allclose(geo.from_opencv(geo.to_opencv(m)), m)


def test_level_coordinates_scale_exactly():
    pts = np.array([[10.25, 7.5]])
    l0 = geo.level_to_level0(pts, (4.0, 3.9))
    np.testing.assert_allclose(l0, [[41.0, 29.25]])
    np.testing.assert_allclose(geo.level0_to_level(l0, (4.0, 3.9)), pts)


@pytest.mark.parametrize("index", range(8))
def test_orientations_map_image_onto_itself(index):
    w, h = 40.0, 30.0
    m = geo.orientation(index, w, h)
    corners = geo.apply(m, geo.box_corners(0, 0, w, h))
    ow, oh = (h, w) if index % 2 else (w, h)
    assert corners[:, 0].min() == pytest.approx(0) and corners[:, 0].max() == pytest.approx(ow)
    assert corners[:, 1].min() == pytest.approx(0) and corners[:, 1].max() == pytest.approx(oh)
    assert geo.decompose(m)["mirrored"] == (index >= 4)


def test_decompose_reports_scale_rotation_shear():
    m = geo.compose(geo.rotation_deg(30), geo.scaling(1.1))
    d = geo.decompose(m)
    assert d["scale_x"] == pytest.approx(1.1) and d["scale_y"] == pytest.approx(1.1)
    assert d["rotation_deg"] == pytest.approx(30) and d["shear"] == pytest.approx(0, abs=1e-12)


def test_warp_to_follows_the_pixel_convention_and_fills_every_channel():
    rgb = np.random.default_rng(1).integers(0, 255, (6, 8, 3), dtype=np.uint8)
    # a 2x downscale: output pixel (0, 0) covers source [0, 2) x [0, 2), centre (1, 1)
    half = geo.warp_to(rgb, geo.scaling(2.0), (4, 3), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(half[0, 0], rgb[0:2, 0:2].reshape(4, 3).mean(0).round())
    # output px beyond the source get the fill in all three channels, not only the first
    shifted = geo.warp_to(rgb, geo.translation(4, 0), (8, 6), fill=255)
    np.testing.assert_array_equal(shifted[:, :4], rgb[:, 4:])
    assert (shifted[:, 4:] == 255).all()
