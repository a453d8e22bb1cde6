"""Inference for validation and test: whole tiles in, label maps and Dice out.

Input convention of every checkpoint (see :mod:`scorpion_build.models`): float RGB in [0, 1],
then ImageNet mean/std, NCHW. Dice comes from :mod:`scorpion_build.metrics`, the same
functions the benchmark reports, so validation numbers and benchmark numbers agree.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from scorpion_build import metrics

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STRIDE_PX = 32
"""Tiles are reflect-padded to a multiple of this, the deepest encoder stride."""


def normalize(x: torch.Tensor) -> torch.Tensor:
    """Float RGB ``(B, 3, H, W)`` in [0, 1] -> ImageNet-normalised model input."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


def forward_padded(model: nn.Module, x: torch.Tensor, amp: bool = False) -> torch.Tensor:
    """Logits for float RGB ``x`` in [0, 1] of any size: reflect-pad to the stride, crop back."""
    height, width = x.shape[-2:]
    pad_h, pad_w = (-height) % STRIDE_PX, (-width) % STRIDE_PX
    if pad_h or pad_w:
        # reflection needs the pad smaller than the side; replicate covers tiny tiles
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
    with torch.autocast(device_type=x.device.type, dtype=torch.float16, enabled=amp):
        logits = model(normalize(x))
    return logits[..., :height, :width].float()


@torch.no_grad()
def predict_labels(
    model: nn.Module,
    images: Sequence[np.ndarray] | np.ndarray,
    device: torch.device,
    batch_size: int = 8,
    amp: bool = False,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> list[np.ndarray]:
    """Predicted label maps (uint8 ``(H, W)``) for uint8 RGB images ``(H, W, 3)``.

    Images of equal size are batched together; ``transform`` (e.g. a seeded style
    augmentation) is applied to each float batch before the model. The model is put in
    eval mode and left there.
    """
    model.eval()
    by_shape: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, image in enumerate(images):
        by_shape[image.shape].append(i)
    out: list[np.ndarray | None] = [None] * len(images)
    for indices in by_shape.values():
        # balanced chunks (sizes differ by at most one): no needless batch of one, which a
        # batch-wise transform such as FDA cannot handle
        n_chunks = -(-len(indices) // batch_size)
        for chunk in np.array_split(np.asarray(indices), n_chunks):
            batch = np.stack([images[i] for i in chunk]).transpose(0, 3, 1, 2)
            x = torch.from_numpy(batch).to(device).float() / 255.0
            if transform is not None:
                x = transform(x)
            labels = forward_padded(model, x, amp).argmax(dim=1).to(torch.uint8).cpu().numpy()
            for i, label in zip(chunk.tolist(), labels, strict=True):
                out[i] = label
    return out  # type: ignore[return-value]


def mean_dice(
    predictions: Sequence[np.ndarray], labels: Sequence[np.ndarray], num_classes: int
) -> float:
    """Task Dice: per sample and class (absent from both = 1), mean over classes, then samples."""
    if not predictions:
        return float("nan")
    per_sample = [
        metrics.dice_per_class(p, y, num_classes).mean()
        for p, y in zip(predictions, labels, strict=True)
    ]
    return float(np.mean(per_sample))
