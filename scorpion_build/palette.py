"""Colours for every overlay and status mark: the Okabe-Ito colour-blind-safe palette
(Okabe & Ito, "Color Universal Design", 2008), picked to stand out on H&E.

Eosin is pink and haematoxylin purple, so reds, magentas and purples vanish on tissue; the
greens, oranges, yellows, blues and black kept here do not, and each mark is drawn over a
white halo so it also reads on glass.
"""

from __future__ import annotations

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


def hex_colour(rgb: tuple[int, int, int]) -> str:
    """``#rrggbb`` of an RGB 0-255 triple (for matplotlib and HTML)."""
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def mpl(rgb: tuple[int, int, int]) -> tuple[float, float, float]:
    """An RGB 0-255 triple as matplotlib's 0-1 floats."""
    return tuple(c / 255.0 for c in rgb)
