"""Where a scanner puts the specimen: placement affine, smooth distortion, stitching offsets.

A scan's geometry is the chain, in um,

    specimen u --A--> stage q --(distortion)--> w --(stitching)--> scanner v,  px = v / mpp

``A`` is a rigid placement (rotation, translation, optional 90/180 degree turn or mirror).
The distortion and stitching are defined in the direction the renderer needs them, from
the scanner back to the specimen: a pixel in camera tile k shows stage point
``w = v - e_k``, and ``q = w - d(w)`` with ``d`` a smooth field of a few um. The forward map
solves those two equations (fixed-point iteration, tile consistency), so both directions
agree to numerical precision. Pixel coordinates follow docs/contracts.md §1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from scorpion_build import geometry as geo

_FIXED_POINT_TOL_UM = 1e-9
_FIXED_POINT_MAX_ITER = 100
# a tile and its 8 neighbours, home tile first
_NEIGHBOURS = ((0, 0), (0, -1), (0, 1), (-1, 0), (1, 0), (-1, -1), (-1, 1), (1, -1), (1, 1))


@dataclass(frozen=True)
class Distortion:
    """``d(w)``: for component c, ``sum_i amp[c,i] * sin(kx[c,i] wx + ky[c,i] wy + phase[c,i])``.

    Wave numbers in rad/um, amplitudes in um. A sum of plane waves keeps the field smooth,
    cheap to store exactly, and separable into a matrix product on a pixel grid.
    """

    kx: np.ndarray  # (2, K)
    ky: np.ndarray
    phase: np.ndarray
    amp: np.ndarray

    @classmethod
    def random(
        cls,
        rng: np.random.Generator,
        peak_um: float,
        extent_um: tuple[float, float],
        n_waves: int = 4,
        wavelength_um: tuple[float, float] = (3000.0, 12000.0),
    ) -> Distortion:
        """A random field whose largest displacement over ``extent_um`` is ``peak_um``.

        Wavelengths of millimetres: a scanner's stage and optics bend the image by a few um
        across the slide (strain well under 0.1%), not within one field of view; shorter
        waves would make an 800 um patch itself non-affine, which no scanner does.
        """
        lam = rng.uniform(*wavelength_um, (2, n_waves))
        theta = rng.uniform(0, 2 * np.pi, (2, n_waves))
        k = 2 * np.pi / lam
        field = cls(
            kx=k * np.cos(theta),
            ky=k * np.sin(theta),
            phase=rng.uniform(0, 2 * np.pi, (2, n_waves)),
            amp=rng.uniform(0.5, 1.0, (2, n_waves)),
        )
        xs = np.linspace(0.0, extent_um[0], 96)
        ys = np.linspace(0.0, extent_um[1], 96)
        dx, dy = field.on_grid(xs, ys)
        peak = float(np.sqrt(dx**2 + dy**2).max())
        scale = peak_um / peak if peak > 0 and peak_um > 0 else 0.0
        return cls(field.kx, field.ky, field.phase, field.amp * scale)

    def __call__(self, pts_um: np.ndarray) -> np.ndarray:
        """Displacement (N, 2) um at points (N, 2) um."""
        p = np.asarray(pts_um, dtype=np.float64).reshape(-1, 2)
        out = np.empty_like(p)
        for c in range(2):
            arg = np.outer(p[:, 0], self.kx[c]) + np.outer(p[:, 1], self.ky[c]) + self.phase[c]
            out[:, c] = np.sin(arg) @ self.amp[c]
        return out

    def on_grid(self, xs_um: np.ndarray, ys_um: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Displacement on the grid ``xs_um x ys_um`` as two (len(ys), len(xs)) arrays."""
        out = []
        for c in range(2):
            rows, cols = self.features(xs_um, ys_um, c)
            out.append(rows @ cols.T)
        return out[0], out[1]

    def features(
        self, xs_um: np.ndarray, ys_um: np.ndarray, c: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Row and column features whose product ``rows @ cols.T`` is component ``c`` on the
        grid ``xs_um x ys_um``: sin(a + b) = sin a cos b + cos a sin b makes it separable."""
        ax = np.outer(xs_um, self.kx[c]) + self.phase[c]  # (cols, K)
        by = np.outer(ys_um, self.ky[c])  # (rows, K)
        rows = np.concatenate([np.cos(by), np.sin(by)], axis=1)
        cols = np.concatenate([np.sin(ax) * self.amp[c], np.cos(ax) * self.amp[c]], axis=1)
        return rows, cols

    def to_dict(self) -> dict:
        return {k: getattr(self, k).tolist() for k in ("kx", "ky", "phase", "amp")}

    @classmethod
    def from_dict(cls, d: dict) -> Distortion:
        return cls(*(np.asarray(d[k], dtype=np.float64) for k in ("kx", "ky", "phase", "amp")))


@dataclass(frozen=True)
class Stitching:
    """Camera tiles of ``tile_um`` in the scanner frame, each shifted by ``shifts_um[r, c]``.

    Neighbouring tiles always overlap (each shift exceeds its left / upper neighbour's along
    the seam normal), as when a stitcher misjudges a tile overlap: no stage point goes
    unimaged, except possibly a sub-um sliver at 4-tile corners.
    """

    tile_um: float
    shifts_um: np.ndarray  # (rows, cols, 2)

    @classmethod
    def random(
        cls,
        rng: np.random.Generator,
        extent_um: tuple[float, float],
        tile_um: float,
        step_um: tuple[float, float],
    ) -> Stitching:
        rows = max(1, math.ceil(extent_um[1] / tile_um))
        cols = max(1, math.ceil(extent_um[0] / tile_um))
        ex = np.cumsum(rng.uniform(*step_um, (rows, cols)), axis=1)
        ey = np.cumsum(rng.uniform(*step_um, (rows, cols)), axis=0)
        shifts = np.stack([ex, ey], axis=-1)
        shifts -= shifts.reshape(-1, 2).mean(axis=0)  # no net translation
        return cls(float(tile_um), shifts)

    def tile_of(self, v_um: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tile (row, col) holding scanner points (N, 2) um; edge tiles extend outward."""
        rows, cols = self.shifts_um.shape[:2]
        c = np.clip(np.floor(v_um[:, 0] / self.tile_um), 0, cols - 1).astype(int)
        r = np.clip(np.floor(v_um[:, 1] / self.tile_um), 0, rows - 1).astype(int)
        return r, c

    def remove(self, v_um: np.ndarray) -> np.ndarray:
        """Scanner point -> stage point it shows."""
        r, c = self.tile_of(v_um)
        return v_um - self.shifts_um[r, c]

    def add(self, w_um: np.ndarray) -> np.ndarray:
        """Stage point -> scanner point showing it (inverse of :meth:`remove`)."""
        rows, cols = self.shifts_um.shape[:2]
        r0, c0 = self.tile_of(w_um)
        best = w_um + self.shifts_um[r0, c0]
        best_gap = np.full(len(w_um), np.inf)
        # the home tile first, then its neighbours; the first consistent one wins
        for dr, dc in _NEIGHBOURS:
            r = np.clip(r0 + dr, 0, rows - 1)
            c = np.clip(c0 + dc, 0, cols - 1)
            v = w_um + self.shifts_um[r, c]
            gap = self._distance_to_tile(v, r, c)
            better = gap < best_gap - 1e-12
            best[better] = v[better]
            best_gap[better] = gap[better]
        return best

    def _distance_to_tile(self, v: np.ndarray, r: np.ndarray, c: np.ndarray) -> np.ndarray:
        rows, cols = self.shifts_um.shape[:2]
        t = self.tile_um
        lo_x = np.where(c == 0, -np.inf, c * t)
        hi_x = np.where(c == cols - 1, np.inf, (c + 1) * t)
        lo_y = np.where(r == 0, -np.inf, r * t)
        hi_y = np.where(r == rows - 1, np.inf, (r + 1) * t)
        # a point on the far edge belongs to the next tile (half-open tiles)
        gx = np.maximum(np.maximum(lo_x - v[:, 0], v[:, 0] - hi_x + 1e-12), 0.0)
        gy = np.maximum(np.maximum(lo_y - v[:, 1], v[:, 1] - hi_y + 1e-12), 0.0)
        return np.hypot(gx, gy)

    def to_dict(self) -> dict:
        return {"tile_um": self.tile_um, "shifts_um": self.shifts_um.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> Stitching:
        return cls(float(d["tile_um"]), np.asarray(d["shifts_um"], dtype=np.float64))


@dataclass(frozen=True)
class ScanGeometry:
    """Geometry of one scan: level-0 size, mpp and the specimen <-> pixel maps."""

    mpp: float
    width_px: int
    height_px: int
    placement: np.ndarray  # (2, 3) affine, specimen um -> stage um
    distortion: Distortion | None = None
    stitching: Stitching | None = None

    def specimen_to_px(self, u_um: np.ndarray) -> np.ndarray:
        """Specimen points (N, 2) um -> this scan's level-0 pixel coordinates."""
        q = geo.apply(self.placement, u_um)
        w = q.copy()
        if self.distortion is not None:
            for _ in range(_FIXED_POINT_MAX_ITER):  # w = q + d(w) contracts: |grad d| << 1
                w_next = q + self.distortion(w)
                done = np.max(np.abs(w_next - w), initial=0.0) < _FIXED_POINT_TOL_UM
                w = w_next
                if done:
                    break
        v = self.stitching.add(w) if self.stitching is not None else w
        return v / self.mpp

    def px_to_specimen(self, p_px: np.ndarray) -> np.ndarray:
        """This scan's level-0 pixel coordinates (N, 2) -> specimen points um."""
        v = np.asarray(p_px, dtype=np.float64).reshape(-1, 2) * self.mpp
        w = self.stitching.remove(v) if self.stitching is not None else v
        q = w - self.distortion(w) if self.distortion is not None else w
        return geo.apply(geo.invert(self.placement), q)

    def sample_maps(
        self, row0: int, row1: int, post: np.ndarray, chunk_cols: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """For pixel centres of rows [row0, row1), the point ``post(specimen point)``.

        ``post`` is an affine from specimen um to the caller's frame (e.g. a raster's
        OpenCV coordinates). Returns float32 maps for ``cv2.remap`` of shape
        (n_chunks, rows, chunk_cols): the rows cut into column chunks of ``chunk_cols``
        (default: one chunk of the full width), so a writer gets whole tiles without a
        transposition. They match :meth:`px_to_specimen` to float32 precision.
        """
        chunk = chunk_cols or self.width_px
        n_chunks = -(-self.width_px // chunk)
        m = geo.compose(post, geo.invert(self.placement))
        v_x = (np.arange(self.width_px) + 0.5) * self.mpp
        v_y = (np.arange(row0, row1) + 0.5) * self.mpp
        map_x = np.zeros((n_chunks, row1 - row0, chunk), np.float32)
        map_y = np.zeros_like(map_x)
        for rows, cols, shift in self._blocks(v_x, v_y):
            wx, wy = v_x[cols] - shift[0], v_y[rows] - shift[1]
            # out = M (w - d(w)) as one product of row features by column features
            row_feats = [np.ones_like(wy)[:, None], wy[:, None]]
            col_x = [(m[0, 0] * wx + m[0, 2])[:, None], np.full((len(wx), 1), m[0, 1])]
            col_y = [(m[1, 0] * wx + m[1, 2])[:, None], np.full((len(wx), 1), m[1, 1])]
            if self.distortion is not None:
                for c in range(2):
                    r_c, k_c = self.distortion.features(wx, wy, c)
                    row_feats.append(r_c)
                    col_x.append(-m[0, c] * k_c)
                    col_y.append(-m[1, c] * k_c)
            rf = np.concatenate(row_feats, axis=1).astype(np.float32)
            cx = np.concatenate(col_x, axis=1).astype(np.float32)
            cy = np.concatenate(col_y, axis=1).astype(np.float32)
            for k in range(cols.start // chunk, -(-cols.stop // chunk)):
                j0, j1 = max(cols.start, k * chunk), min(cols.stop, (k + 1) * chunk)
                src = slice(j0 - cols.start, j1 - cols.start)
                dst = slice(j0 - k * chunk, j1 - k * chunk)
                map_x[k, rows, dst] = rf @ cx[src].T
                map_y[k, rows, dst] = rf @ cy[src].T
        return map_x, map_y

    def _blocks(self, v_x: np.ndarray, v_y: np.ndarray):
        """(row slice, col slice, shift um) for each camera tile met by the grid."""
        if self.stitching is None:
            yield slice(0, len(v_y)), slice(0, len(v_x)), np.zeros(2)
            return
        n_rows, n_cols = self.stitching.shifts_um.shape[:2]
        t = self.stitching.tile_um
        r_idx = np.clip(np.floor(v_y / t), 0, n_rows - 1).astype(int)
        c_idx = np.clip(np.floor(v_x / t), 0, n_cols - 1).astype(int)
        for r in np.unique(r_idx):
            rs = np.flatnonzero(r_idx == r)
            for c in np.unique(c_idx):
                cs = np.flatnonzero(c_idx == c)
                yield (
                    slice(rs[0], rs[-1] + 1),
                    slice(cs[0], cs[-1] + 1),
                    self.stitching.shifts_um[r, c],
                )

    def to_dict(self) -> dict:
        return {
            "mpp": self.mpp,
            "width_px": self.width_px,
            "height_px": self.height_px,
            "placement": geo.to_six(self.placement),
            "distortion": None if self.distortion is None else self.distortion.to_dict(),
            "stitching": None if self.stitching is None else self.stitching.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> ScanGeometry:
        return cls(
            mpp=float(d["mpp"]),
            width_px=int(d["width_px"]),
            height_px=int(d["height_px"]),
            placement=geo.from_six(d["placement"]),
            distortion=None if d["distortion"] is None else Distortion.from_dict(d["distortion"]),
            stitching=None if d["stitching"] is None else Stitching.from_dict(d["stitching"]),
        )


def padded_size_px(extent_um: float, mpp: float, multiple: int) -> int:
    """Pixels needed to cover ``extent_um``, rounded up to ``multiple`` so every pyramid
    level has an exact integer downsample."""
    return max(multiple, math.ceil(extent_um / mpp / multiple) * multiple)


def reference_geometry(
    width_um: float, height_um: float, mpp: float, multiple: int
) -> ScanGeometry:
    """The reference scan defines the specimen frame: no turn, distortion or stitching."""
    return ScanGeometry(
        mpp=mpp,
        width_px=padded_size_px(width_um, mpp, multiple),
        height_px=padded_size_px(height_um, mpp, multiple),
        placement=geo.identity(),
    )


def random_geometry(
    rng: np.random.Generator,
    specimen_um: tuple[float, float],
    mpp: float,
    multiple: int,
    *,
    scenarios: tuple[str, ...] = (),
    max_rotation_deg: float = 3.0,
    max_margin_um: float = 200.0,
    distortion_um: float = 3.0,
    stitch_tile_um: tuple[float, float] = (1000.0, 2000.0),
    stitch_shift_um: tuple[float, float] = (0.5, 1.5),
) -> ScanGeometry:
    """Geometry of a non-reference scan of a ``specimen_um = (width, height)`` specimen.

    The field of view holds the whole placed specimen plus a random margin of up to
    ``max_margin_um`` per side, unless the ``partial`` scenario crops it.
    """
    w_um, h_um = specimen_um
    quarter_turns = {"rot90": 1, "rot180": 2}
    turns = sum(quarter_turns.get(s, 0) for s in scenarios) % 4
    lin = geo.rotation_deg(float(rng.uniform(-max_rotation_deg, max_rotation_deg)))
    lin = geo.compose(lin, geo.rotation_deg(90.0 * turns))
    if "mirror" in scenarios:
        lin = geo.compose(lin, geo.scaling(-1.0, 1.0))
    corners = geo.apply(lin, geo.box_corners(0.0, 0.0, w_um, h_um))
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    margin_lo = rng.uniform(0.1, 1.0, 2) * max_margin_um
    margin_hi = rng.uniform(0.1, 1.0, 2) * max_margin_um
    extent = hi - lo + margin_lo + margin_hi
    offset = margin_lo - lo
    if "partial" in scenarios:
        # the field of view ends 35-60% of the way across the specimen, from a random side
        axis = int(rng.integers(2))
        cut = float(rng.uniform(0.35, 0.6)) * (hi - lo)[axis]
        if rng.random() < 0.5:
            offset[axis] -= (hi - lo)[axis] - cut
        extent[axis] = margin_lo[axis] + cut
    placement = geo.compose(geo.translation(*offset), lin)
    width_px = padded_size_px(float(extent[0]), mpp, multiple)
    height_px = padded_size_px(float(extent[1]), mpp, multiple)
    fov_um = (width_px * mpp, height_px * mpp)
    distortion = Distortion.random(rng, distortion_um, fov_um) if distortion_um > 0 else None
    tile_um = float(rng.uniform(*stitch_tile_um))
    stitching = (
        Stitching.random(rng, fov_um, tile_um, stitch_shift_um) if stitch_shift_um[1] > 0 else None
    )
    return ScanGeometry(mpp, width_px, height_px, placement, distortion, stitching)
