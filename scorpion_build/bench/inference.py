"""Run a segmentation model over every patch of a source, streaming into a Zarr array.

Batches of patches are read in a background thread while the model runs on the previous
batch (JPEG/Zarr decoding releases the GIL), so memory holds two batches at most.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import zarr
from torch import nn

from scorpion_build import logs
from scorpion_build.bench.sources import PatchSource
from scorpion_build.models import normalize, padded_logits


def preprocess(images: torch.Tensor) -> torch.Tensor:
    """uint8 RGB ``(B, H, W, 3)`` -> float32 ``(B, 3, H, W)``: [0, 1], then ImageNet mean/std.

    The same normalisation ``train`` applies to its inputs. Run it on the target device: a
    uint8 transfer is 4x smaller than a float one.
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            f"expected uint8 (B, H, W, 3) RGB, got {images.dtype} {tuple(images.shape)}"
        )
    return normalize(images.permute(0, 3, 1, 2).float().div_(255.0))


@torch.inference_mode()
def predict_batch(
    model: nn.Module, images: np.ndarray, device: torch.device, amp: bool
) -> np.ndarray:
    """uint8 RGB ``(B, H, W, 3)`` -> uint8 class indices ``(B, H, W)`` (argmax of the logits)."""
    x = preprocess(torch.from_numpy(images).to(device, non_blocking=True))
    with torch.autocast(
        device_type=device.type, dtype=torch.float16, enabled=amp and device.type == "cuda"
    ):
        logits = padded_logits(model, x)
    return logits.argmax(dim=1).to(torch.uint8).cpu().numpy()


def _batches(items: list[tuple[int, int]], batch_size: int) -> Iterator[list[tuple[int, int]]]:
    for start in range(0, len(items), batch_size):
        yield items[start : start + batch_size]


def predict_source(
    model: nn.Module,
    source: PatchSource,
    out: zarr.Array,
    device: torch.device,
    batch_size: int = 4,
    amp: bool = True,
    progress: bool = True,
) -> int:
    """Predict every present patch of ``source`` into ``out[n, s]``; returns the number done.

    Missing patches (``source.valid`` False) are skipped and stay MISSING in ``out``.
    ``amp`` uses float16 autocast on CUDA only (on CPU it would be slower, not faster).
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    items = [(int(n), int(s)) for n, s in zip(*np.nonzero(source.valid), strict=True)]

    def load(batch: list[tuple[int, int]]) -> np.ndarray:
        return np.stack([source.read(n, s) for n, s in batch])

    bar = logs.progress(len(items), "inference", "patches", enabled=progress)
    batches = list(_batches(items, batch_size))
    with ThreadPoolExecutor(max_workers=1) as reader:
        pending = reader.submit(load, batches[0]) if batches else None
        for k, batch in enumerate(batches):
            images = pending.result()
            if k + 1 < len(batches):
                pending = reader.submit(load, batches[k + 1])
            labels = predict_batch(model, images, device, amp)
            for (n, s), label in zip(batch, labels, strict=True):
                out[n, s] = label
            bar.update(len(batch))
    bar.close()
    return len(items)
