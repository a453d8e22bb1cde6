"""Quality control of one registration: geometry after mpp correction, image agreement,
a status with a message a user can act on, and an overlay picture to glance at."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from scorpion_build import geometry as geo
from scorpion_build.mpp import corrected_mpp
from scorpion_build.register.coarse import nearest_orientation
from scorpion_build.register.thumbs import View, tissue_similarity, warp_to

# Scale after mpp correction: within 5% is what scanners' calibrations allow; beyond 20% the
# fit (or the metadata) is wrong.
SCALE_WARN = 0.05
SCALE_FAIL = 0.20
SHEAR_WARN = 0.02  # dimensionless; 0.02 is ~1 degree of skew, visible on a 1 mm patch
NCC_FAIL = 0.3  # images of the same tissue stay well above this after any stain change
NCC_WARN = 0.6
OVERLAP_WARN = 0.8  # share of the reference tissue the moving scan also shows
OVERLAP_FAIL = 0.1  # below this the similarity rests on too little tissue to trust
RESIDUAL_WARN_UM = 10.0
MIN_TISSUE_MM2 = 0.02
MIN_QC_WIDTH_PX = 640  # small scans' overlays are enlarged to this so the report can show them
CAPTION_FONT = cv2.FONT_HERSHEY_SIMPLEX
CAPTION_SCALE = 0.55  # at MIN_QC_WIDTH_PX; wider pictures get a proportionally larger font


@dataclass
class Geometry:
    """Linear part of a reference -> moving level-0 affine, in um on both sides."""

    scale: float  # sqrt |det|: 1.0 means the mpp metadata are right
    anisotropy: float  # scale_x / scale_y - 1
    shear: float
    rotation_deg: float  # residual rotation once the dihedral orientation is removed
    orientation: int  # dihedral index, see coarse.nearest_orientation


def geometry_um(
    matrix: geo.Affine, ref_mpp: tuple[float, float], mov_mpp: tuple[float, float]
) -> Geometry:
    """Scale/shear/rotation of ``matrix`` once both scans' pixel sizes are taken out."""
    lin = np.diag(mov_mpp) @ np.asarray(matrix, float)[:, :2] @ np.diag(1.0 / np.asarray(ref_mpp))
    k = nearest_orientation(lin)
    # remove the dihedral part so rotation/shear describe only the small residual
    residual = np.linalg.inv(geo.orientation(k, 1.0, 1.0)[:, :2]) @ lin
    d = geo.decompose(np.hstack([residual, np.zeros((2, 1))]))
    return Geometry(
        scale=float(np.sqrt(abs(np.linalg.det(lin)))),
        anisotropy=d["scale_x"] / d["scale_y"] - 1.0 if d["scale_y"] else float("inf"),
        shear=d["shear"],
        rotation_deg=d["rotation_deg"],
        orientation=k,
    )


def view_affine(ref: View, mov: View, matrix: geo.Affine) -> geo.Affine:
    """Reference view px -> moving view px for a level-0 ``matrix``."""
    return geo.compose(geo.invert(mov.to_level0), matrix, ref.to_level0)


def similarity(ref: View, mov: View, matrix: geo.Affine) -> tuple[float, float]:
    """(NCC of optical density where both scans show tissue, share of the reference tissue
    the moving scan also shows), on the views, for a level-0 ``matrix``."""
    m = view_affine(ref, mov, matrix)
    return tissue_similarity(ref.od, ref.mask, mov.od, mov.mask, m)


def overlay(ref: View, mov: View, matrix: geo.Affine, max_side_px: int = 1000) -> np.ndarray:
    """Two-colour overlay (BGR uint8) in the reference frame: tissue only the reference
    shows is magenta, only the moving scan green; aligned tissue is grey, misalignment shows
    as coloured fringes."""
    m = view_affine(ref, mov, matrix)
    w, h = ref.size
    mov_grey = warp_to(mov.grey, m, (w, h))
    a, b = 255 - ref.grey, 255 - mov_grey  # tissue dark on white
    # B, G, R: reference tissue darkens G only (shows magenta), moving tissue darkens B and
    # R (shows green); where both agree all channels darken to grey
    img = np.dstack([b, a, b])
    scale = max_side_px / max(w, h)
    if scale < 1:
        img = cv2.resize(img, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    return img


def side_by_side(ref: View, mov: View, max_side_px: int = 1000) -> np.ndarray:
    """Both views next to each other (BGR uint8), for pairs with no usable alignment."""
    h = max(ref.size[1], mov.size[1])
    pad = [
        cv2.copyMakeBorder(v.rgb, 0, h - v.size[1], 0, 8, cv2.BORDER_CONSTANT, value=(255,) * 3)
        for v in (ref, mov)
    ]
    img = cv2.cvtColor(np.hstack(pad), cv2.COLOR_RGB2BGR)
    scale = max_side_px / max(img.shape[:2])
    if scale < 1:
        size = (round(img.shape[1] * scale), round(img.shape[0] * scale))
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    return img


def write_overlay(path: Path, img: np.ndarray, caption: str) -> None:
    """Write ``img`` (BGR) under its caption, enlarged to :data:`MIN_QC_WIDTH_PX` when the
    scan is small, the caption wrapped so none of it is cut and sized with the picture so
    it stays readable wherever the picture is shown at the report's width."""
    if img.shape[1] < MIN_QC_WIDTH_PX:
        scale = MIN_QC_WIDTH_PX / img.shape[1]
        size = (MIN_QC_WIDTH_PX, round(img.shape[0] * scale))
        img = cv2.resize(img, size, interpolation=cv2.INTER_NEAREST)  # pixels stay pixels
    font_scale = CAPTION_SCALE * img.shape[1] / MIN_QC_WIDTH_PX
    thickness = max(1, round(font_scale))
    step = round(40 * font_scale)
    lines = wrap_caption(caption, img.shape[1] - 12, font_scale, thickness)
    bar = np.full((step // 2 + step * len(lines), img.shape[1], 3), 255, np.uint8)
    for k, line in enumerate(lines):
        origin = (6, step * (k + 1) - step // 4)
        cv2.putText(bar, line, origin, CAPTION_FONT, font_scale, (0, 0, 0), thickness, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.vstack([bar, img])):
        raise OSError(f"{path}: cannot write the QC picture; check the build directory")


def wrap_caption(
    caption: str, width_px: int, font_scale: float = 0.55, thickness: int = 1
) -> list[str]:
    """Split ``caption`` into lines no wider than ``width_px`` in the caption font."""
    lines: list[str] = []
    for word in caption.split():
        candidate = f"{lines[-1]} {word}" if lines else word
        (w, _), _ = cv2.getTextSize(candidate, CAPTION_FONT, font_scale, thickness)
        if lines and w <= width_px:
            lines[-1] = candidate
        else:
            lines.append(word)
    return lines or [""]


def judge(row: dict, mpp_x: float | None = None) -> tuple[str, str]:
    """Status and message for a registration row with its QC numbers filled in.

    ``mpp_x`` (um/px, the moving scan's) lets a scale message give the corrected mpp.
    """
    failed: list[str] = []
    warn: list[str] = []
    scale = row["scale"]
    fix = "check the mpp of both scans (slide table `mpp` column)"
    if mpp_x is not None and np.isfinite(scale) and scale > 0:
        fix = (
            f"if this scan's metadata ({mpp_x:.4g} um/px) are wrong, its true mpp is "
            f"{corrected_mpp(mpp_x, scale):.4g} (mpp_x / scale): set it in the slide table "
            "`mpp` column"
        )
    if abs(scale - 1.0) > SCALE_FAIL:
        failed.append(f"implausible scale {scale:.3f} after mpp correction: a wrong fit, or {fix}")
    elif abs(scale - 1.0) > SCALE_WARN:
        warn.append(
            f"scale {scale:.3f} after mpp correction is outside 1 +/- {SCALE_WARN:.0%}: {fix}"
        )
    if abs(row["shear"]) > SHEAR_WARN or abs(row.get("anisotropy", 0.0)) > SCALE_WARN:
        warn.append(
            f"visible shear {row['shear']:.3f} / anisotropy {row.get('anisotropy', 0.0):.3f}: "
            "inspect the QC overlay"
        )
    if row["ncc"] < NCC_FAIL:
        failed.append(
            f"images disagree after registration (NCC {row['ncc']:.2f} < {NCC_FAIL}): is this "
            "scan of the same glass slide? check the slide table"
        )
    elif row["ncc"] < NCC_WARN:
        warn.append(f"low image similarity (NCC {row['ncc']:.2f}): inspect the QC overlay")
    overlap = row.get("tissue_overlap", 1.0)
    if overlap < OVERLAP_FAIL:
        failed.append(
            f"after registration the scans share only {overlap:.0%} of the reference tissue: "
            "a wrong match or another slide; check the slide table and the QC picture"
        )
    elif overlap < OVERLAP_WARN:
        warn.append(
            f"this scan shows only {overlap:.0%} of the reference tissue: regions outside it "
            "will be skipped; rescan with the full tissue in the field of view"
        )
    res = row.get("residual_um")
    if res is not None and np.isfinite(res) and res > RESIDUAL_WARN_UM:
        warn.append(f"local misalignment {res:.1f} um after refinement: inspect the QC overlay")
    if failed:
        return "failed", "; ".join(failed + warn)
    return ("warn", "; ".join(warn)) if warn else ("ok", "")
