"""Batched RGB <-> LAB / HSV / HED conversions on torch tensors (GPU-friendly, differentiable).

All functions take and return float tensors ``(B, 3, H, W)``; RGB is sRGB in [0, 1].
Conventions follow scikit-image so fitted statistics mean the same thing in both:

- LAB: CIE L*a*b*, D65 white, 2-degree observer; L in [0, 100], a/b roughly [-128, 127].
- HSV: hue in [0, 1) (a full turn is 1), saturation and value in [0, 1].
- HED: Ruifrok & Johnston colour deconvolution (Anal. Quant. Cytol. Histol. 2001), optical
  densities of haematoxylin, eosin and DAB; unlike ``skimage.color.rgb2hed`` negative
  densities are kept, so ``hed_to_rgb(rgb_to_hed(x)) == x``.
"""

from __future__ import annotations

import torch

COLOR_SPACES = ("lab", "hsv", "hed")

_RGB_TO_XYZ = torch.tensor(
    [
        [0.412453, 0.357580, 0.180423],
        [0.212671, 0.715160, 0.072169],
        [0.019334, 0.119193, 0.950227],
    ],
    dtype=torch.float64,
)
_D65_WHITE = torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64)
_RGB_FROM_HED = torch.tensor(
    [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=torch.float64
)
_HED_LOG_ADJUST = torch.log(torch.tensor(1e-6, dtype=torch.float64))
_EPS = 1e-6


def _apply_matrix(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Per-pixel ``matrix @ [c0, c1, c2]`` on a ``(B, 3, H, W)`` tensor."""
    return torch.einsum("ij,bjhw->bihw", matrix.to(x.device, x.dtype), x)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB [0, 1] -> CIE LAB (D65)."""
    linear = torch.where(rgb > 0.04045, ((rgb.clamp(min=0) + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = _apply_matrix(linear, _RGB_TO_XYZ) / _D65_WHITE.to(rgb.device, rgb.dtype).view(1, 3, 1, 1)
    delta = 6.0 / 29.0
    f = torch.where(
        xyz > delta**3, xyz.clamp(min=delta**3) ** (1.0 / 3.0), xyz / (3 * delta**2) + 4.0 / 29.0
    )
    fx, fy, fz = f[:, 0], f[:, 1], f[:, 2]
    return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=1)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """CIE LAB (D65) -> sRGB, not clipped (out-of-gamut colours leave [0, 1])."""
    fy = (lab[:, 0] + 16.0) / 116.0
    f = torch.stack([fy + lab[:, 1] / 500.0, fy, fy - lab[:, 2] / 200.0], dim=1)
    delta = 6.0 / 29.0
    xyz = torch.where(f > delta, f**3, 3 * delta**2 * (f - 4.0 / 29.0))
    xyz = xyz * _D65_WHITE.to(lab.device, lab.dtype).view(1, 3, 1, 1)
    linear = _apply_matrix(xyz, torch.linalg.inv(_RGB_TO_XYZ))
    return torch.where(
        linear > 0.0031308, 1.055 * linear.clamp(min=0.0031308) ** (1 / 2.4) - 0.055, 12.92 * linear
    )


def rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """RGB [0, 1] -> HSV with hue in [0, 1)."""
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    value, argmax = rgb.max(dim=1)
    chroma = value - rgb.min(dim=1).values
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    hue = torch.where(
        argmax == 0,
        ((g - b) / safe) % 6.0,
        torch.where(argmax == 1, (b - r) / safe + 2.0, (r - g) / safe + 4.0),
    )
    hue = torch.where(chroma > 0, hue / 6.0, torch.zeros_like(hue)) % 1.0
    saturation = torch.where(value > 0, chroma / torch.where(value > 0, value, 1.0), 0.0)
    return torch.stack([hue, saturation, value], dim=1)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """HSV (hue in [0, 1), wrapping) -> RGB."""
    hue, saturation, value = hsv[:, 0] % 1.0, hsv[:, 1], hsv[:, 2]
    # the standard closed form: channel n takes v - v s max(0, min(k, 4 - k, 1)), k = (n + 6h) % 6
    offsets = torch.tensor([5.0, 3.0, 1.0], device=hsv.device, dtype=hsv.dtype).view(1, 3, 1, 1)
    k = (offsets + 6.0 * hue.unsqueeze(1)) % 6.0
    weight = torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0)
    return value.unsqueeze(1) - value.unsqueeze(1) * saturation.unsqueeze(1) * weight


def rgb_to_hed(rgb: torch.Tensor) -> torch.Tensor:
    """RGB [0, 1] -> HED optical densities (skimage's scale, negatives kept)."""
    log_rgb = torch.log(rgb.clamp(min=_EPS)) / _HED_LOG_ADJUST.to(rgb.dtype)
    hed_from_rgb = torch.linalg.inv(_RGB_FROM_HED)
    # skimage multiplies row vectors on the right: stains = log_rgb @ hed_from_rgb
    return _apply_matrix(log_rgb, hed_from_rgb.T)


def hed_to_rgb(hed: torch.Tensor) -> torch.Tensor:
    """HED optical densities -> RGB, not clipped."""
    log_rgb = _apply_matrix(hed, _RGB_FROM_HED.T) * _HED_LOG_ADJUST.to(hed.dtype)
    return torch.exp(log_rgb)


_TO = {"lab": rgb_to_lab, "hsv": rgb_to_hsv, "hed": rgb_to_hed}
_FROM = {"lab": lab_to_rgb, "hsv": hsv_to_rgb, "hed": hed_to_rgb}


def check_color_space(name: str) -> str:
    name = name.lower()
    if name not in COLOR_SPACES:
        raise ValueError(f"unknown colour space {name!r}; choose one of {list(COLOR_SPACES)}")
    return name


def rgb_to(space: str, rgb: torch.Tensor) -> torch.Tensor:
    """Convert RGB to ``space`` (one of :data:`COLOR_SPACES`)."""
    return _TO[check_color_space(space)](rgb)


def to_rgb(space: str, x: torch.Tensor) -> torch.Tensor:
    """Convert from ``space`` back to RGB (unclipped)."""
    return _FROM[check_color_space(space)](x)
