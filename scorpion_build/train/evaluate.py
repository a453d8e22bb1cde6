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
from torch import nn

from scorpion_build import metrics
from scorpion_build.models import normalize, padded_logits


def forward_padded(model: nn.Module, x: torch.Tensor, amp: bool = False) -> torch.Tensor:
    """Logits for float RGB ``x`` in [0, 1] of any size (padded to the encoder stride)."""
    with torch.autocast(device_type=x.device.type, dtype=torch.float16, enabled=amp):
        logits = padded_logits(model, normalize(x))
    return logits.float()


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
