"""The settings of an extraction: what one store of patches is built with."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from scorpion_build.options import OptionError, check_choice, check_number
from scorpion_build.sample import MIN_TISSUE_FRACTION

COMPRESSIONS = ("zstd", "jpeg", "none")


@dataclass(frozen=True)
class ExtractConfig:
    """Extraction settings, every one checked on creation (raises ``OptionError``).

    Attributes
    ----------
    regions : regions sampled per slide.
    region_um : side of a square region, um (reference scan).
    size : side of a patch, px; the output resolution is ``region_um / size`` um/px.
    seed : sampling seed.
    min_tissue : tissue fraction (0..1) a region needs, common to all scans.
    refine : refine every non-reference patch locally (:mod:`.refine`).
    compression : chunk codec, one of :data:`COMPRESSIONS` (``docs/contracts.md`` section 4):
        ``zstd`` lossless Blosc/Zstd, ``jpeg`` lossy q95, ``none``.
    """

    regions: int = 10
    region_um: float = 800.0
    size: int = 1024
    seed: int = 0
    min_tissue: float = MIN_TISSUE_FRACTION
    refine: bool = True
    compression: str = "zstd"

    def __post_init__(self) -> None:
        check_number("regions", self.regions, minimum=1, integer=True)
        check_number("region_um", self.region_um, above=0)
        check_number("size", self.size, minimum=16, maximum=16384, integer=True)
        check_number("seed", self.seed, minimum=0, integer=True)
        check_number("min_tissue", self.min_tissue, minimum=0, maximum=1)
        if not isinstance(self.refine, bool):
            raise OptionError("refine", self.refine, "must be true or false")
        check_choice("compression", self.compression, COMPRESSIONS)

    @property
    def mpp(self) -> float:
        """Output resolution, um/px."""
        return self.region_um / self.size

    def key(self) -> str:
        """A 12-hex digest of every setting (the store's ``config_key`` attribute)."""
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]
