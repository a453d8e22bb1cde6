"""Ground truth of a synthetic slide: the exact reference -> scanner pixel maps, and labels.

``OUT_DIR/truth/{slide_id}.json`` holds every scan's geometry (placement affine, distortion
waves, stitching shifts), appearance and scenarios; ``{slide_id}.labels.png`` the class map
of the specimen. :func:`load_truth` turns them back into a :class:`SlideTruth`, whose maps
are the very ones the renderer sampled with. Coordinates follow docs/contracts.md §1 (continuous,
pixel (i, j) covers [j, j+1) x [i, i+1)); affines follow docs/contracts.md §2.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from scorpion_build import geometry as geo
from scorpion_build.files import write_text_atomic
from scorpion_build.synth.config import FAILURE_SCENARIOS
from scorpion_build.synth.placement import ScanGeometry

TRUTH_DIR = "truth"
FORMAT_VERSION = 1


class TruthError(ValueError):
    """Missing or unreadable ground truth, with the file named."""


@dataclass
class SlideTruth:
    """Exact geometry of every scan of one synthetic slide.

    Attributes
    ----------
    slide_id, reference : the slide and its reference scanner.
    geometries : scanner -> :class:`ScanGeometry` (specimen um <-> level-0 px).
    scenarios : scanner -> scenario names applied to that scan.
    labels : (h, w) uint8 class map of the specimen (0 background, 1 cancer area,
        2 cancer stroma), pixel (i, j) covering [j, j+1) x [i, i+1) * ``labels_mpp`` um.
    labels_mpp : um per label pixel.
    styles : scanner -> appearance parameters (for reports; not needed for geometry).
    """

    slide_id: str
    reference: str
    geometries: dict[str, ScanGeometry]
    scenarios: dict[str, tuple[str, ...]]
    labels: np.ndarray
    labels_mpp: float
    styles: dict[str, dict] = field(default_factory=dict)

    @property
    def scanners(self) -> list[str]:
        return list(self.geometries)

    def mpp(self, scanner: str) -> float:
        return self._geometry(scanner).mpp

    def size_px(self, scanner: str) -> tuple[int, int]:
        """Level-0 (width, height) of the scan."""
        g = self._geometry(scanner)
        return g.width_px, g.height_px

    def expect_failure(self, scanner: str) -> bool:
        """True when the scan shows no tissue or another specimen (``blank``, ``unrelated``):
        registration should fail, and the maps below describe no pixels."""
        return bool(FAILURE_SCENARIOS.intersection(self.scenarios.get(scanner, ())))

    def ref_to_scanner(self, scanner: str, pts_xy: np.ndarray) -> np.ndarray:
        """Reference level-0 px (N, 2) -> this scanner's level-0 px (N, 2), exact."""
        ref = self._geometry(self.reference)
        return self._geometry(scanner).specimen_to_px(ref.px_to_specimen(pts_xy))

    def scanner_to_ref(self, scanner: str, pts_xy: np.ndarray) -> np.ndarray:
        """This scanner's level-0 px (N, 2) -> reference level-0 px (N, 2), exact."""
        ref = self._geometry(self.reference)
        return ref.specimen_to_px(self._geometry(scanner).px_to_specimen(pts_xy))

    def affine(self, scanner: str) -> np.ndarray:
        """(2, 3) affine part of :meth:`ref_to_scanner` (mpp scale, rotation, flip, shift).

        The distortion waves and the stitching shifts both have zero mean, so this is what
        an affine registration should recover; the rest is a few um of local residual.
        """
        ref, g = self._geometry(self.reference), self._geometry(scanner)
        return geo.compose(
            geo.scaling(1.0 / g.mpp),
            g.placement,
            geo.invert(ref.placement),
            geo.scaling(ref.mpp),
        )

    def tissue_points(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` random points on tissue (at least one label pixel from any glass), in
        reference level-0 px (N, 2)."""
        tissue = (self.labels > 0).astype(np.uint8)
        inner = cv2.erode(tissue, np.ones((3, 3), np.uint8))
        rows, cols = np.nonzero(inner if inner.any() else tissue)
        if len(rows) == 0:
            raise TruthError(f"slide {self.slide_id}: the label map has no tissue")
        pick = rng.integers(0, len(rows), n)
        um = (np.stack([cols[pick], rows[pick]], axis=1) + rng.random((n, 2))) * self.labels_mpp
        return self._geometry(self.reference).specimen_to_px(um)

    def label_at(self, scanner: str, pts_xy: np.ndarray) -> np.ndarray:
        """Class at scanner level-0 px (N, 2) (nearest label pixel; 0 off the specimen)."""
        um = self._geometry(scanner).px_to_specimen(pts_xy)
        idx = np.floor(um / self.labels_mpp).astype(int)
        h, w = self.labels.shape
        ok = (idx[:, 0] >= 0) & (idx[:, 0] < w) & (idx[:, 1] >= 0) & (idx[:, 1] < h)
        out = np.zeros(len(um), np.uint8)
        out[ok] = self.labels[idx[ok, 1], idx[ok, 0]]
        return out

    def save(self, out_dir: str | Path) -> Path:
        """Write ``truth/{slide_id}.json`` and ``truth/{slide_id}.labels.png``."""
        folder = Path(out_dir) / TRUTH_DIR
        folder.mkdir(parents=True, exist_ok=True)
        label_file = folder / f"{self.slide_id}.labels.png"
        if not cv2.imwrite(str(label_file), self.labels):
            raise TruthError(f"{label_file}: could not write the label map")
        doc = {
            "format_version": FORMAT_VERSION,
            "slide_id": self.slide_id,
            "reference": self.reference,
            "convention": "level-0 px (docs/contracts.md §1); affines [a,b,c,d,e,f] (§2)",
            "labels_file": label_file.name,
            "labels_mpp": self.labels_mpp,
            "scanners": {
                s: {
                    "geometry": g.to_dict(),
                    "scenarios": list(self.scenarios.get(s, ())),
                    "affine": geo.to_six(self.affine(s)),
                    "expect_failure": self.expect_failure(s),
                    "style": self.styles.get(s, {}),
                }
                for s, g in self.geometries.items()
            },
        }
        return write_text_atomic(folder / f"{self.slide_id}.json", json.dumps(doc, indent=1))

    def _geometry(self, scanner: str) -> ScanGeometry:
        try:
            return self.geometries[scanner]
        except KeyError:
            raise KeyError(
                f"slide {self.slide_id} has no scanner {scanner!r}; it has {self.scanners}"
            ) from None


def load_truth(out_dir: str | Path, slide_id: str) -> SlideTruth:
    """Read the ground truth :func:`scorpion_build.synth.synthesize` wrote for a slide."""
    path = Path(out_dir) / TRUTH_DIR / f"{slide_id}.json"
    if not path.exists():
        raise TruthError(
            f"{path}: no ground truth for slide {slide_id!r}; run `scorpion-build synth` "
            f"into {out_dir} first, or check the slide id"
        )
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise TruthError(f"{path}: not valid JSON ({exc}); regenerate the synthetic set") from exc
    if doc.get("format_version") != FORMAT_VERSION:
        raise TruthError(f"{path}: truth format {doc.get('format_version')} is not supported")
    label_file = path.parent / doc["labels_file"]
    labels = cv2.imread(str(label_file), cv2.IMREAD_UNCHANGED)
    if labels is None:
        raise TruthError(f"{label_file}: missing or unreadable label map; regenerate the set")
    scanners = doc["scanners"]
    return SlideTruth(
        slide_id=doc["slide_id"],
        reference=doc["reference"],
        geometries={s: ScanGeometry.from_dict(v["geometry"]) for s, v in scanners.items()},
        scenarios={s: tuple(v["scenarios"]) for s, v in scanners.items()},
        labels=labels,
        labels_mpp=float(doc["labels_mpp"]),
        styles={s: v.get("style", {}) for s, v in scanners.items()},
    )
