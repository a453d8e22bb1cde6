"""Style augmentations SA for SimCons on batched tensors: ColorJitter and FDA here,
RandStainNA in :mod:`.randstainna`, and :func:`build_style_augmentation` to pick one.

Every augmentation maps a float RGB batch ``(B, 3, H, W)`` in [0, 1] to one of the same shape
and range, on the batch's device, drawing its randomness only from the ``torch.Generator``
it is given, so a seed fixes the result. They change colour and style, never geometry: the
label map of ``x`` is the label map of ``SA(x)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from scorpion_build.settings import check_settings, setting
from scorpion_build.train.augment import uniform
from scorpion_build.train.colorspace import hsv_to_rgb, rgb_to_hsv
from scorpion_build.train.randstainna import RandStainNA, StainStatistics

STYLE_AUGMENTATIONS = ("none", "colorjitter", "randstainna", "fda")


class StyleAugmentation(Protocol):
    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor: ...


def _factors(n: int, low: float, high: float, generator: torch.Generator, like: torch.Tensor):
    """``n`` per-image factors from U[low, high), shaped ``(n, 1, 1, 1)`` to broadcast."""
    return uniform(n, low, high, generator).to(like.device, like.dtype).view(n, 1, 1, 1)


def _grayscale(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma, as torchvision uses for saturation and contrast."""
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).expand_as(x)


@dataclass(frozen=True)
class ColorJitter:
    """Random brightness, contrast, saturation and hue, one draw per image.

    Factors are drawn from ``U[1 - a, 1 + a]`` for brightness, contrast and saturation and
    the hue shift from ``U[-hue, hue]`` turns (0.05 = +/-18 degrees): a small hue range,
    since stain colours never go round the colour wheel. Applied in that fixed order (as
    torchvision's ``ColorJitter`` formulas, which shuffle the order instead), clipped to
    [0, 1] after each step.
    """

    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.25
    hue: float = 0.05

    def __post_init__(self) -> None:
        for name in ("brightness", "contrast", "saturation"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"ColorJitter {name} must be in [0, 1), got {getattr(self, name)}")
        if not 0 <= self.hue <= 0.5:
            raise ValueError(f"ColorJitter hue must be in [0, 0.5] turns, got {self.hue}")

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n = x.shape[0]
        b = _factors(n, 1 - self.brightness, 1 + self.brightness, generator, x)
        c = _factors(n, 1 - self.contrast, 1 + self.contrast, generator, x)
        s = _factors(n, 1 - self.saturation, 1 + self.saturation, generator, x)
        h = _factors(n, -self.hue, self.hue, generator, x)
        x = (x * b).clamp(0, 1)
        mean = _grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
        x = (mean + c * (x - mean)).clamp(0, 1)
        gray = _grayscale(x)
        x = (gray + s * (x - gray)).clamp(0, 1)
        hsv = rgb_to_hsv(x)
        hsv = torch.cat([(hsv[:, :1] + h) % 1.0, hsv[:, 1:]], dim=1)
        return hsv_to_rgb(hsv).clamp(0, 1)


# ---------------------------------------------------------------------------------------------
# FDA


def low_frequency_mask(height: int, width: int, beta: float, device=None) -> torch.Tensor:
    """Boolean ``(H, W)`` mask of the low-frequency square of the unshifted 2-D spectrum.

    Frequencies ``|k_y| <= b`` and ``|k_x| <= b`` with ``b = floor(beta * min(H, W))``, as in
    FDA's reference code (a ``(2b + 1)``-wide square around DC after ``fftshift``); symmetric
    under ``k -> -k`` so the result stays real. ``beta = 0`` keeps the DC term only.
    """
    b = int(np.floor(beta * min(height, width)))
    ky = torch.fft.fftfreq(height, d=1.0 / height, device=device).abs()
    kx = torch.fft.fftfreq(width, d=1.0 / width, device=device).abs()
    return (ky[:, None] <= b) & (kx[None, :] <= b)


def fda_transfer(
    x: torch.Tensor, reference: torch.Tensor, beta: float, clip: bool = True
) -> torch.Tensor:
    """Fourier Domain Adaptation (Yang & Soatto, CVPR 2020) of ``x`` towards ``reference``.

    Per image and channel, the amplitude spectrum inside :func:`low_frequency_mask` is
    replaced with the reference's; the phase of ``x`` (its content: edges, structure) is
    kept everywhere. ``x`` and ``reference`` are ``(B, 3, H, W)`` float in [0, 1].
    """
    if x.shape != reference.shape:
        raise ValueError(
            f"FDA needs x and reference of one shape, got {x.shape}, {reference.shape}"
        )
    # FFTs in float32 at least: half precision FFTs are neither supported on CPU nor accurate
    work = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    spec_x = torch.fft.fft2(x.to(work))
    amp_ref = torch.fft.fft2(reference.to(work)).abs()
    mask = low_frequency_mask(x.shape[-2], x.shape[-1], beta, device=x.device)
    amplitude = torch.where(mask, amp_ref, spec_x.abs())
    out = torch.fft.ifft2(torch.polar(amplitude, spec_x.angle())).real.to(x.dtype)
    return out.clamp(0, 1) if clip else out


@dataclass(frozen=True)
class FDA:
    """FDA against another image of the same training batch (a random derangement, so no
    image is its own reference). ``beta`` sets the band: half-width ``floor(beta*min(H, W))``
    frequency bins. Needs batches of at least two images."""

    beta: float = setting(
        0.05, "FDA low-frequency band size (fraction of the image side).", minimum=0, below=0.5
    )

    def __post_init__(self) -> None:
        check_settings(self)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n = x.shape[0]
        if n < 2:
            raise ValueError("FDA swaps spectra between images of a batch; use a batch size >= 2")
        # a random non-zero cyclic shift of a random permutation is a derangement
        perm = torch.randperm(n, generator=generator, device=generator.device)
        shift = int(torch.randint(1, n, (1,), generator=generator, device=generator.device))
        source = perm.roll(shift)
        order = torch.empty_like(perm)
        order[perm] = source
        return fda_transfer(x, x[order.to(x.device)], self.beta)


def build_style_augmentation(
    name: str,
    *,
    colorjitter: ColorJitter | None = None,
    stats: StainStatistics | None = None,
    randstainna_spread: float = 1.0,
    fda_beta: float = 0.05,
) -> StyleAugmentation | None:
    """The SA named ``name`` (``none`` gives None). RandStainNA needs fitted ``stats``."""
    name = name.lower()
    if name == "none":
        return None
    if name == "colorjitter":
        return colorjitter or ColorJitter()
    if name == "randstainna":
        if stats is None:
            raise ValueError("RandStainNA needs fitted statistics (fit_stain_statistics)")
        return RandStainNA(stats, spread=randstainna_spread)
    if name == "fda":
        return FDA(beta=fda_beta)
    raise ValueError(f"unknown style augmentation {name!r}; choose one of {STYLE_AUGMENTATIONS}")
