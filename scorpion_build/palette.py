"""Colours for every overlay and status mark: the Okabe-Ito colour-blind-safe palette
(Okabe & Ito, "Color Universal Design", 2008), picked to stand out on H&E.

Eosin is pink and haematoxylin purple, so reds, magentas and purples vanish on tissue; the
greens, oranges, yellows, blues and black kept here do not, and each mark is drawn over a
white halo so it also reads on glass.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

# Okabe-Ito, RGB 0-255
BLACK = (0, 0, 0)
ORANGE = (230, 159, 0)
SKY_BLUE = (86, 180, 233)
BLUISH_GREEN = (0, 158, 115)
YELLOW = (240, 228, 66)
BLUE = (0, 114, 178)
WHITE = (255, 255, 255)

# manifest status -> mark colour; failed is black, not red, which disappears on eosin
STATUS_RGB = {"ok": BLUISH_GREEN, "warn": ORANGE, "failed": BLACK}
TISSUE_OUTLINE_RGB = SKY_BLUE

# class 0 (background) is never drawn; then the colours in order of contrast on H&E
CLASS_RGB = np.array(
    [BLACK, BLUISH_GREEN, YELLOW, BLUE, ORANGE, SKY_BLUE, BLACK, WHITE],
    np.uint8,
)


OVERLAY_ALPHA = 0.45  # weight of the class colour where a label map is drawn over a patch


def class_colours(labels: np.ndarray) -> np.ndarray:
    """RGB uint8 colour of each class index in ``labels`` (shape + (3,)); indices past the
    palette share its last colour."""
    return CLASS_RGB[np.minimum(labels, len(CLASS_RGB) - 1)]


def overlay(image: np.ndarray, label: np.ndarray, missing: int | None = None) -> np.ndarray:
    """A label map drawn over its RGB patch: every report and figure draws labels this way.

    Class colours are blended in (:data:`OVERLAY_ALPHA`) and each class's boundary is drawn
    in full colour, so a class reads on any stain; class 0 (background) and ``missing``
    pixels (e.g. a prediction that was not made) stay as they are.

    Parameters
    ----------
    image : ndarray
        (H, W, 3) uint8 RGB.
    label : ndarray
        (H, W) class indices, same size as ``image``.
    missing : int, optional
        A label value that means "no label here".
    """
    colours = class_colours(label)
    drawn = label > 0 if missing is None else (label > 0) & (label != missing)
    mask = drawn[..., None]
    blended = image * (1 - OVERLAY_ALPHA) + colours * OVERLAY_ALPHA
    out = np.where(mask, blended, image)
    edge = cv2.morphologyEx(label.astype(np.uint16), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
    return np.where((edge > 0)[..., None] & mask, colours, out).astype(np.uint8)


def class_legend(classes: Sequence[str]) -> list:
    """Matplotlib legend handles for every class but the background (index 0)."""
    from matplotlib.patches import Patch

    colours = class_colours(np.arange(len(classes)))
    return [Patch(color=colours[k] / 255, label=c) for k, c in enumerate(classes) if k > 0]


def hex_colour(rgb: tuple[int, int, int]) -> str:
    """``#rrggbb`` of an RGB 0-255 triple (for matplotlib and HTML)."""
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def mpl(rgb: tuple[int, int, int]) -> tuple[float, float, float]:
    """An RGB 0-255 triple as matplotlib's 0-1 floats."""
    return tuple(c / 255.0 for c in rgb)
