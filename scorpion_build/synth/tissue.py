"""Procedural H&E-like tissue: stain optical densities and class labels on a canonical raster.

A :class:`Specimen` is what every synthetic scanner looks at. Its raster holds, per pixel,
the haematoxylin and eosin concentrations expressed as log10 optical density (OD) under the
reference stain vectors, and the class of the tissue there. Everything is sized in um, so
the same code makes a 0.5 um/px whole-slide specimen or a 0.78 um/px training patch.

The look follows the usual description of H&E (Ruifrok & Johnston, Anal. Quant. Cytol.
Histol. 23, 2001): dark-blue nuclei (haematoxylin), pink stroma and cytoplasm (eosin) with
collagen fibres, white glass in lumens and around the tissue.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from scorpion_build.classes import DEFAULT_CLASSES

LABEL_NAMES: tuple[str, ...] = DEFAULT_CLASSES
BACKGROUND, CANCER_AREA, CANCER_STROMA = 0, 1, 2

# Stains are stored as uint8 codes, code = 255 * sqrt(OD / OD_MAX): the square root spends
# the codes where the eye and the JPEG coder care (faint stain near white).
OD_MAX = 3.0
# Glass carries a faint, even film of stain (H, E optical density).
GLASS_OD: tuple[float, float] = (0.004, 0.008)
_BLOCK_ROWS = 512  # rows composed at once; bounds float memory for large specimens
_NUCLEUS_SCALE = 100.0  # nucleus layer value per unit OD


def encode_od(od: np.ndarray) -> np.ndarray:
    """Optical density (log10) -> uint8 stain code."""
    x = np.sqrt(np.clip(np.asarray(od, dtype=np.float32) / OD_MAX, 0.0, 1.0))
    return np.rint(x * 255.0).astype(np.uint8)


def decode_od(code: np.ndarray) -> np.ndarray:
    """uint8 stain code -> optical density (log10), float32."""
    x = np.asarray(code, dtype=np.float32) / 255.0
    return OD_MAX * x * x


@dataclass(frozen=True)
class Specimen:
    """A tissue section on glass, rasterised in specimen space.

    Attributes
    ----------
    stains : (H, W, 2) uint8, haematoxylin and eosin codes (see :func:`encode_od`).
    labels : (H, W) uint8, 0 background, 1 cancer area, 2 cancer stroma.
    mpp : um per pixel of both rasters; pixel (i, j) covers [j, j+1) x [i, i+1) * mpp um.
    """

    stains: np.ndarray
    labels: np.ndarray
    mpp: float

    @property
    def width_um(self) -> float:
        return self.stains.shape[1] * self.mpp

    @property
    def height_um(self) -> float:
        return self.stains.shape[0] * self.mpp

    def crop(self, x0: int, y0: int, width: int, height: int) -> Specimen:
        """A window in pixels (clipped to the raster; stain 0 and background outside)."""
        stains = np.zeros((height, width, 2), np.uint8)
        labels = np.zeros((height, width), np.uint8)
        h, w = self.labels.shape
        sy0, sx0 = max(y0, 0), max(x0, 0)
        sy1, sx1 = min(y0 + height, h), min(x0 + width, w)
        if sy1 > sy0 and sx1 > sx0:
            stains[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = self.stains[sy0:sy1, sx0:sx1]
            labels[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = self.labels[sy0:sy1, sx0:sx1]
        return Specimen(stains, labels, self.mpp)


def generate_specimen(
    width_um: float,
    height_um: float,
    mpp: float,
    rng: np.random.Generator,
    *,
    tissue_fraction: float = 0.4,
    cancer_fraction: float = 0.5,
    edge_margin_um: float | None = None,
) -> Specimen:
    """Procedural H&E tissue of ``width_um x height_um`` at ``mpp`` um/px.

    Parameters
    ----------
    tissue_fraction : share of the area covered by tissue (before lumens and holes).
    cancer_fraction : share of the tissue that is cancer area; the rest is cancer stroma.
    edge_margin_um : glass kept clear along every edge; default 8% of the shorter side, so
        small rotations of the specimen never cut tissue. ``0`` lets tissue fill the raster
        (used for training patches).
    """
    h, w = math.ceil(height_um / mpp), math.ceil(width_um / mpp)
    # Smooth fields live on a coarse grid of f x f pixels (~8 um); an integer factor keeps
    # cv2.resize exactly centre-aligned, so fields can be upsampled block by block.
    f = max(1, round(8.0 / mpp))
    ch, cw = math.ceil(h / f) + 1, math.ceil(w / f) + 1
    coarse_um = f * mpp
    if edge_margin_um is None:
        edge_margin_um = 0.08 * min(width_um, height_um)

    tissue = _tissue_field((ch, cw), coarse_um, rng, width_um, height_um, edge_margin_um)
    inside = tissue > -1e2
    keep = np.clip(tissue_fraction * inside.size / inside.sum(), 0.0, 1.0)
    t_thr = float(np.quantile(tissue[inside], 1.0 - keep))
    cancer = _fbm((ch, cw), coarse_um, rng, [(300.0, 1.0), (90.0, 0.45)])
    c_thr = float(np.quantile(cancer[tissue > t_thr], 1.0 - cancer_fraction))
    orient = _fbm((ch, cw), coarse_um, rng, [(350.0, 1.0)]) * (np.pi / 2)
    mottle = _fbm((ch, cw), coarse_um, rng, [(40.0, 1.0), (16.0, 0.6)])

    labels = np.empty((h, w), np.uint8)
    for i0 in range(0, h, _BLOCK_ROWS):
        i1 = min(i0 + _BLOCK_ROWS, h)
        t = _upsample_rows(tissue, f, i0, i1, w) > t_thr
        c = _upsample_rows(cancer, f, i0, i1, w) > c_thr
        labels[i0:i1] = np.where(t, np.where(c, CANCER_AREA, CANCER_STROMA), BACKGROUND)

    nuclei = np.zeros((h, w), np.uint8)
    lumen_centres, lumen_radii = _carve_holes(labels, mpp, rng)
    _draw_nuclei(nuclei, labels, orient, f, mpp, rng, lumen_centres, lumen_radii)
    fibres = _draw_fibres(labels, orient, f, mpp, rng)

    alpha = cv2.GaussianBlur((labels > 0).astype(np.uint8) * 255, (0, 0), 0.8 / mpp)
    nuclei = cv2.GaussianBlur(nuclei, (0, 0), 0.35 / mpp)
    fibres = cv2.GaussianBlur(fibres, (0, 0), 0.4 / mpp)
    stains = _stain_raster(labels, alpha, nuclei, fibres, mottle, f, int(rng.integers(2**62)))
    return Specimen(stains, labels, float(mpp))


def _tissue_field(
    shape: tuple[int, int],
    coarse_um: float,
    rng: np.random.Generator,
    width_um: float,
    height_um: float,
    edge_margin_um: float,
) -> np.ndarray:
    """Coarse tissue field: tissue where it is high; -1e3 on the glass margin (um)."""
    tissue = _fbm(shape, coarse_um, rng, [(420.0, 1.0), (160.0, 0.5), (60.0, 0.2)])
    if edge_margin_um > 0:
        # an elliptical envelope makes one main section with a few satellite islands
        yy, xx = _coarse_centres_um(*shape, coarse_um)
        r2 = ((xx - width_um / 2) / (0.5 * width_um)) ** 2 + (
            (yy - height_um / 2) / (0.5 * height_um)
        ) ** 2
        tissue += 3.0 * (1.0 - r2)
        edge = np.minimum.reduce([xx, width_um - xx, yy, height_um - yy])
        # fade out over a second margin so the tissue border stays round, not cut straight
        tissue -= 8.0 * np.clip(2.0 - edge / edge_margin_um, 0.0, 1.0) ** 2
        tissue[edge < edge_margin_um] = -1e3
    return tissue


def _stain_raster(
    labels: np.ndarray,
    alpha: np.ndarray,
    nuclei: np.ndarray,
    fibres: np.ndarray,
    mottle: np.ndarray,
    f: int,
    block_seed: int,
) -> np.ndarray:
    """Stain codes ``(H, W, 2)`` composed block by block; each block's grain has its own
    seed ``[block_seed, block]``, so any block can be redrawn alone."""
    h, w = labels.shape
    stains = np.empty((h, w, 2), np.uint8)
    for b, i0 in enumerate(range(0, h, _BLOCK_ROWS)):
        i1 = min(i0 + _BLOCK_ROWS, h)
        grain = np.random.default_rng([block_seed, b]).random((i1 - i0, w), np.float32)
        stains[i0:i1] = _compose(
            labels[i0:i1],
            alpha[i0:i1],
            nuclei[i0:i1],
            fibres[i0:i1],
            _upsample_rows(mottle, f, i0, i1, w),
            grain,
        )
    return stains


def _compose(labels, alpha, nuclei, fibres, mottle, grain) -> np.ndarray:
    """Stain codes for one block of rows from the drawn layers (all float32 math)."""
    cancer = labels == CANCER_AREA
    stroma = labels == CANCER_STROMA
    a = alpha.astype(np.float32) / 255.0
    nuc = nuclei.astype(np.float32) / _NUCLEUS_SCALE
    fib = fibres.astype(np.float32) / 255.0
    # cytoplasm of tumour cells is denser and bluer than stroma; fibres carry most eosin
    h_od = np.where(cancer, 0.10, 0.03).astype(np.float32) + 0.01 * mottle
    h_od += nuc * (0.75 + 0.5 * grain)
    e_od = np.where(cancer, 0.22, 0.10).astype(np.float32) + 0.04 * mottle
    e_od += np.where(stroma, 0.32, 0.0).astype(np.float32) * fib
    e_od *= 1.0 - 0.35 * np.minimum(nuc, 1.0)
    e_od += 0.04 * (grain - 0.5)
    h_od = a * h_od + GLASS_OD[0]
    e_od = a * e_od + GLASS_OD[1]
    return np.stack([encode_od(h_od), encode_od(e_od)], axis=-1)


def _coarse_centres_um(ch: int, cw: int, coarse_um: float) -> tuple[np.ndarray, np.ndarray]:
    ys = (np.arange(ch, dtype=np.float32) + 0.5) * coarse_um
    xs = (np.arange(cw, dtype=np.float32) + 0.5) * coarse_um
    return np.meshgrid(ys, xs, indexing="ij")


def _fbm(shape, coarse_um: float, rng: np.random.Generator, octaves) -> np.ndarray:
    """Sum of smoothed white-noise fields, ``octaves`` = [(feature size um, weight), ...]."""
    out = np.zeros(shape, np.float32)
    for size_um, weight in octaves:
        noise = rng.standard_normal(shape).astype(np.float32)
        sigma = max(size_um / coarse_um / 2.0, 0.5)
        field = cv2.GaussianBlur(noise, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
        out += weight * field / (field.std() + 1e-12)
    return out


def _upsample_rows(coarse: np.ndarray, f: int, i0: int, i1: int, width: int) -> np.ndarray:
    """Rows [i0, i1) of the coarse field bilinearly upsampled by ``f``, cropped to ``width``.

    Identical to upsampling the whole field and slicing: linear interpolation only reaches
    one coarse row either side, and the slab carries two.
    """
    ch, cw = coarse.shape
    k0 = max(i0 // f - 2, 0)
    k1 = min(-(-i1 // f) + 2, ch)
    up = cv2.resize(coarse[k0:k1], (cw * f, (k1 - k0) * f), interpolation=cv2.INTER_LINEAR)
    return up[i0 - k0 * f : i1 - k0 * f, :width]


def _poisson_points(
    shape: tuple[int, int], spacing_px: float, rng: np.random.Generator
) -> np.ndarray:
    """Uniform random (x, y) points, one per ``spacing_px**2`` on average."""
    h, w = shape
    n = rng.poisson(h * w / spacing_px**2)
    return rng.random((n, 2)) * np.array([w, h])


def _carve_holes(labels: np.ndarray, mpp: float, rng: np.random.Generator):
    """Cut gland lumens in cancer areas and a few holes in stroma; returns the lumens."""
    pts = _poisson_points(labels.shape, 110.0 / mpp, rng)
    cls = labels[pts[:, 1].astype(int), pts[:, 0].astype(int)]
    lumens = pts[cls == CANCER_AREA]
    radii = rng.uniform(7.0, 28.0, len(lumens)) / mpp
    for (x, y), r in zip(lumens, radii, strict=True):
        axes = (r, r * rng.uniform(0.55, 1.0))
        _ellipse(labels, x, y, axes, rng.uniform(0, 180), BACKGROUND)
    holes = _poisson_points(labels.shape, 450.0 / mpp, rng)
    cls = labels[holes[:, 1].astype(int), holes[:, 0].astype(int)]
    for x, y in holes[cls == CANCER_STROMA]:
        r = rng.uniform(15.0, 55.0) / mpp
        _ellipse(labels, x, y, (r, r * rng.uniform(0.3, 0.9)), rng.uniform(0, 180), BACKGROUND)
    return lumens, radii


def _draw_nuclei(layer, labels, orient, f, mpp, rng, lumen_centres, lumen_radii) -> None:
    """Draw nuclei into ``layer`` (value = OD * _NUCLEUS_SCALE): dense and round in cancer
    areas, sparse and spindle-shaped along the fibres in stroma, a rim around each lumen."""
    h, w = labels.shape
    pts = _poisson_points((h, w), 11.0 / mpp, rng)
    cls = labels[pts[:, 1].astype(int), pts[:, 0].astype(int)]
    keep = (cls == CANCER_AREA) | ((cls == CANCER_STROMA) & (rng.random(len(pts)) < 0.18))
    pts, cls = pts[keep], cls[keep]
    n = len(pts)
    is_cancer = cls == CANCER_AREA
    major = np.where(is_cancer, rng.uniform(2.6, 4.6, n), rng.uniform(3.5, 6.0, n))
    minor = np.where(is_cancer, major * rng.uniform(0.6, 0.95, n), rng.uniform(1.0, 1.8, n))
    theta = orient[(pts[:, 1] / f).astype(int), (pts[:, 0] / f).astype(int)]
    angle = np.where(is_cancer, rng.uniform(0, 180, n), np.degrees(theta))
    od = np.where(is_cancer, rng.uniform(0.45, 0.85, n), rng.uniform(0.6, 0.95, n))
    # epithelium lining each gland lumen
    rim = []
    for (cx, cy), r in zip(lumen_centres, lumen_radii, strict=True):
        k = max(int(2 * np.pi * r * mpp / 7.0), 6)
        phi = rng.uniform(0, 2 * np.pi) + np.arange(k) * 2 * np.pi / k
        rr = r + 4.5 / mpp
        rim.append(np.stack([cx + rr * np.cos(phi), cy + rr * np.sin(phi), phi], axis=1))
    if rim:
        rim_arr = np.concatenate(rim)
        m = len(rim_arr)
        pts = np.concatenate([pts, rim_arr[:, :2]])
        major = np.concatenate([major, rng.uniform(3.5, 4.8, m)])
        minor = np.concatenate([minor, rng.uniform(1.8, 2.6, m)])
        angle = np.concatenate([angle, np.degrees(rim_arr[:, 2])])
        od = np.concatenate([od, rng.uniform(0.6, 0.9, m)])
    for (x, y), a, b, ang, v in zip(pts, major, minor, angle, od, strict=True):
        _ellipse(layer, x, y, (a / mpp, b / mpp), ang, int(v * _NUCLEUS_SCALE))


def _draw_fibres(labels, orient, f, mpp, rng) -> np.ndarray:
    """Wavy collagen fibres following a smooth orientation field (uint8 layer, 255 = dense)."""
    h, w = labels.shape
    layer = np.zeros((h, w), np.uint8)
    starts = _poisson_points((h, w), 7.0 / mpp, rng)
    cls = labels[starts[:, 1].astype(int), starts[:, 0].astype(int)]
    starts = starts[cls == CANCER_STROMA]
    n, steps = len(starts), 10
    if n == 0:
        return layer
    step_px = 4.0 / mpp
    path = np.empty((n, steps, 2))
    path[:, 0] = starts
    wiggle = rng.normal(0.0, 0.25, (n, steps))
    for s in range(1, steps):
        p = path[:, s - 1]
        ci = np.clip((p[:, 1] / f).astype(int), 0, orient.shape[0] - 1)
        cj = np.clip((p[:, 0] / f).astype(int), 0, orient.shape[1] - 1)
        t = orient[ci, cj] + wiggle[:, s]
        path[:, s] = p + step_px * np.stack([np.cos(t), np.sin(t)], axis=1)
    thickness = max(1, round(1.2 / mpp))
    fixed = np.rint(path * 16).astype(np.int32)  # 4 fractional bits (shift=4)
    groups = rng.integers(0, 4, n)
    for g, value in enumerate((110, 150, 190, 230)):
        lines = list(fixed[groups == g])
        if lines:
            cv2.polylines(layer, lines, False, value, thickness, cv2.LINE_AA, shift=4)
    return layer


def _ellipse(img, x, y, axes_px, angle_deg, value) -> None:
    """Filled ellipse with sub-pixel centre (continuous coords: pixel centres at +0.5)."""
    centre = (int(round((x - 0.5) * 16)), int(round((y - 0.5) * 16)))
    axes = (max(int(round(axes_px[0] * 16)), 8), max(int(round(axes_px[1] * 16)), 8))
    cv2.ellipse(img, centre, axes, float(angle_deg), 0, 360, int(value), -1, cv2.LINE_AA, 4)
