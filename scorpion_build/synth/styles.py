"""How each scanner renders stain: stain vectors, gains, illuminant, tone, blur, noise, JPEG.

Colour follows Beer-Lambert: a pixel with haematoxylin and eosin amounts (h, e) transmits
``I_c = I0_c * 10 ** -(g_h h H_c + g_e e E_c)`` in channel c, where H and E are the
scanner's stain OD vectors (Ruifrok & Johnston 2001 for the reference), then a gamma and
saturation stand in for the scanner's colour pipeline. All of that depends only on (h, e),
so it is tabulated once per scanner as a 256 x 256 lookup table over the stain codes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import cv2
import numpy as np

from scorpion_build.synth.seeds import rng_for
from scorpion_build.synth.tissue import GLASS_OD, decode_od, encode_od

Vec3 = tuple[float, float, float]

# Stain codes of bare glass, as the tissue generator writes them.
GLASS_CODES = (int(encode_od(GLASS_OD[0])), int(encode_od(GLASS_OD[1])))


@dataclass(frozen=True)
class ScannerStyle:
    """Appearance of one scanner.

    Attributes
    ----------
    stain_h, stain_e : OD (log10) per unit stain amount in R, G, B (unit vectors).
    gain_h, gain_e : multiply each stain's amount (staining strength as seen by the optics).
    background : illuminant / glass colour, 0-255 per channel.
    gamma : exponent on transmitted intensity (< 1 brightens mid-tones).
    saturation : 1 keeps colour, < 1 greys it, > 1 strengthens it.
    blur_um : Gaussian optical blur, sigma in um of the specimen.
    noise : sensor noise, standard deviation in 0-255 units per channel.
    jpeg_quality : quality of the JPEG tiles the scanner writes.
    """

    stain_h: Vec3 = (0.650, 0.704, 0.286)
    stain_e: Vec3 = (0.072, 0.990, 0.105)
    gain_h: float = 1.0
    gain_e: float = 1.0
    background: Vec3 = (246.0, 244.0, 248.0)
    gamma: float = 1.0
    saturation: float = 1.0
    blur_um: float = 0.35
    noise: float = 2.0
    jpeg_quality: int = 85

    def to_dict(self) -> dict:
        return asdict(self)

    def lut(self) -> np.ndarray:
        """(256, 256, 3) uint8: RGB for every (haematoxylin code, eosin code)."""
        od_h = decode_od(np.arange(256)).astype(np.float64) * self.gain_h
        od_e = decode_od(np.arange(256)).astype(np.float64) * self.gain_e
        h_vec, e_vec = unit_vector(self.stain_h), unit_vector(self.stain_e)
        od = od_h[:, None, None] * h_vec + od_e[None, :, None] * e_vec
        rgb = (np.asarray(self.background) / 255.0) * 10.0 ** (-od)
        rgb = np.clip(rgb, 0.0, 1.0) ** self.gamma
        grey = rgb.mean(axis=-1, keepdims=True)
        rgb = grey + self.saturation * (rgb - grey)
        return np.rint(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)

    def glass_rgb(self) -> tuple[int, int, int]:
        """Colour of bare glass, used where a scan sees beyond the specimen raster."""
        r, g, b = self.lut()[GLASS_CODES]
        return int(r), int(g), int(b)

    def colourize(self, stains: np.ndarray, mpp: float) -> np.ndarray:
        """Stain codes (H, W, 2) at ``mpp`` -> RGB uint8 (H, W, 3), optically blurred."""
        packed = _pack(self.lut())
        rgb = np.empty((*stains.shape[:2], 3), np.uint8)
        for r0 in range(0, stains.shape[0], 512):  # bounds the uint32 temporaries
            block = stains[r0 : r0 + 512]
            idx = (block[..., 0].astype(np.uint16) << 8) | block[..., 1]
            rgb[r0 : r0 + 512] = np.take(packed, idx).view(np.uint8).reshape(*idx.shape, 4)[..., :3]
        sigma_px = self.blur_um / mpp
        if sigma_px > 0.05:
            cv2.GaussianBlur(rgb, (0, 0), sigma_px, dst=rgb, borderType=cv2.BORDER_REPLICATE)
        return rgb

    def strong(self) -> ScannerStyle:
        """The ``strong-stain`` scenario: a far-off stain, colour and focus."""
        return replace(
            self,
            stain_h=(0.48, 0.78, 0.40),
            stain_e=(0.20, 0.93, 0.30),
            gain_h=self.gain_h * 1.45,
            gain_e=self.gain_e * 0.6,
            background=(234.0, 238.0, 250.0),
            gamma=self.gamma * 1.3,
            blur_um=self.blur_um + 1.2,
            noise=self.noise + 2.0,
        )


# Plausible, clearly different looks for the SCORPION scanners (not measured calibrations).
SCANNER_STYLES: dict[str, ScannerStyle] = {
    "AT2": ScannerStyle(),
    "GT450": ScannerStyle(
        stain_h=(0.60, 0.74, 0.30),
        stain_e=(0.10, 0.97, 0.20),
        gain_h=0.85,
        gain_e=0.9,
        background=(250.0, 250.0, 250.0),
        gamma=0.85,
        saturation=1.1,
        blur_um=0.3,
        noise=1.5,
        jpeg_quality=85,
    ),
    "DP200": ScannerStyle(
        stain_h=(0.72, 0.66, 0.20),
        stain_e=(0.05, 0.98, 0.17),
        gain_h=1.25,
        gain_e=1.1,
        background=(236.0, 240.0, 247.0),
        gamma=1.15,
        saturation=1.25,
        blur_um=0.45,
        noise=2.5,
        jpeg_quality=80,
    ),
    "P1000": ScannerStyle(
        stain_h=(0.62, 0.72, 0.31),
        stain_e=(0.16, 0.95, 0.26),
        gain_h=0.95,
        gain_e=1.3,
        background=(249.0, 242.0, 232.0),
        saturation=0.95,
        blur_um=0.75,
        noise=2.0,
        jpeg_quality=80,
    ),
    "Philips": ScannerStyle(
        stain_h=(0.56, 0.77, 0.30),
        stain_e=(0.08, 0.99, 0.08),
        gain_h=1.05,
        gain_e=0.8,
        background=(241.0, 246.0, 238.0),
        gamma=1.25,
        saturation=0.8,
        blur_um=0.5,
        noise=3.0,
        jpeg_quality=90,
    ),
}


def style_for(scanner: str, scenarios: tuple[str, ...] = ()) -> ScannerStyle:
    """The style of a scanner, with the ``strong-stain`` scenario applied when listed.

    Unknown scanner names get a reproducible random variation of the AT2 look.
    """
    style = SCANNER_STYLES.get(scanner) or _random_style(scanner)
    return style.strong() if "strong-stain" in scenarios else style


def _random_style(name: str) -> ScannerStyle:
    rng = rng_for(0, "style", name)
    base = ScannerStyle()
    jitter = lambda v, s: tuple(float(x) for x in np.asarray(v) + rng.normal(0, s, len(v)))  # noqa: E731
    return replace(
        base,
        stain_h=jitter(base.stain_h, 0.05),
        stain_e=jitter(base.stain_e, 0.05),
        gain_h=float(rng.uniform(0.85, 1.2)),
        gain_e=float(rng.uniform(0.8, 1.2)),
        background=tuple(float(x) for x in rng.uniform(236, 252, 3)),
        gamma=float(rng.uniform(0.85, 1.2)),
        saturation=float(rng.uniform(0.85, 1.2)),
        blur_um=float(rng.uniform(0.25, 0.7)),
        noise=float(rng.uniform(1.0, 3.0)),
        jpeg_quality=int(rng.integers(75, 95)),
    )


def unit_vector(v: Vec3) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    return a / math.sqrt(float(a @ a))


def _pack(lut: np.ndarray) -> np.ndarray:
    """(256, 256, 3) uint8 -> (65536,) uint32 with R, G, B in bytes 0-2 (one gather per pixel)."""
    flat = np.zeros((256 * 256, 4), np.uint8)
    flat[:, :3] = lut.reshape(-1, 3)
    return flat.view(np.uint32).reshape(-1)


class NoiseBank:
    """Gaussian sensor noise for a whole scan at the cost of one small draw.

    Draws ``size`` noise values once and applies windows of them at random offsets, split
    into positive and negative parts so each window costs two saturating uint8 operations.
    """

    def __init__(self, sigma: float, rng: np.random.Generator, size: int = 1 << 21) -> None:
        self.size = size
        self._spare = 1 << 16
        noise = np.rint(rng.standard_normal(size + self._spare, dtype=np.float32) * sigma)
        noise = np.clip(noise, -127, 127)
        self._pos = np.maximum(noise, 0).astype(np.uint8)
        self._neg = np.maximum(-noise, 0).astype(np.uint8)

    def apply(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Noisy copy of an (H, W, 3) uint8 image."""
        out = np.empty_like(rgb)
        row_values = rgb.shape[1] * rgb.shape[2]
        step = max(1, self.size // row_values)
        for r0 in range(0, rgb.shape[0], step):
            part = rgb[r0 : r0 + step]
            o = int(rng.integers(self._spare))
            pos = self._pos[o : o + part.size].reshape(part.shape)
            neg = self._neg[o : o + part.size].reshape(part.shape)
            out[r0 : r0 + step] = cv2.subtract(cv2.add(part, pos), neg)
        return out
