"""Slide backends behind :class:`scorpion_build.slide.Slide`: openslide, tiffslide, plain images.

Each backend exposes ``properties``, ``level_dimensions``, ``read_level`` and ``close``;
the helpers here turn their properties into an mpp and a scanned area (docs/contracts.md).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from scorpion_build.tiles import open_tile_reader

log = logging.getLogger(__name__)

Reader = Literal["auto", "openslide", "tiffslide", "image"]
PLAIN_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}
# Plain images are read whole; refuse anything big enough to need a pyramid.
MAX_PLAIN_IMAGE_PX = 100_000_000


class SlideError(ValueError):
    """A slide that cannot be used, with the file named and what to do about it."""


class _OpenSlideLike:
    """openslide.OpenSlide and tiffslide.TiffSlide share this API.

    Levels that are plain tiled TIFF pages are decoded directly (:mod:`scorpion_build.tiles`);
    the library reads everything else.
    """

    def __init__(self, handle, path: Path) -> None:  # noqa: ANN001
        self._h = handle
        self._path = path
        self.properties = handle.properties
        self.level_dimensions = handle.level_dimensions
        self._ds = handle.level_downsamples
        is_tiffslide = type(handle).__module__.startswith("tiffslide")
        vendor = "tiffslide" if is_tiffslide else self.properties.get("openslide.vendor", "")
        self._tiles = open_tile_reader(path, self.level_dimensions, vendor)

    def read_level(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        if self._tiles is not None:
            try:
                out = self._tiles.read(level, x, y, w, h)
            except Exception as exc:  # an unusual tile: stop trying, the library handles it
                log.warning(
                    "%s: direct tile decoding failed at level %d (%s: %s); OpenSlide/tiffslide "
                    "read this file from now on",
                    self._path,
                    level,
                    exc.__class__.__name__,
                    exc,
                )
                self._tiles.close()
                self._tiles = None
                out = None
            if out is not None:
                return out
        # Both libraries take the location in level-0 px and divide by their own downsample;
        # multiply by that same value so the level pixel read is exactly (x, y).
        ds = self._ds[level]
        loc = (round(x * ds), round(y * ds))
        return np.asarray(self._h.read_region(loc, level, (w, h)))

    def close(self) -> None:
        if self._tiles is not None:
            self._tiles.close()
        self._h.close()


class _PlainImage:
    def __init__(self, path: Path) -> None:
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise SlideError(f"{path}: not a readable image")
        if img.ndim == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
        elif img.shape[2] == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
        else:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        self._img = img
        self.properties: dict[str, str] = {}
        self.level_dimensions = ((img.shape[1], img.shape[0]),)

    def read_level(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        return self._img[y : y + h, x : x + w].copy()  # callers may write to it

    def close(self) -> None:
        self._img = None


def open_backend(path: Path, reader: Reader):  # noqa: ANN202
    errors: list[str] = []
    order = ["openslide", "tiffslide", "image"] if reader == "auto" else [reader]
    for name in order:
        if name not in ("openslide", "tiffslide", "image"):
            raise ValueError(f"unknown reader {name!r}; use auto, openslide, tiffslide or image")
        try:
            if name == "openslide":
                import openslide

                return _OpenSlideLike(openslide.OpenSlide(str(path)), path), name
            if name == "tiffslide":
                import tiffslide

                return _OpenSlideLike(tiffslide.TiffSlide(str(path)), path), name
            if path.suffix.lower() not in PLAIN_IMAGE_SUFFIXES:
                raise SlideError("not a plain image suffix")
            if path.stat().st_size > MAX_PLAIN_IMAGE_PX:
                raise SlideError("too large for a plain image; convert to pyramidal TIFF")
            return _PlainImage(path), name
        except Exception as exc:  # each library raises its own types for unsupported files
            errors.append(f"{name}: {exc.__class__.__name__}: {exc}")
    hint = (
        "the file may be truncated or corrupt (re-copy it), or in a format neither openslide "
        "nor tiffslide reads (e.g. Philips iSyntax, Olympus VSI, Zeiss CZI: convert it to "
        "OME-TIFF or DICOM, see docs/troubleshooting.md)"
    )
    raise SlideError(f"{path}: cannot open ({'; '.join(errors)}); {hint}")


def mpp_from_properties(props) -> tuple[float, float] | None:  # noqa: ANN001
    for prefix in ("openslide", "tiffslide"):
        try:
            mx = float(props[f"{prefix}.mpp-x"])
            my = float(props.get(f"{prefix}.mpp-y", mx))
        except (KeyError, TypeError, ValueError):
            continue
        if mx > 0 and my > 0 and np.isfinite(mx) and np.isfinite(my):
            return mx, my
    return None


def scanned_bounds(props, size: tuple[int, int]) -> tuple[int, int, int, int] | None:  # noqa: ANN001
    """Level-0 (x, y, w, h) of the scanned area: OpenSlide's ``bounds-*`` (MIRAX, sparse
    TIFF), else the union of its ``region[i]`` areas (Ventana); None when it is the level."""
    keys = ("x", "y", "width", "height")
    try:
        box = tuple(int(props[f"openslide.bounds-{k}"]) for k in keys)
    except (KeyError, ValueError):
        regions = []
        i = 0
        while f"openslide.region[{i}].x" in props:
            regions.append([int(props[f"openslide.region[{i}].{k}"]) for k in keys])
            i += 1
        if not regions:
            return None
        r = np.array(regions)
        x0, y0 = r[:, 0].min(), r[:, 1].min()
        box = (x0, y0, (r[:, 0] + r[:, 2]).max() - x0, (r[:, 1] + r[:, 3]).max() - y0)
    box = tuple(int(v) for v in box)
    return None if box == (0, 0, *size) else box


def flatten_on_white(arr: np.ndarray) -> np.ndarray:
    """RGBA (straight alpha, as openslide-python and tiffslide return) -> RGB on white."""
    if arr.ndim == 2:
        return np.repeat(arr[..., None], 3, axis=2).astype(np.uint8)
    rgb = np.ascontiguousarray(arr[..., :3], dtype=np.uint8)
    if arr.shape[2] == 3:
        return rgb
    alpha = arr[..., 3]
    if alpha.min() == 255:  # the common case: fully opaque, nothing to blend
        return rgb
    # integer blend, rounded to nearest: (rgb * a + 255 * (255 - a)) / 255 fits in uint16,
    # a third of the memory of float32 (thumbnails of full-size slides are large reads)
    a = alpha.astype(np.uint16)[..., None]
    blended = rgb.astype(np.uint16) * a
    blended += (255 - a) * 255 + 127
    return (blended // 255).astype(np.uint8)
