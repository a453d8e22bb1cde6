"""The paper's task augmentations on batched tensors: flips, Gaussian blur, Gaussian noise.

Flips move pixels, so they act on the image and its label map together; blur and noise act
on the image only. In SimCons both branches, ``F(x)`` and ``F(SA(x))``, see the output of
:class:`TaskAugment` (one geometric draw), and only the style differs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def _coin(n: int, p: float, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=generator.device) < p


def uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    """``n`` draws from U[low, high) on the generator's device."""
    return low + (high - low) * torch.rand(n, generator=generator, device=generator.device)


def random_flips(
    image: torch.Tensor, label: torch.Tensor, generator: torch.Generator, p: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip each sample left-right and, independently, up-down, each with probability ``p``.

    ``image`` is ``(B, C, H, W)``, ``label`` ``(B, H, W)``; the same flips apply to both.
    """
    n = image.shape[0]
    for flip, dim in ((_coin(n, p, generator), -1), (_coin(n, p, generator), -2)):
        flip = flip.to(image.device)
        image = torch.where(flip.view(n, 1, 1, 1), image.flip(dim), image)
        label = torch.where(flip.view(n, 1, 1), label.flip(dim), label)
    return image, label


def gaussian_blur(image: torch.Tensor, sigma_px: torch.Tensor, max_sigma_px: float) -> torch.Tensor:
    """Blur each sample with its own Gaussian of standard deviation ``sigma_px[b]`` (pixels).

    One grouped convolution for the whole batch; the kernel radius is ``ceil(3 max_sigma)``,
    borders are reflected. ``sigma_px`` of 0 leaves a sample unchanged.
    """
    n, c, h, w = image.shape
    radius = max(1, math.ceil(3 * max_sigma_px))
    offsets = torch.arange(-radius, radius + 1, device=image.device, dtype=image.dtype)
    sigma = sigma_px.to(image.device, image.dtype).view(n, 1)
    kernel_1d = torch.exp(-0.5 * (offsets / sigma.clamp(min=1e-6)) ** 2)
    delta = (offsets == 0).to(image.dtype).expand(n, -1)
    kernel_1d = torch.where(sigma > 1e-6, kernel_1d, delta)
    kernel_1d = kernel_1d / kernel_1d.sum(dim=1, keepdim=True)
    kernel_1d = kernel_1d.repeat_interleave(c, dim=0)  # (n*c, k): one kernel per channel
    x = image.reshape(1, n * c, h, w)
    # separable: a row pass then a column pass
    x = F.conv2d(
        F.pad(x, (radius, radius, 0, 0), mode="reflect"),
        kernel_1d.view(n * c, 1, 1, -1),
        groups=n * c,
    )
    x = F.conv2d(
        F.pad(x, (0, 0, radius, radius), mode="reflect"),
        kernel_1d.view(n * c, 1, -1, 1),
        groups=n * c,
    )
    return x.view(n, c, h, w)


@dataclass(frozen=True)
class TaskAugment:
    """Random flips, then Gaussian blur and Gaussian noise, each per sample.

    Attributes
    ----------
    flip_p : probability of each of the horizontal and vertical flips.
    blur_p, blur_sigma_px : probability of a blur, and its sigma range ``(low, high)`` in px.
    noise_p, noise_std : probability of additive noise, and its std range on the [0, 1] scale.
    """

    flip_p: float = 0.5
    blur_p: float = 0.3
    blur_sigma_px: tuple[float, float] = (0.1, 1.5)
    noise_p: float = 0.3
    noise_std: tuple[float, float] = (0.0, 0.03)

    def __post_init__(self) -> None:
        for name in ("flip_p", "blur_p", "noise_p"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"augment {name} must be a probability, got {getattr(self, name)}")
        for name in ("blur_sigma_px", "noise_std"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise ValueError(
                    f"augment {name} must be a range 0 <= low <= high, got {(low, high)}"
                )

    def __call__(
        self, image: torch.Tensor, label: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``image`` float ``(B, 3, H, W)`` in [0, 1], ``label`` ``(B, H, W)``; same shapes out."""
        n = image.shape[0]
        image, label = random_flips(image, label, generator, self.flip_p)
        # draw every random number whatever the probabilities, so the stream (and a seed's
        # result) does not depend on which branches fire
        blur_on = _coin(n, self.blur_p, generator)
        sigma = uniform(n, *self.blur_sigma_px, generator)
        noise_on = _coin(n, self.noise_p, generator)
        noise_std = uniform(n, *self.noise_std, generator)
        noise = torch.randn(image.shape, generator=generator, device=generator.device)
        if self.blur_p > 0 and self.blur_sigma_px[1] > 0:
            sigma = torch.where(blur_on, sigma, torch.zeros_like(sigma))
            image = gaussian_blur(image, sigma, self.blur_sigma_px[1])
        std = torch.where(noise_on, noise_std, torch.zeros_like(noise_std)).to(image.device)
        image = image + noise.to(image.device, image.dtype) * std.view(n, 1, 1, 1).to(image.dtype)
        return image.clamp(0, 1), label
