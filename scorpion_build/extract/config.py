"""The settings of an extraction: what one store of patches is built with."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from scorpion_build.sample import MIN_TISSUE_FRACTION
from scorpion_build.settings import check_settings, setting

COMPRESSIONS = ("zstd", "jpeg", "none")


@dataclass(frozen=True)
class ExtractConfig:
    """Extraction settings, each declared once (:mod:`scorpion_build.settings`: the CLI
    options and the pipeline's ``extract`` keys come from these fields) and checked on
    creation (raises ``OptionError``).

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

    regions: int = setting(10, "Regions per slide.", minimum=1)
    region_um: float = setting(800.0, "Region side in um.", above=0)
    size: int = setting(1024, "Patch side in px.", minimum=16, maximum=16384)
    seed: int = setting(0, "Sampling seed.", minimum=0)
    min_tissue: float = setting(
        MIN_TISSUE_FRACTION,
        "Minimum tissue fraction of a region (common to all scans).",
        minimum=0,
        maximum=1,
    )
    refine: bool = setting(
        True,
        "Refine each patch locally against the reference patch; --no-refine skips it.",
        flag="--no-refine",
    )
    compression: str = setting(
        "zstd",
        "Zarr chunk compression: lossless Blosc/Zstd, JPEG q95 (lossy, ~10x smaller; "
        "imagecodecs' Zarr JPEG codec), or none.",
        choices=COMPRESSIONS,
    )

    def __post_init__(self) -> None:
        check_settings(self)

    @property
    def mpp(self) -> float:
        """Output resolution, um/px."""
        return self.region_um / self.size

    def key(self) -> str:
        """A 12-hex digest of every setting (the store's ``config_key`` attribute)."""
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class ExtractInputs:
    """Files an extraction reads besides the build: regions and annotations."""

    regions_from: str | None = setting(
        None, "CSV slide_id,x_um,y_um[,region_um]: use these regions (reference um)."
    )
    annotations: str | None = setting(
        None,
        "Folder of {slide_id}.geojson (QuPath export, reference level-0 px): adds a "
        "`labels` array, one label map per sample and scanner.",
    )
    classes: str | None = setting(
        None,
        "JSON list of class names fixing their order (index 0 = background).",
        shown="background, then the annotated names sorted",
        requires="annotations",
    )
    roi_class: list[str] = setting(
        [],
        "Sample regions only inside annotations of this class (repeatable).",
        requires="annotations",
        excludes="regions_from",
    )

    def __post_init__(self) -> None:
        check_settings(self)
