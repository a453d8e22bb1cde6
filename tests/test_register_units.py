"""Unit tests of the registration steps on small arrays (no slides, no files)."""

from __future__ import annotations

import numpy as np
import pytest

from scorpion_build import correlation
from scorpion_build import geometry as geo
from scorpion_build.correlation import ncc
from scorpion_build.register import coarse, fine, qc
from scorpion_build.register.pair import RegisterConfig
from scorpion_build.register.thumbs import View, view_from_rgb, warp_to


def _texture(h: int = 200, w: int = 240, seed: int = 0) -> np.ndarray:
    """Smooth random texture, float32 in [0, 1]."""
    import cv2

    rng = np.random.default_rng(seed)
    img = rng.random((h, w)).astype(np.float32)
    img = cv2.GaussianBlur(img, (0, 0), 2.0)
    return (img - img.min()) / (img.max() - img.min())


@pytest.mark.parametrize("index", range(8))
def test_orient_view_is_the_exact_dihedral_transform(index: int) -> None:
    img = np.arange(6 * 4, dtype=np.uint8).reshape(4, 6)
    out, o = coarse.orient_view(img, index)
    # reference implementation with numpy: mirror left-right first, then rotate clockwise
    ref = img[:, ::-1] if index >= 4 else img
    ref = np.rot90(ref, -(index % 4))
    np.testing.assert_array_equal(out, ref)
    # and the affine maps pixel centres onto the pixel that moved there
    j, i = 1, 2  # column, row
    x, y = geo.apply(o, [[j + 0.5, i + 0.5]])[0]
    assert out[int(y), int(x)] == img[i, j]


@pytest.mark.parametrize("index", range(8))
def test_nearest_orientation_recovers_each_dihedral_index(index: int) -> None:
    lin = geo.orientation(index, 10.0, 7.0)[:, :2] @ (1.03 * np.eye(2))
    # plus a small rotation, which must not change the answer
    lin = lin @ geo.rotation_deg(4.0)[:, :2]
    assert coarse.nearest_orientation(lin) == index


def test_phase_shift_sign_convention() -> None:
    ref = _texture()
    d_true = np.array([3.25, -2.5])
    # mov(p + d) = ref(p)  <=>  mov(q) = ref(q - d)
    mov = warp_to(ref, geo.translation(*(-d_true)), (ref.shape[1], ref.shape[0]))
    d, response = correlation.phase_shift(ref[20:-20, 20:-20], mov[20:-20, 20:-20])
    np.testing.assert_allclose(d, d_true, atol=0.05)
    assert response > 0.9


def _fourier_shift(img: np.ndarray, d: np.ndarray) -> np.ndarray:
    """``img`` moved by ``d`` (x, y) exactly (periodic): out(q) = img(q - d)."""
    ky = np.fft.fftfreq(img.shape[0])[:, None]
    kx = np.fft.fftfreq(img.shape[1])[None]
    phase = np.exp(-2j * np.pi * (kx * d[0] + ky * d[1]))
    return np.real(np.fft.ifft2(np.fft.fft2(img) * phase)).astype(np.float32)


def test_phase_shift_is_sub_pixel_on_oriented_texture() -> None:
    """Oriented texture tilts the correlation peak; per-axis parabolas err by ~0.5 px on
    this image, the 2-D fit must stay within 0.1 px at every fractional shift."""
    import cv2

    rng = np.random.default_rng(3)
    img = cv2.GaussianBlur(rng.random((256, 256)).astype(np.float32), (0, 0), 4.0, sigmaY=1.5)
    img = warp_to(img, geo.rotation_deg(35.0, 128, 128), (256, 256))
    errors = []
    for dx in np.linspace(-1.5, 1.5, 7):
        for dy in np.linspace(-1.5, 1.5, 7):
            mov = _fourier_shift(img, np.array([dx, dy]))
            d, _ = correlation.phase_shift(img[32:-32, 32:-32], mov[32:-32, 32:-32])
            errors.append(np.hypot(d[0] - dx, d[1] - dy))
    assert max(errors) < 0.1


def test_phase_shifts_batch_equals_one_by_one() -> None:
    rng = np.random.default_rng(4)
    refs = np.stack([_texture(64, 80, seed=i) for i in range(5)])
    movs = np.stack([_fourier_shift(r, rng.uniform(-4, 4, 2)) for r in refs])
    movs[3] = 0.5  # a flat block: no peak, response 0, no crash
    d, peaks = correlation.phase_shifts(refs, movs)
    for i in range(5):
        d_i, peak_i = correlation.phase_shift(refs[i], movs[i])
        np.testing.assert_allclose(d[i], d_i, atol=1e-9)
        assert peaks[i] == pytest.approx(peak_i)
    assert peaks[3] == 0.0 and peaks[[0, 1, 2, 4]].min() > 0.8
    empty_d, empty_peaks = correlation.phase_shifts(refs[:0], movs[:0])
    assert empty_d.shape == (0, 2) and empty_peaks.shape == (0,)


def test_weighted_affine_is_exact_on_exact_data() -> None:
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 5000, (12, 2))
    m = geo.compose(geo.translation(120.0, -40.0), geo.rotation_deg(2.0), geo.scaling(1.02))
    got = fine.weighted_affine(src, geo.apply(m, src), rng.uniform(0.1, 1.0, 12))
    np.testing.assert_allclose(got, m, atol=1e-8)


def test_robust_fit_rejects_outlier_blocks() -> None:
    rng = np.random.default_rng(2)
    truth = geo.compose(geo.translation(30.0, 12.0), geo.rotation_deg(0.5, 2000, 2000))
    src = rng.uniform(0, 4000, (30, 2))
    dst = geo.apply(truth, src) + rng.normal(0, 0.5, (30, 2))  # 0.5 px of scatter
    dst[:6] += rng.uniform(40, 80, (6, 2))  # 6 blocks locked onto something else
    shifts = [fine.BlockShift(s, d, 0.5) for s, d in zip(src, dst, strict=True)]
    prior = geo.translation(30.0, 12.0)  # coarse fit: right shift, no rotation
    got, keep, model = fine.robust_fit(shifts, prior, um_per_px=0.25)
    assert model == "affine"
    assert not keep[:6].any() and keep[6:].sum() >= 22
    pts = rng.uniform(0, 4000, (100, 2))
    err = np.linalg.norm(geo.apply(got, pts) - geo.apply(truth, pts), axis=1)
    assert np.median(err) < 0.5


def test_robust_fit_uses_translation_when_blocks_are_collinear() -> None:
    src = np.column_stack([np.linspace(0, 4000, 8), np.full(8, 1000.0)])
    dst = src + [5.0, -3.0]
    shifts = [fine.BlockShift(s, d, 0.5) for s, d in zip(src, dst, strict=True)]
    got, keep, model = fine.robust_fit(shifts, geo.identity(), um_per_px=0.25)
    assert model == "translation" and keep.all()
    np.testing.assert_allclose(got, geo.translation(5.0, -3.0), atol=1e-9)


def test_geometry_um_removes_mpp_and_orientation() -> None:
    # reference 0.25 um/px, moving 0.5 um/px and rotated by 180 degrees: scale 1 in um
    m = geo.compose(geo.orientation(2, 1000, 800), geo.scaling(0.5))
    g = qc.geometry_um(m, (0.25, 0.25), (0.5, 0.5))
    assert g.orientation == 2
    assert g.scale == pytest.approx(1.0)
    assert abs(g.rotation_deg) < 1e-9 and abs(g.shear) < 1e-9


def test_judge_flags_scale_shear_and_similarity() -> None:
    good = {"scale": 1.01, "shear": 0.001, "anisotropy": 0.0, "ncc": 0.9, "residual_um": 1.0}
    assert qc.judge(good) == ("ok", "")
    status, msg = qc.judge({**good, "scale": 1.08})
    assert status == "warn" and "mpp" in msg
    status, msg = qc.judge({**good, "scale": 1.4})
    assert status == "failed" and "implausible scale" in msg
    status, msg = qc.judge({**good, "shear": 0.05})
    assert status == "warn" and "shear" in msg
    status, msg = qc.judge({**good, "ncc": 0.1})
    assert status == "failed" and "same glass slide" in msg
    status, msg = qc.judge({**good, "tissue_overlap": 0.5})
    assert status == "warn" and "50%" in msg
    status, msg = qc.judge({**good, "tissue_overlap": 0.05})
    assert status == "failed" and "5%" in msg


def test_register_views_finds_a_mirrored_view() -> None:
    tex = _texture(300, 360, seed=3)
    rgb = np.full((400, 460, 3), 255, np.uint8)
    yy, xx = np.mgrid[:300, :360]
    blob = ((yy - 150) / 140.0) ** 2 + ((xx - 170) / 170.0) ** 2 < 1
    blob &= ~((xx > 250) & (yy < 90))  # break the symmetry
    tissue = (80 + 140 * tex).astype(np.uint8)
    rgb[50:350, 50:410][blob] = np.stack([tissue, tissue // 2 + 60, tissue], -1)[blob]
    ref = view_from_rgb(rgb, 4.0, geo.scaling(16.0))
    truth = geo.compose(
        geo.translation(7.0, -5.0), geo.orientation(4, 460, 400), geo.rotation_deg(3, 230, 200)
    )  # ref view px -> moving view px
    mov_rgb = warp_to(rgb, geo.invert(truth), (460, 400), fill=255)
    mov = view_from_rgb(mov_rgb, 4.0, geo.scaling(16.0))
    best, cands = coarse.register_views(ref, mov)
    # the plain fit cannot match a mirror image, so the search went on to the mirrored view
    assert [c.orientation for c in cands] == [0, 4]
    assert not cands[0].plausible() and best.orientation == 4
    assert best.plausible() and best.ncc > 0.8
    pts = np.argwhere(ref.mask)[::37, ::-1] + 0.5
    err = np.linalg.norm(geo.apply(best.affine, pts) - geo.apply(truth, pts), axis=1)
    assert np.median(err) < 0.5


def test_ncc_on_mask() -> None:
    a = _texture()
    assert ncc(a, 2 * a + 1) == pytest.approx(1.0)
    assert ncc(a, -a) == pytest.approx(-1.0)
    mask = np.zeros(a.shape, bool)
    assert ncc(a, a, mask) == 0.0  # nothing to compare


def test_config_rejects_unknown_method() -> None:
    with pytest.raises(ValueError, match="orb-affine"):
        RegisterConfig(method="sift")


def test_view_keeps_exact_level0_scale() -> None:
    rgb = np.full((10, 20, 3), 255, np.uint8)
    v: View = view_from_rgb(rgb, 8.0, geo.scaling(1000 / 20, 499 / 10))
    assert v.size == (20, 10) and v.tissue_mm2 == 0.0
    np.testing.assert_allclose(geo.apply(v.to_level0, [[20, 10]]), [[1000, 499]])


def test_overlay_colours_tell_which_scan_has_the_tissue() -> None:
    rgb = np.full((60, 80, 3), 255, np.uint8)
    shade = (40 + 120 * _texture(40, 30)).astype(np.uint8)[..., None]
    rgb[10:50, 10:40] = shade + np.array([20, 0, 30], np.uint8)  # textured tissue, left
    ref = view_from_rgb(rgb, 8.0, geo.scaling(32.0))
    mov = view_from_rgb(rgb[:, ::-1].copy(), 8.0, geo.scaling(32.0))  # tissue on the right
    img = qc.overlay(ref, mov, geo.identity()).astype(int)  # BGR
    b, g, r = img[15:45, 15:35].mean(axis=(0, 1))
    assert g < b - 60 and g < r - 60  # reference only: magenta
    b, g, r = img[15:45, 45:65].mean(axis=(0, 1))
    assert g > b + 60 and g > r + 60  # moving only: green


def test_cli_names_the_missing_stage_and_bad_settings(tmp_path) -> None:
    from click.testing import CliRunner

    from scorpion_build.cli.register import command

    result = CliRunner().invoke(command, [str(tmp_path)])
    assert result.exit_code != 0
    assert "slides.parquet" in result.output and "scorpion-build scan" in result.output
    result = CliRunner().invoke(command, [str(tmp_path), "--fine-mpp", "0"])
    assert result.exit_code == 2 and "--fine-mpp 0.0: must be > 0" in result.output


def test_qc_picture_of_a_small_scan_is_enlarged_with_its_whole_caption(tmp_path):
    import cv2

    caption = (
        "s1 GT450->AT2 warn o=1 inl=412 ncc=0.71 res=3.2um: local misalignment 12.1 um after "
        "refinement: inspect the QC overlay"
    )
    image = np.full((278, 250, 3), 200, np.uint8)
    qc.write_overlay(tmp_path / "qc.png", image, caption)
    written = cv2.imread(str(tmp_path / "qc.png"))
    assert written.shape[1] == qc.MIN_QC_WIDTH_PX and written.shape[0] > 278 * 2
    lines = qc.wrap_caption(caption, qc.MIN_QC_WIDTH_PX - 12, qc.CAPTION_SCALE)
    assert len(lines) >= 2 and " ".join(lines) == caption  # wrapped, nothing cut
    for line in lines:
        (w, _), _ = cv2.getTextSize(line, qc.CAPTION_FONT, qc.CAPTION_SCALE, 1)
        assert w <= qc.MIN_QC_WIDTH_PX - 12
