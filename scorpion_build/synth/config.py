"""What to synthesise: the scanner set, slide size, scenarios and seeds, validated in one place."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# Level-0 resolution of each SCORPION scanner (um/px) as its files report it.
SCANNER_MPP: dict[str, float] = {
    "AT2": 0.2526,
    "GT450": 0.263,
    "DP200": 0.25,
    "P1000": 0.243,
    "Philips": 0.25,
}
DEFAULT_SCANNERS: tuple[str, ...] = ("AT2", "GT450", "DP200", "P1000", "Philips")
# Scanners written as Aperio SVS; the rest become generic pyramidal TIFFs.
DEFAULT_SVS_SCANNERS: tuple[str, ...] = ("AT2", "GT450")
# Written without resolution tags, so the slide table must supply their mpp.
DEFAULT_NO_MPP_SCANNERS: tuple[str, ...] = ("P1000",)
DEFAULT_MPP = 0.25  # for scanner names outside SCANNER_MPP
# With ``native``: each scanner's own container (docs/contracts.md, "Synthetic containers").
NATIVE_CONTAINERS: dict[str, str] = {
    "AT2": "svs",
    "GT450": "svs",
    "DP200": "bif",
    "P1000": "mirax",
    "Philips": "philips",
}
CONTAINER_SUFFIX = {"svs": "svs", "tiff": "tif", "bif": "bif", "philips": "tiff", "mirax": "mrxs"}
# Containers made of overlapping camera images (their level-0 size is the camera grid's).
CAMERA_CONTAINERS = frozenset({"bif", "mirax"})
# Most pixels a side of the specimen raster every scan is resampled from: OpenCV's remap
# addresses its source with 16-bit integers, and memory grows with its area.
MAX_SPECIMEN_PX = 10_000

SCENARIOS: dict[str, str] = {
    "rot90": "scan rotated by 90 degrees",
    "rot180": "scan rotated by 180 degrees",
    "mirror": "scan mirrored left-right (slide loaded face down)",
    "strong-stain": "large stain, colour and blur difference to the reference",
    "partial": "field of view that misses part of the tissue",
    "blank": "scan with no tissue (registration must fail)",
    "unrelated": "scan of a different specimen (registration must fail)",
}
# Scenarios after which the ground-truth map no longer describes the pixels.
FAILURE_SCENARIOS = frozenset({"blank", "unrelated"})

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class SynthConfigError(ValueError):
    """A synthesis setting that cannot work, with what to change."""


@dataclass(frozen=True)
class Scenario:
    """A scenario applied to one or all non-reference scanners of one or all slides.

    Parameters
    ----------
    name : one of :data:`SCENARIOS`.
    scanner : scanner it applies to; ``None`` means every non-reference scanner.
    slide : 0-based slide index it applies to; ``None`` means every slide.
    """

    name: str
    scanner: str | None = None
    slide: int | None = None

    @classmethod
    def parse(cls, text: str) -> Scenario:
        """Parse ``NAME[:SCANNER[:SLIDE]]``, e.g. ``rot90``, ``mirror:GT450``, ``blank:P1000:1``."""
        parts = text.split(":")
        if not 1 <= len(parts) <= 3 or not parts[0]:
            raise SynthConfigError(
                f"scenario {text!r}: write NAME, NAME:SCANNER or NAME:SCANNER:SLIDE_INDEX"
            )
        scanner = parts[1] if len(parts) > 1 and parts[1] not in ("", "*") else None
        slide = None
        if len(parts) == 3 and parts[2] not in ("", "*"):
            try:
                slide = int(parts[2])
            except ValueError:
                raise SynthConfigError(
                    f"scenario {text!r}: slide index {parts[2]!r} is not an integer"
                ) from None
        return cls(parts[0], scanner, slide)

    def applies(self, slide_index: int, scanner: str) -> bool:
        return (self.slide is None or self.slide == slide_index) and (
            self.scanner is None or self.scanner == scanner
        )


@dataclass(frozen=True)
class SynthConfig:
    """Settings for :func:`scorpion_build.synth.synthesize`; every length is in um.

    The defaults give 2 slides x 5 scanners of 1.6 x 1.2 mm at the scanners' real
    resolution (about 15 CPU seconds); tests shrink the slides further.
    """

    n_slides: int = 2
    scanners: tuple[str, ...] = DEFAULT_SCANNERS
    reference: str = "AT2"
    width_um: float = 1600.0
    height_um: float = 1200.0
    seed: int = 0
    # scanner -> level-0 um/px; missing names fall back to SCANNER_MPP, then DEFAULT_MPP
    scanner_mpp: Mapping[str, float] = field(default_factory=dict)
    svs_scanners: tuple[str, ...] = DEFAULT_SVS_SCANNERS
    # (only generic TIFFs can lack an mpp: every native container carries one)
    no_mpp_scanners: tuple[str, ...] = DEFAULT_NO_MPP_SCANNERS
    # resolution of the specimen raster every scan is resampled from
    canonical_mpp: float = 0.5
    texture: Path | None = None
    texture_mpp: float | None = None
    scenarios: tuple[Scenario, ...] = ()
    # placement of non-reference scans
    max_rotation_deg: float = 3.0
    max_margin_um: float = 200.0
    distortion_um: float = 3.0
    stitch_tile_um: tuple[float, float] = (1000.0, 2000.0)
    stitch_shift_um: tuple[float, float] = (0.5, 1.5)
    # file layout
    tile_px: int = 256
    downsample: int = 4
    compression: str = "jpeg"  # or "deflate"
    native: bool = False  # scanners' own containers (NATIVE_CONTAINERS)
    # labelled sets for the trainer
    labelled: bool = False
    n_train: int = 64
    n_paired_slides: int = 2
    paired_samples: int = 5
    patch_px: int = 256
    patch_mpp: float = 0.78125

    def mpp_of(self, scanner: str) -> float:
        return float(self.scanner_mpp.get(scanner, SCANNER_MPP.get(scanner, DEFAULT_MPP)))

    def container_of(self, scanner: str) -> str:
        """ "svs", "tiff", "bif" (Ventana) or "philips" (Philips TIFF) for this scanner."""
        if self.native and scanner in NATIVE_CONTAINERS:
            return NATIVE_CONTAINERS[scanner]
        return "svs" if scanner in self.svs_scanners else "tiff"

    def writes_mpp(self, scanner: str) -> bool:
        """Whether the scan's file carries its mpp (else the slide table supplies it)."""
        return not (scanner in self.no_mpp_scanners and self.container_of(scanner) == "tiff")

    def specimen_mpp(self) -> float:
        """um/px of the specimen raster: ``canonical_mpp``, coarsened for large slides so
        the raster stays within :data:`MAX_SPECIMEN_PX` a side (bounded memory)."""
        return max(self.canonical_mpp, max(self.width_um, self.height_um) / MAX_SPECIMEN_PX)

    def scenarios_for(self, slide_index: int, scanner: str) -> tuple[str, ...]:
        """Scenario names that apply to this scan, in a fixed order (the reference gets none)."""
        if scanner == self.reference:
            return ()
        names = {s.name for s in self.scenarios if s.applies(slide_index, scanner)}
        return tuple(n for n in SCENARIOS if n in names)

    def validate(self) -> SynthConfig:
        """Raise :class:`SynthConfigError` naming the setting and the fix; return self."""
        if self.n_slides < 1:
            raise SynthConfigError("--slides must be at least 1")
        if len(set(self.scanners)) != len(self.scanners) or not self.scanners:
            raise SynthConfigError(f"--scanners {','.join(self.scanners)}: list distinct names")
        for name in self.scanners:
            if not _NAME_RE.match(name):
                raise SynthConfigError(
                    f"scanner name {name!r} is not usable as a file name; use letters, digits, "
                    "'_', '-' or '.'"
                )
        if self.reference not in self.scanners:
            raise SynthConfigError(
                f"--reference {self.reference} is not among --scanners {','.join(self.scanners)}"
            )
        for name in self.scanners:
            if not self.mpp_of(name) > 0:
                raise SynthConfigError(f"mpp of scanner {name} must be positive")
        if self.texture is None and (self.width_um <= 0 or self.height_um <= 0):
            raise SynthConfigError("--width-um and --height-um must be positive")
        if self.texture is not None and not Path(self.texture).exists():
            raise SynthConfigError(f"--texture {self.texture}: file not found")
        if not 0.1 <= self.canonical_mpp <= 4.0:
            raise SynthConfigError("canonical_mpp must lie in [0.1, 4] um/px")
        if max(self.width_um, self.height_um) > 100_000:
            raise SynthConfigError(
                f"a {self.width_um:g} x {self.height_um:g} um specimen is larger than a glass "
                "slide (75 x 25 mm); use at most 100000 um a side"
            )
        if self.tile_px % 16 or self.tile_px < 16:
            raise SynthConfigError("tile_px must be a positive multiple of 16 (e.g. 256, 512)")
        if self.downsample not in (2, 4):
            raise SynthConfigError("downsample must be 2 or 4")
        if self.compression not in ("jpeg", "deflate"):
            raise SynthConfigError("compression must be 'jpeg' or 'deflate'")
        for sc in self.scenarios:
            if sc.name not in SCENARIOS:
                raise SynthConfigError(
                    f"unknown scenario {sc.name!r}; choose from {', '.join(SCENARIOS)}"
                )
            if sc.scanner is not None and sc.scanner not in self.scanners:
                raise SynthConfigError(
                    f"scenario {sc.name}: scanner {sc.scanner} is not among --scanners"
                )
            if sc.scanner == self.reference:
                raise SynthConfigError(
                    f"scenario {sc.name}: scenarios apply to non-reference scanners, "
                    f"not the reference {self.reference}"
                )
            if sc.slide is not None and not 0 <= sc.slide < self.n_slides:
                raise SynthConfigError(
                    f"scenario {sc.name}: slide index {sc.slide} outside 0..{self.n_slides - 1}"
                )
        if self.labelled and (self.patch_px < 32 or self.patch_mpp <= 0):
            raise SynthConfigError("--patch-px must be >= 32 and --patch-mpp positive")
        if self.labelled and (self.n_train < 1 or self.n_paired_slides < 1):
            raise SynthConfigError("--n-train and the number of paired slides must be >= 1")
        return self
