"""Register one scan to its reference scan: coarse views -> orientation-aware keypoint affine
-> block refinement -> QC row. Pure library code: slides in, one manifest row out."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from scorpion_build import geometry as geo
from scorpion_build.register import coarse, fine, qc
from scorpion_build.register.thumbs import View, coarse_mpp_for, plain_grey, read_view
from scorpion_build.settings import check_settings, setting
from scorpion_build.slide import Slide

METHODS = ("robust", "orb-affine")
# A refinement that moves tissue further than this from the coarse fit has locked onto
# something else (a fold, a repeated structure); the coarse fit is kept.
MAX_REFINE_UM = 60.0


@dataclass(frozen=True)
class RegisterConfig:
    """Registration settings (every resolution in um/px).

    ``method``: "robust" (optical-density keypoints, orientation search, block refinement)
    or "orb-affine" (the paper's plain ORB + RANSAC affine on a luminance thumbnail).
    ``coarse_mpp``: keypoint resolution; None picks 2-16 um/px from the slide size.
    ``fine_mpp``, ``block_px``, ``max_blocks``, ``passes``: the block refinement.
    ``search``: orientation search, "auto" (when the plain fit is weak), "always", "never".
    """

    method: str = setting(
        "robust",
        "robust: optical-density ORB, orientation search, block refinement; orb-affine: the "
        "paper's plain ORB + RANSAC affine on a thumbnail (for comparison).",
        choices=METHODS,
    )
    coarse_mpp: float | None = setting(
        None, "Keypoint resolution in um/px.", above=0, shown="2-16 um/px from the slide size"
    )
    fine_mpp: float = setting(2.0, "Block refinement resolution in um/px.", above=0)
    block_px: int = setting(160, "Side of a refinement block in px.", minimum=32)
    max_blocks: int = setting(
        24, "Tissue blocks measured by the refinement (more: slower, steadier).", minimum=1
    )
    passes: int = setting(2, "Refinement passes.", minimum=1)
    search: str = setting(
        "auto",
        "Orientation search: when the plain fit is weak (auto), always, or never.",
        choices=("auto", "always", "never"),
    )

    def __post_init__(self) -> None:
        """Every value checked before anything is opened (raises ``OptionError``)."""
        check_settings(self)

    def as_dict(self) -> dict:
        return asdict(self)


def identity_row() -> dict:
    """QC numbers of the reference registered to itself."""
    return {
        "matrix": geo.to_six(geo.identity()),
        "orientation": 0,
        "matches": 0,
        "inliers": 0,
        "inlier_ratio": float("nan"),
        "scale": 1.0,
        "anisotropy": 0.0,
        "shear": 0.0,
        "rotation_deg": 0.0,
        "ncc": 1.0,
        "tissue_overlap": 1.0,
        "residual_um": 0.0,
        "residual_p90_um": 0.0,
        "refine_blocks": 0,
        "refine_model": "none",
        "seconds": 0.0,
        "qc_image": "",
        "status": "ok",
        "message": "reference scan (identity)",
    }


def failed_row(message: str) -> dict:
    row = identity_row()
    row.update(
        matrix=[float("nan")] * 6,
        scale=float("nan"),
        anisotropy=float("nan"),
        shear=float("nan"),
        rotation_deg=float("nan"),
        ncc=float("nan"),
        tissue_overlap=float("nan"),
        residual_um=float("nan"),
        residual_p90_um=float("nan"),
        status="failed",
        message=message,
    )
    return row


def reference_view(ref: Slide, config: RegisterConfig) -> View:
    mpp = config.coarse_mpp or coarse_mpp_for(ref)
    view = read_view(ref, mpp)
    if config.method == "orb-affine":
        view.grey = plain_grey(view.rgb)
    return view


def register_pair(
    ref: Slide,
    mov: Slide,
    config: RegisterConfig,
    ref_view: View | None = None,
    qc_path: Path | None = None,
    label: str = "",
) -> dict:
    """Register ``mov`` to ``ref``; return the QC row (matrix: reference level-0 px -> moving
    level-0 px, docs/contracts.md §2) with status and message. Writes the overlay to ``qc_path``.

    Steps: coarse views of both scans (the reference's may be given, it serves every scan
    of the slide), keypoint affine (:func:`_keypoint_fit`), block refinement
    (:func:`_refine`), QC numbers and overlay (:func:`_qc_row`).
    """
    t0 = time.perf_counter()
    rv = ref_view if ref_view is not None else reference_view(ref, config)
    mv = read_view(mov, rv.mpp)
    if config.method == "orb-affine":
        mv.grey = plain_grey(mv.rgb)
    failed, why = _blank_scan(rv, mv, ref, mov), "no tissue"
    if failed is None:
        best, failed = _keypoint_fit(rv, mv, config)
        why = "no keypoint match"
    if failed is not None:
        _side_by_side(qc_path, rv, mv, f"{label} failed: {why}")
        return _timed(failed, t0)
    # view px -> level-0 px on both sides
    coarse_matrix = geo.compose(mv.to_level0, best.affine, geo.invert(rv.to_level0))
    matrix, refined, notes = _refine(ref, mov, coarse_matrix, rv, config)
    row = _qc_row(ref, mov, rv, mv, matrix, best, refined, notes)
    if qc_path is not None:
        caption = (
            f"{label} {row['status']} o={row['orientation']} inl={best.inliers} "
            f"ncc={row['ncc']:.2f} res={row['residual_um']:.1f}um"
        )
        qc.write_overlay(qc_path, qc.overlay(rv, mv, matrix), caption.strip())
    return _timed(row, t0)


def _blank_scan(rv: View, mv: View, ref: Slide, mov: Slide) -> dict | None:
    """A failed row when either scan shows no tissue (nothing to register), else None."""
    for view, what, slide in ((rv, "reference", ref), (mv, "moving", mov)):
        if view.tissue_mm2 < qc.MIN_TISSUE_MM2:
            return failed_row(
                f"no tissue found in the {what} scan {slide.path} ({view.tissue_mm2:.3f} mm2): "
                "a blank or empty scan; rescan it or drop it from the slide table"
            )
    return None


def _keypoint_fit(
    rv: View, mv: View, config: RegisterConfig
) -> tuple[coarse.CoarseFit, dict | None]:
    """The best keypoint affine between the views, and a failed row when none is plausible."""
    robust = config.method == "robust"
    best, candidates = coarse.register_views(
        rv,
        mv,
        search=config.search if robust else "never",
        method="magsac" if robust else "ransac",
    )
    if best.affine is not None and best.plausible():
        return best, None
    most = max(candidates, key=lambda c: c.inliers)
    tried = "any of the 8 orientations" if len(candidates) > 1 else "the plain fit"
    row = failed_row(
        f"no plausible keypoint match ({most.inliers} inliers of {most.matches} matches "
        f"in {tried}, need {coarse.MIN_INLIERS} at scale ~1): the scan may be of another "
        "slide, blank or badly out of focus; check it and the slide table"
    )
    row.update(matches=most.matches, inliers=most.inliers, inlier_ratio=most.inlier_ratio)
    return best, row


def _refine(
    ref: Slide, mov: Slide, matrix: geo.Affine, rv: View, config: RegisterConfig
) -> tuple[geo.Affine, fine.FineResult, list[str]]:
    """Block refinement of the keypoint ``matrix`` ("robust"), or only its local check
    ("orb-affine"): the final matrix, the refinement (its residuals, um) and notes that
    turn an ok status into warn."""
    if config.method != "robust":
        residuals = fine.local_check(
            ref, mov, matrix, rv, config.fine_mpp, config.block_px, config.max_blocks
        )
        return matrix, fine.FineResult(matrix, 0, 0, residuals, "none"), []
    refined = fine.refine(
        ref, mov, matrix, rv, config.fine_mpp, config.block_px, config.max_blocks, config.passes
    )
    moved_um = _max_shift_um(matrix, refined.affine, rv, float(np.mean(mov.mpp)))
    if refined.model == "none":
        note = (
            "block refinement found no usable tissue blocks; the matrix is the thumbnail "
            f"fit (accurate to ~{2 * rv.mpp:.0f} um)"
        )
        return matrix, refined, [note]
    if moved_um > MAX_REFINE_UM:
        note = (
            f"block refinement disagreed with the keypoint fit by {moved_um:.0f} um and "
            "was discarded; inspect the QC overlay"
        )
        kept = fine.FineResult(matrix, refined.blocks, 0, np.zeros(0), "none")
        return matrix, kept, [note]
    return refined.affine, refined, []


def _qc_row(
    ref: Slide,
    mov: Slide,
    rv: View,
    mv: View,
    matrix: geo.Affine,
    best: coarse.CoarseFit,
    refined: fine.FineResult,
    notes: list[str],
) -> dict:
    """The registration row: matrix, keypoint and refinement counts, geometry, similarity,
    residuals (um), status and message (:func:`scorpion_build.register.qc.judge`)."""
    g = qc.geometry_um(matrix, ref.mpp, mov.mpp)
    ncc, overlap = qc.similarity(rv, mv, matrix)
    res = refined.residuals_um
    row = {
        "matrix": geo.to_six(matrix),
        "orientation": g.orientation,
        "matches": best.matches,
        "inliers": best.inliers,
        "inlier_ratio": best.inlier_ratio,
        "scale": g.scale,
        "anisotropy": g.anisotropy,
        "shear": g.shear,
        "rotation_deg": g.rotation_deg,
        "ncc": ncc,
        "tissue_overlap": overlap,
        "residual_um": float(np.median(res)) if len(res) else float("nan"),
        "residual_p90_um": float(np.percentile(res, 90)) if len(res) else float("nan"),
        "refine_blocks": refined.accepted,
        "refine_model": refined.model,
    }
    status, message = qc.judge(row, mov.mpp[0])
    if notes and status == "ok":
        status = "warn"
    row["status"] = status
    row["message"] = "; ".join([m for m in [message, *notes] if m])
    return row


def _side_by_side(qc_path: Path | None, rv: View, mv: View, caption: str) -> None:
    if qc_path is not None:
        qc.write_overlay(qc_path, qc.side_by_side(rv, mv), caption.strip())


def _timed(row: dict, t0: float) -> dict:
    row["seconds"] = time.perf_counter() - t0
    return row


def _max_shift_um(a: geo.Affine, b: geo.Affine, ref_view: View, mov_mpp: float) -> float:
    """Largest distance (um) between two affines' images of the reference tissue's box."""
    ys, xs = np.nonzero(ref_view.mask)
    if not len(xs):
        return 0.0
    box = geo.box_corners(xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
    pts = geo.apply(ref_view.to_level0, box)
    return float(np.linalg.norm(geo.apply(a, pts) - geo.apply(b, pts), axis=1).max() * mov_mpp)
