"""Read plain images and label maps (PNG/JPEG) with errors that name the file and the fix."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


class ImageError(ValueError):
    """An unreadable image or a file that is not a label map."""


def read_rgb(path: Path, error: type[Exception] = ImageError) -> np.ndarray:
    """An image file as uint8 RGB ``(H, W, 3)`` (alpha dropped, grey repeated)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise error(f"{path}: unreadable or truncated image; re-write it as PNG or JPEG")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_label_map(path: Path, error: type[Exception] = ImageError) -> np.ndarray:
    """A label map (class index per pixel) as uint8 ``(H, W)``.

    Accepts 8- or 16-bit grayscale, and RGB(A) whose colour channels are equal (a grey map
    saved as colour); palette PNGs must be saved as index images instead. ``error`` is the
    exception class raised (callers pass their own, e.g. a data error of their module).
    """
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise error(f"{path}: unreadable or truncated label map; re-write it as PNG")
    if image.ndim == 3:
        colour = image[..., :3]
        if not (
            np.array_equal(colour[..., 0], colour[..., 1])
            and np.array_equal(colour[..., 0], colour[..., 2])
        ):
            raise error(
                f"{path}: a colour image, not a label map; save class indices 0..C-1 as a "
                "single-channel 8-bit PNG"
            )
        image = colour[..., 0]
    if image.dtype != np.uint8:
        if image.max(initial=0) > 254:
            raise error(f"{path}: class index {int(image.max())} is above 254")
        image = image.astype(np.uint8)
    return image
