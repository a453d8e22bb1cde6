"""Affines and the pixel convention (docs/contracts.md §1-2), in one place.

Convention: continuous coordinates with the origin at the top-left corner of the top-left
pixel; pixel (row i, col j) covers [j, j+1) x [i, i+1), centre (j + 0.5, i + 0.5). A level-k
coordinate times the level's per-axis downsample is the level-0 coordinate, exactly.

Affines are 2x3 float64 arrays ``[[a, b, c], [d, e, f]]``: ``x' = a x + b y + c``,
``y' = d x + e y + f``; stored in manifests as the six floats row-major.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

Affine = np.ndarray  # (2, 3) float64


def identity() -> Affine:
    return np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def translation(tx: float, ty: float) -> Affine:
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty]])


def scaling(sx: float, sy: float | None = None) -> Affine:
    sy = sx if sy is None else sy
    return np.array([[sx, 0.0, 0.0], [0.0, sy, 0.0]])


def rotation_deg(angle_deg: float, cx: float = 0.0, cy: float = 0.0) -> Affine:
    """Rotation by ``angle_deg`` (clockwise on screen, since y points down) about (cx, cy)."""
    t = np.deg2rad(angle_deg)
    c, s = np.cos(t), np.sin(t)
    m = np.array([[c, -s, 0.0], [s, c, 0.0]])
    return compose(translation(cx, cy), m, translation(-cx, -cy))


def to3(m: Affine) -> np.ndarray:
    return np.vstack([np.asarray(m, dtype=np.float64).reshape(2, 3), [0.0, 0.0, 1.0]])


def compose(*affines: Affine) -> Affine:
    """``compose(A, B, C)`` maps p to A(B(C(p))) (right-most applied first)."""
    out = np.eye(3)
    for m in affines:
        out = out @ to3(m)
    return out[:2].copy()


def invert(m: Affine) -> Affine:
    return np.linalg.inv(to3(m))[:2].copy()


def apply(m: Affine, pts_xy: np.ndarray) -> np.ndarray:
    """Map (N, 2) points (x, y) through the affine."""
    pts = np.asarray(pts_xy, dtype=np.float64).reshape(-1, 2)
    m = np.asarray(m, dtype=np.float64).reshape(2, 3)
    return pts @ m[:, :2].T + m[:, 2]


def to_six(m: Affine) -> list[float]:
    return [float(v) for v in np.asarray(m, dtype=np.float64).reshape(6)]


def from_six(values: Sequence[float]) -> Affine:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size != 6:
        raise ValueError(f"an affine needs 6 numbers [a, b, c, d, e, f], got {arr.size}")
    return arr.reshape(2, 3).copy()


def to_opencv(m: Affine) -> Affine:
    """Express an affine for OpenCV, whose pixel centres sit at integer coordinates.

    ``M_cv = T(-0.5) . M . T(+0.5)``: a point at OpenCV coordinate u is our x = u + 0.5;
    map it with M, then subtract 0.5 again.
    """
    return compose(translation(-0.5, -0.5), m, translation(0.5, 0.5))


def from_opencv(m_cv: Affine) -> Affine:
    """Inverse of :func:`to_opencv` (e.g. for affines estimated on OpenCV keypoints)."""
    return compose(translation(0.5, 0.5), m_cv, translation(-0.5, -0.5))


def warp_to(
    image: np.ndarray,
    dst_to_src: Affine,
    size: tuple[int, int],
    fill: float = 0,
    interpolation: int = cv2.INTER_LINEAR,
) -> np.ndarray:
    """Resample ``image`` into a new frame: every warp in the project goes through here.

    Parameters
    ----------
    image : ndarray
        (H, W) or (H, W, C) source pixels.
    dst_to_src : Affine
        Maps output-frame px to ``image`` px, in our pixel convention (the OpenCV half-pixel
        shift of :func:`to_opencv` is applied here).
    size : (int, int)
        Output ``(width, height)`` in px.
    fill : float
        Value of output pixels that fall outside ``image``, in every channel.
    interpolation : int
        An OpenCV ``INTER_*`` flag (``INTER_NEAREST`` for label maps and masks).
    """
    return cv2.warpAffine(
        image,
        to_opencv(dst_to_src),
        (int(size[0]), int(size[1])),
        flags=interpolation | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(fill,) * 4,  # a bare scalar would fill only the first channel
    )


def linear_scales(m: Affine) -> tuple[float, float]:
    """Singular values (largest, smallest) of the linear part: the stretch along each axis."""
    s = np.linalg.svd(np.asarray(m, dtype=np.float64).reshape(2, 3)[:, :2], compute_uv=False)
    return float(s[0]), float(s[1])


def decompose(m: Affine) -> dict[str, float]:
    """Scale, rotation (deg), shear and reflection of an affine's linear part.

    Uses ``L = R(theta) . [[sx, k], [0, sy]]`` with ``det < 0`` meaning a mirror (sy < 0).
    ``shear`` is ``k / sx`` (dimensionless).
    """
    a, b, _, d, e, _ = np.asarray(m, dtype=np.float64).reshape(6)
    sx = float(np.hypot(a, d))
    theta = float(np.degrees(np.arctan2(d, a)))
    det = a * e - b * d
    sy = det / sx if sx else 0.0
    k = (a * b + d * e) / sx if sx else 0.0
    return {
        "scale_x": sx,
        "scale_y": abs(sy),
        "rotation_deg": theta,
        "shear": k / sx if sx else 0.0,
        "mirrored": bool(det < 0),
    }


def orientation(index: int, width: float, height: float) -> Affine:
    """One of the 8 dihedral orientations of a ``width x height`` image, as an affine.

    ``index`` 0..3 rotate by 0/90/180/270 degrees, 4..7 do the same after a horizontal
    mirror. The result maps original pixel coordinates into the re-oriented image's frame
    (whose size is (height, width) for odd rotations).
    """
    if not 0 <= index < 8:
        raise ValueError("orientation index must be in 0..7")
    m = identity()
    if index >= 4:
        m = compose(np.array([[-1.0, 0.0, width], [0.0, 1.0, 0.0]]), m)
    w, h = width, height
    for _ in range(index % 4):
        # 90 degrees clockwise on screen: (x, y) -> (h - y, x)
        m = compose(np.array([[0.0, -1.0, h], [1.0, 0.0, 0.0]]), m)
        w, h = h, w
    return m


def level_to_level0(pts_xy: np.ndarray, downsample_xy: tuple[float, float]) -> np.ndarray:
    return np.asarray(pts_xy, dtype=np.float64) * np.asarray(downsample_xy, dtype=np.float64)


def level0_to_level(pts_xy: np.ndarray, downsample_xy: tuple[float, float]) -> np.ndarray:
    return np.asarray(pts_xy, dtype=np.float64) / np.asarray(downsample_xy, dtype=np.float64)


def box_corners(x: float, y: float, w: float, h: float) -> np.ndarray:
    return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], dtype=np.float64)
