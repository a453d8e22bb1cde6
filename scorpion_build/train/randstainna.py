"""RandStainNA (Shen et al., MICCAI 2022): stain statistics fitted on the training set, and
per-image Reinhard transfer to a style sampled from them, on batched tensors."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from scorpion_build.files import write_text_atomic
from scorpion_build.train.colorspace import check_color_space, rgb_to, to_rgb


@dataclass(frozen=True)
class StainStatistics:
    """Distribution of per-image colour statistics over a training set, for RandStainNA.

    For each channel of ``color_space`` every training image gives its mean and standard
    deviation over pixels; the fitted values are the mean and standard deviation *across
    images* of those two numbers (Shen et al., "RandStainNA", MICCAI 2022).

    Attributes
    ----------
    color_space : "lab", "hsv" or "hed" (conventions in :mod:`~.colorspace`).
    mean_mean, mean_std : ``(3,)`` mean and spread across images of the per-image means.
    std_mean, std_std : ``(3,)`` mean and spread across images of the per-image stds.
    n_images : images fitted.
    """

    color_space: str
    mean_mean: tuple[float, float, float]
    mean_std: tuple[float, float, float]
    std_mean: tuple[float, float, float]
    std_std: tuple[float, float, float]
    n_images: int

    def to_dict(self) -> dict:
        return {
            "color_space": self.color_space,
            "mean_mean": list(self.mean_mean),
            "mean_std": list(self.mean_std),
            "std_mean": list(self.std_mean),
            "std_std": list(self.std_std),
            "n_images": self.n_images,
        }

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # a stats file being replaced stays whole if the write is interrupted
        return write_text_atomic(path, json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> StainStatistics:
        """Read a file written by :meth:`save`; a clear error for anything else."""
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
            values = {
                k: tuple(float(v) for v in raw[k])
                for k in ("mean_mean", "mean_std", "std_mean", "std_std")
            }
            if any(len(v) != 3 for v in values.values()):
                raise ValueError("each statistic needs 3 channels")
            return cls(
                color_space=check_color_space(raw["color_space"]),
                n_images=int(raw.get("n_images", 0)),
                **values,
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(
                f"{path}: not a RandStainNA statistics file ({exc}); write one with "
                "`scorpion-build train --sa randstainna` (it saves randstainna.json in the run "
                "folder) or omit --randstainna-stats to fit it on the training images"
            ) from exc


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image, per-channel mean and (population) std over pixels: two ``(B, 3)`` tensors."""
    return x.mean(dim=(2, 3)), x.std(dim=(2, 3), correction=0)


def fit_stain_statistics(images: Iterable[np.ndarray], color_space: str = "lab") -> StainStatistics:
    """Fit RandStainNA statistics on uint8 RGB images ``(H, W, 3)`` (any sizes).

    Computed in float64 with the same conversions the augmentation uses, one image at a time
    so memory stays that of one image.
    """
    color_space = check_color_space(color_space)
    means, stds = [], []
    for image in images:
        rgb = torch.from_numpy(np.ascontiguousarray(image)).to(torch.float64) / 255.0
        converted = rgb_to(color_space, rgb.permute(2, 0, 1).unsqueeze(0))
        mean, std = channel_stats(converted)
        means.append(mean[0])
        stds.append(std[0])
    if not means:
        raise ValueError("no images to fit RandStainNA statistics on; the training split is empty")
    m, s = torch.stack(means), torch.stack(stds)

    def spread(v: torch.Tensor) -> torch.Tensor:
        return v.std(dim=0, correction=0)

    def as3(v: torch.Tensor) -> tuple[float, float, float]:
        return tuple(float(a) for a in v)  # type: ignore[return-value]

    return StainStatistics(
        color_space=color_space,
        mean_mean=as3(m.mean(dim=0)),
        mean_std=as3(spread(m)),
        std_mean=as3(s.mean(dim=0)),
        std_std=as3(spread(s)),
        n_images=len(means),
    )


def reinhard_transfer(
    x: torch.Tensor, target_mean: torch.Tensor, target_std: torch.Tensor
) -> torch.Tensor:
    """Reinhard et al. (2001) transfer in any colour space: per image and channel, shift and
    scale ``x`` so its mean and std over pixels become ``target_mean`` and ``target_std``
    (``(B, 3)`` each). A flat channel (std 0) only takes the target mean."""
    mean, std = channel_stats(x)
    scale = torch.where(std > 1e-8, target_std / std.clamp(min=1e-8), torch.zeros_like(std))
    return (x - mean[..., None, None]) * scale[..., None, None] + target_mean[..., None, None]


@dataclass(frozen=True)
class RandStainNA:
    """RandStainNA (Shen et al., MICCAI 2022): a random, plausible stain style per image.

    Per image, a target mean and std per channel are drawn from Gaussians fitted on the
    training set (:class:`StainStatistics`; ``spread`` scales their standard deviations),
    and the image is Reinhard-transferred to them in the statistics' colour space, then
    converted back to RGB and clipped to [0, 1].
    """

    stats: StainStatistics
    spread: float = 1.0

    def sample_targets(
        self, n: int, generator: torch.Generator, like: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` target means and stds ``(n, 3)``; stds are kept above 1e-3 of their mean."""

        def draw(centre, spread):
            c = torch.tensor(centre, dtype=torch.float64, device=generator.device)
            s = torch.tensor(spread, dtype=torch.float64, device=generator.device)
            z = torch.randn(n, 3, generator=generator, device=generator.device, dtype=torch.float64)
            return c + self.spread * s * z

        mean = draw(self.stats.mean_mean, self.stats.mean_std)
        std_centre = torch.tensor(self.stats.std_mean, dtype=torch.float64, device=mean.device)
        std = torch.maximum(draw(self.stats.std_mean, self.stats.std_std), 1e-3 * std_centre.abs())
        return mean.to(like.device, like.dtype), std.to(like.device, like.dtype)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        mean, std = self.sample_targets(x.shape[0], generator, x)
        converted = rgb_to(self.stats.color_space, x)
        transferred = reinhard_transfer(converted, mean, std)
        return to_rgb(self.stats.color_space, transferred).clamp(0, 1)
