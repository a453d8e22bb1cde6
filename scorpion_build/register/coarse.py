"""Coarse registration on whole-slide views: ORB keypoints, ratio-test matching, a robust
affine, and a search over the 8 dihedral orientations (slides go in rotated or mirrored).

ORB: Rublee et al., ICCV 2011. Ratio test: Lowe, IJCV 2004. MAGSAC++: Barath et al., CVPR
2020 (OpenCV USAC). All affines here map *reference view px -> moving view px*, in the
project's pixel convention (OpenCV's keypoint coordinates are converted once, on detection).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from scorpion_build import geometry as geo
from scorpion_build.register.thumbs import View, tissue_similarity, warp_to

# Below this many robust inliers an affine on thumbnails is not trustworthy.
MIN_INLIERS = 8
# A first fit with at least this many inliers, plausible scale and similar images is kept
# without trying other orientations.
STRONG_INLIERS = 40
STRONG_NCC = 0.6
# Views share one um/px, so the fitted scale must be ~1; anything outside is a wrong fit.
PLAUSIBLE_SCALE = (0.8, 1.25)


# ORB is rotation-invariant, so a rotated scan usually gives a strong plain fit already and
# a mirrored one a strong fit at index 4: try those first and stop at the first strong fit.
SEARCH_ORDER = (0, 4, 2, 6, 1, 3, 5, 7)


@dataclass
class Features:
    xy: np.ndarray  # (N, 2) keypoint positions, project convention, view px
    desc: np.ndarray  # (N, 32) uint8 ORB descriptors


@dataclass
class CoarseFit:
    """One candidate alignment of two views.

    ``affine`` maps reference view px -> moving view px (None when no fit was possible).
    ``orientation`` is the dihedral index the moving view was re-oriented with before
    matching (the search's own bookkeeping; the scan's orientation is derived from the
    final matrix).
    """

    affine: geo.Affine | None
    orientation: int
    matches: int
    inliers: int
    ncc: float

    @property
    def inlier_ratio(self) -> float:
        return self.inliers / self.matches if self.matches else 0.0

    @property
    def score(self) -> float:
        # inliers say the geometry is consistent, NCC says the images agree; either alone
        # can be fooled (repetitive texture, symmetric outlines)
        return self.inliers * max(self.ncc, 0.0)

    def plausible(self) -> bool:
        if self.affine is None or self.inliers < MIN_INLIERS:
            return False
        s_max, s_min = geo.linear_scales(self.affine)
        return PLAUSIBLE_SCALE[0] <= s_min and s_max <= PLAUSIBLE_SCALE[1]


def detect(grey: np.ndarray, mask: np.ndarray | None, n_features: int = 4000) -> Features:
    """ORB keypoints and descriptors on a uint8 image, restricted to ``mask`` (dilated a
    little so tissue edges, which carry most of the low-resolution structure, count)."""
    orb = cv2.ORB_create(nfeatures=n_features, scaleFactor=1.2, nlevels=6, fastThreshold=5)
    cv_mask = None
    if mask is not None:
        cv_mask = cv2.dilate(mask.astype(np.uint8) * 255, np.ones((7, 7), np.uint8))
    kps, desc = orb.detectAndCompute(grey, cv_mask)
    if desc is None or not kps:
        return Features(np.zeros((0, 2)), np.zeros((0, 32), np.uint8))
    # OpenCV puts pixel centres at integers; ours are at +0.5
    xy = np.array([kp.pt for kp in kps], dtype=np.float64) + 0.5
    return Features(xy, desc)


def match(a: Features, b: Features, ratio: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """Indices (ia, ib) of matches that pass Lowe's ratio test."""
    if len(a.xy) < 2 or len(b.xy) < 2:
        return np.zeros(0, int), np.zeros(0, int)
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
    pairs = matcher.knnMatch(a.desc, b.desc, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < ratio * p[1].distance]
    ia = np.array([m.queryIdx for m in good], dtype=int)
    ib = np.array([m.trainIdx for m in good], dtype=int)
    return ia, ib


def fit_affine(
    src_xy: np.ndarray, dst_xy: np.ndarray, threshold_px: float = 3.0, method: str = "magsac"
) -> tuple[geo.Affine | None, np.ndarray]:
    """Robust affine src -> dst (project convention) and its inlier mask.

    ``method`` is "magsac" (OpenCV USAC MAGSAC++) or "ransac". Points are in one pixel
    convention on both sides, so no OpenCV shift is needed for the estimate itself.
    """
    n = len(src_xy)
    if n < 3:
        return None, np.zeros(n, bool)
    flag = cv2.USAC_MAGSAC if method == "magsac" else cv2.RANSAC
    m, inl = cv2.estimateAffine2D(
        src_xy.astype(np.float32).reshape(-1, 1, 2),
        dst_xy.astype(np.float32).reshape(-1, 1, 2),
        method=flag,
        ransacReprojThreshold=threshold_px,
        maxIters=5000,
        confidence=0.999,
    )
    if m is None or inl is None:
        return None, np.zeros(n, bool)
    return m.astype(np.float64), inl.ravel().astype(bool)


def fit_views(
    ref_feats: Features,
    mov_feats: Features,
    ref_od: np.ndarray,
    ref_mask: np.ndarray,
    mov_od: np.ndarray,
    mov_mask: np.ndarray,
    orientation: int = 0,
    method: str = "magsac",
    ratio: float = 0.8,
) -> CoarseFit:
    """Match, fit and score one candidate; ``mov_*`` already re-oriented by ``orientation``."""
    ia, ib = match(ref_feats, mov_feats, ratio)
    affine, inl = fit_affine(ref_feats.xy[ia], mov_feats.xy[ib], method=method)
    if affine is None:
        return CoarseFit(None, orientation, len(ia), 0, 0.0)
    score, _ = tissue_similarity(ref_od, ref_mask, mov_od, mov_mask, affine)
    return CoarseFit(affine, orientation, len(ia), int(inl.sum()), score)


def orient_view(image: np.ndarray, index: int) -> tuple[np.ndarray, geo.Affine]:
    """Re-orient an image with dihedral ``index``; returns it and the affine original px ->
    re-oriented px (exact: nearest-neighbour on a 90-degree grid)."""
    h, w = image.shape[:2]
    o = geo.orientation(index, w, h)
    out_w, out_h = (h, w) if index % 2 else (w, h)
    return warp_to(image, geo.invert(o), (out_w, out_h), interpolation=cv2.INTER_NEAREST), o


def register_views(
    ref: View,
    mov: View,
    search: str = "auto",
    method: str = "magsac",
    n_features: int = 4000,
) -> tuple[CoarseFit, list[CoarseFit]]:
    """Best coarse alignment of two views at the same um/px (reference px -> moving px).

    ``search``: "auto" tries the 8 orientations (in :data:`SEARCH_ORDER`) while the fits are
    weak, "always" tries them all and keeps the best, "never" keeps the plain fit. Returns
    the chosen fit and every candidate tried.
    """
    ref_feats = detect(ref.grey, ref.mask, n_features)
    candidates: list[CoarseFit] = []
    order = [0] if search == "never" else SEARCH_ORDER
    for k in order:
        mov_grey, o = orient_view(mov.grey, k)
        mov_mask = orient_view(mov.mask.astype(np.uint8), k)[0].astype(bool)
        mov_od = orient_view(mov.od, k)[0]
        feats = detect(mov_grey, mov_mask, n_features)
        fit = fit_views(ref_feats, feats, ref.od, ref.mask, mov_od, mov_mask, k, method)
        if fit.affine is not None:
            # back to the un-oriented moving view: ref px -> oriented px -> moving px
            fit.affine = geo.compose(geo.invert(o), fit.affine)
        candidates.append(fit)
        if search == "auto" and _strong(fit):
            break
    plausible = [c for c in candidates if c.plausible()]
    pool = plausible or candidates
    best = max(pool, key=lambda c: (c.score, c.inliers))
    return best, candidates


def _strong(fit: CoarseFit) -> bool:
    return fit.plausible() and fit.inliers >= STRONG_INLIERS and fit.ncc >= STRONG_NCC


def nearest_orientation(linear: np.ndarray) -> int:
    """Dihedral index k whose rotation/mirror is closest to a 2x2 linear part.

    k follows :func:`scorpion_build.geometry.orientation`: the moving scan shows the
    reference turned by orientation k (0-3: 0/90/180/270 degrees clockwise, 4-7: mirrored
    left-right first).
    """
    lin = np.asarray(linear, dtype=np.float64)[:2, :2]
    lin = lin / np.sqrt(abs(np.linalg.det(lin)) or 1.0)
    dists = [np.abs(geo.orientation(k, 1.0, 1.0)[:, :2] - lin).sum() for k in range(8)]
    return int(np.argmin(dists))
