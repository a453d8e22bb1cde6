"""What a microns-per-pixel value may be, and the messages when it is not.

Scanners differ in magnification (20x ~0.5 um/px, 40x ~0.25 um/px, and anything between:
0.227 um/px Hamamatsu beside 0.346 um/px Olympus is a real pair), so two correct mpps may
differ by any ratio. ``scan`` only refuses what cannot be a level-0 resolution; whether an
mpp is *right* is measured by registration (its scale after mpp correction, see
:func:`corrected_mpp`).
"""

from __future__ import annotations

import math

# Light microscopes resolve ~0.2 um and no scanner's level 0 is coarser than ~20 um/px;
# below the range, or beyond the hard upper limit, a value is a unit mix-up (nm, mm, pixels
# per cm) or garbage. Between 20 and 100 um/px it is a downsampled export (the public
# Camelyon DICOM test image is 29 um/px): usable, but worth a `warn`.
MPP_RANGE_UM = (0.05, 20.0)
MPP_HARD_MAX_UM = 100.0
# Square pixels are universal in slide scanners; x and y further apart than this is a
# metadata error (one axis in other units) rather than a real camera.
MAX_XY_DIFFERENCE = 0.05
# A scan this much coarser or finer than the reference's is legitimate (20x vs 40x) but
# worth a word: the registration scale will tell whether the metadata are right.
WARN_RATIO = 1.5
# Patches upsampled beyond this factor from their scan get a `warn`: resampling by less
# is within scanners' own calibration spread.
UPSAMPLE_WARN = 1.01


def mpp_problem(mpp_x: float, mpp_y: float) -> str | None:
    """Why ``(mpp_x, mpp_y)`` (um/px) cannot be a level-0 resolution, or None when it can."""
    lo = MPP_RANGE_UM[0]
    for axis, value in (("x", mpp_x), ("y", mpp_y)):
        if not (isinstance(value, float | int) and math.isfinite(value) and value > 0):
            return f"mpp {axis} = {value!r} is not a positive number"
        if not lo <= value <= MPP_HARD_MAX_UM:
            return (
                f"mpp {axis} = {value:.4g} um/px is outside the plausible {lo:g}-"
                f"{MPP_HARD_MAX_UM:g} um/px (a unit mix-up? level-0 um/px is ~0.25 at 40x, "
                "~0.5 at 20x)"
            )
    if abs(mpp_x / mpp_y - 1.0) > MAX_XY_DIFFERENCE:
        return (
            f"mpp x = {mpp_x:.4g} and y = {mpp_y:.4g} um/px differ by more than "
            f"{MAX_XY_DIFFERENCE:.0%} (scanners have square pixels)"
        )
    return None


def coarse_note(mpp_x: float) -> str | None:
    """A `warn` message for a plausible but coarser-than-any-scanner level 0 (um/px)."""
    if mpp_x <= MPP_RANGE_UM[1]:
        return None
    return (
        f"level 0 is {mpp_x:.4g} um/px, coarser than any scanner's ({MPP_RANGE_UM[1]:g} um/px): "
        "a downsampled export? patches will be upsampled; use the full-resolution file"
    )


def parse_override(value: object) -> float | None:
    """A slide table's ``mpp`` cell as um/px: None when empty; ValueError when not a number."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"mpp {value!r} in the slide table is not a number") from None
    return float(value)


def ratio_note(mpp: float, reference_mpp: float, slide_id: str) -> str | None:
    """A `warn` message when ``mpp`` is over :data:`WARN_RATIO` away from the reference's."""
    ratio = mpp / reference_mpp
    if max(ratio, 1.0 / ratio) <= WARN_RATIO:
        return None
    return (
        f"mpp {mpp:.4g} um/px is {ratio:.2f}x the reference scan of slide {slide_id} "
        f"({reference_mpp:.4g} um/px): fine for a scanner at another magnification (20x vs "
        "40x); registration measures the true ratio and fails the pair if the metadata are wrong"
    )


def corrected_mpp(mpp: float, scale: float) -> float:
    """The mpp (um/px) a scan really has when registration measures ``scale`` after mpp
    correction: reference um -> this scan's px went ``scale`` times larger than its
    metadata predicted, so each pixel covers ``1/scale`` as many um."""
    return mpp / scale


def upsample_note(factor: float, scan_mpp: float, out_mpp: float) -> str | None:
    """A `warn` message for a patch upsampled ``factor`` times (output px per scan px)."""
    if factor <= UPSAMPLE_WARN:
        return None
    return (
        f"patch upsampled {factor:.2f}x: this scan ({scan_mpp:.4g} um/px) is coarser than the "
        f"output {out_mpp:.4g} um/px; raise --region-um or lower --size to stay at or above "
        "the coarsest scan's resolution"
    )
