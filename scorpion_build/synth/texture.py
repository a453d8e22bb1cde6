"""A specimen made from a real image: its RGB turned into H and E optical density.

Colour deconvolution after Ruifrok & Johnston (2001): OD = -log10(I / I0) per channel, then
least-squares unmixing onto the reference haematoxylin and eosin vectors. The class map is
a heuristic (tissue by total OD, cancer area where smoothed haematoxylin is dense); it
lets the pipeline run end to end on real texture, not a pathologist's annotation.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from scorpion_build.synth.styles import ScannerStyle, unit_vector
from scorpion_build.synth.tissue import (
    BACKGROUND,
    CANCER_AREA,
    CANCER_STROMA,
    GLASS_OD,
    Specimen,
    encode_od,
)

_MAX_TEXTURE_PX = 400_000_000
# cv2.remap addresses its source with 16-bit integers
MAX_RASTER_SIDE_PX = 32_000


class TextureError(ValueError):
    """A texture file that cannot be used, with the file named and the fix."""


def specimen_from_texture(
    path: str | Path, canonical_mpp: float, texture_mpp: float | None = None
) -> Specimen:
    """Read an image or slide and return it as a :class:`Specimen` at ``canonical_mpp``.

    Parameters
    ----------
    path : a slide OpenSlide opens (SVS, NDPI, generic TIFF, ...) or a plain image
        (PNG, JPEG, TIFF) read with OpenCV / tifffile.
    canonical_mpp : um/px of the returned raster.
    texture_mpp : um/px of the file; required when the file does not state it.
    """
    path = Path(path)
    if not path.exists():
        raise TextureError(f"{path}: texture file not found; check --texture")
    rgb, mpp = _read_rgb(path, texture_mpp, canonical_mpp)
    scale = mpp / canonical_mpp
    h = max(1, round(rgb.shape[0] * scale))
    w = max(1, round(rgb.shape[1] * scale))
    if max(h, w) > MAX_RASTER_SIDE_PX:
        raise TextureError(
            f"{path}: {w}x{h} px at {canonical_mpp} um/px is too large a specimen; "
            "crop the texture or raise canonical_mpp"
        )
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    rgb = cv2.resize(rgb, (w, h), interpolation=interp)
    h_od, e_od = unmix_he(rgb)
    # the same faint film of stain as procedural glass, so the raster edge does not show
    stains = np.stack([encode_od(h_od + GLASS_OD[0]), encode_od(e_od + GLASS_OD[1])], axis=-1)
    return Specimen(stains, heuristic_labels(h_od, e_od, canonical_mpp), float(canonical_mpp))


def unmix_he(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 -> (haematoxylin, eosin) OD under the reference stain vectors, float32.

    The illuminant is estimated as the 99th percentile of each channel (the glass).
    """
    img = rgb.astype(np.float32)
    i0 = np.maximum(np.percentile(img.reshape(-1, 3), 99, axis=0), 1.0)
    od = -np.log10(np.clip(img, 1.0, None) / i0)
    ref = ScannerStyle()
    basis = np.stack([unit_vector(ref.stain_h), unit_vector(ref.stain_e)], axis=1)  # (3, 2)
    conc = od.reshape(-1, 3) @ np.linalg.pinv(basis).T.astype(np.float32)
    conc = np.clip(conc, 0.0, None).reshape(*rgb.shape[:2], 2)
    return conc[..., 0], conc[..., 1]


def heuristic_labels(h_od: np.ndarray, e_od: np.ndarray, mpp: float) -> np.ndarray:
    """0 glass, 1 haematoxylin-dense tissue ("cancer area"), 2 other tissue ("stroma")."""
    sigma = 4.0 / mpp
    total = cv2.GaussianBlur(h_od + e_od, (0, 0), sigma)
    tissue = total > 0.15
    labels = np.full(h_od.shape, BACKGROUND, np.uint8)
    if not tissue.any():
        return labels
    density = cv2.GaussianBlur(h_od, (0, 0), 5 * sigma)
    dense = density > np.median(density[tissue])
    labels[tissue & dense] = CANCER_AREA
    labels[tissue & ~dense] = CANCER_STROMA
    return labels


def _read_rgb(
    path: Path, texture_mpp: float | None, canonical_mpp: float
) -> tuple[np.ndarray, float]:
    """RGB uint8 of the whole image at a level near ``canonical_mpp``, and its um/px."""
    import openslide

    if openslide.OpenSlide.detect_format(str(path)) is not None:
        with openslide.OpenSlide(str(path)) as slide:
            mpp0 = slide.properties.get(openslide.PROPERTY_NAME_MPP_X)
            mpp0 = texture_mpp or (float(mpp0) if mpp0 else None)
            if mpp0 is None:
                raise TextureError(
                    f"{path}: the slide states no mpp; pass --texture-mpp (um per pixel)"
                )
            level = slide.get_best_level_for_downsample(canonical_mpp / mpp0)
            w, h = slide.level_dimensions[level]
            if w * h > _MAX_TEXTURE_PX:
                raise TextureError(f"{path}: {w}x{h} px is too large to use as a texture; crop it")
            region = slide.read_region((0, 0), level, (w, h))
            rgba = np.asarray(region)
            rgb = _flatten_alpha(rgba)
            return rgb, mpp0 * slide.level_dimensions[0][0] / w
    if texture_mpp is None:
        raise TextureError(f"{path}: a plain image states no mpp; pass --texture-mpp (um/px)")
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        import tifffile

        try:
            img = tifffile.imread(path)
        except Exception as exc:  # tifffile raises many types for non-TIFF input
            raise TextureError(f"{path}: not a readable image or slide ({exc})") from exc
        if img.ndim != 3 or img.shape[-1] < 3 or img.dtype != np.uint8:
            raise TextureError(f"{path}: need an 8-bit RGB image, got {img.shape} {img.dtype}")
        return np.ascontiguousarray(img[..., :3]), float(texture_mpp)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB), float(texture_mpp)


def _flatten_alpha(rgba: np.ndarray) -> np.ndarray:
    """Transparent (unscanned) pixels become white glass."""
    rgb = np.ascontiguousarray(rgba[..., :3])
    see_through = rgba[..., 3] < 255
    if see_through.any():
        a = rgba[see_through, 3:4].astype(np.float32) / 255.0
        mixed = rgb[see_through].astype(np.float32) * a + 255.0 * (1.0 - a)
        rgb[see_through] = np.rint(mixed).astype(np.uint8)
    return rgb
