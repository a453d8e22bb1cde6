"""Sample tissue regions and write one aligned patch per scanner to ``patches.zarr``.

Steps, each a module you can use alone: :mod:`.config` (the settings), :mod:`.tasks`
(typed payloads from the manifests), :mod:`.given` (regions from a CSV), :mod:`.sample`
(regions on the tissue every scan shows), :mod:`.refine` (a patch's local sub-pixel
alignment to the reference patch), :mod:`.write` (one sample's patches into the store),
:mod:`.store` (the Zarr store), :mod:`.resume` (what a re-run keeps) and :mod:`.build` (a
whole build, in parallel, resumable). Layout: ``docs/contracts.md`` sections 3-4.
"""

from scorpion_build.extract.build import extract_build
from scorpion_build.extract.config import COMPRESSIONS, ExtractConfig
from scorpion_build.extract.given import read_given_regions
from scorpion_build.extract.refine import (
    MAX_CORRECTION_UM,
    REFINE_SCALE,
    Correction,
    estimate_correction,
    refine_patch_offset,
)
from scorpion_build.extract.resume import STORE_VERSION
from scorpion_build.extract.sample import sample_slide
from scorpion_build.extract.tasks import Sample, SampleTask, ScanInput, SlideTask, slide_tasks
from scorpion_build.extract.write import (
    MIN_SIMILARITY,
    extract_sample,
    patch_tissue_fraction,
    region_to_reference,
)
from scorpion_build.sample import MIN_TISSUE_FRACTION

__all__ = [
    "COMPRESSIONS",
    "MAX_CORRECTION_UM",
    "MIN_SIMILARITY",
    "MIN_TISSUE_FRACTION",
    "REFINE_SCALE",
    "STORE_VERSION",
    "Correction",
    "ExtractConfig",
    "Sample",
    "SampleTask",
    "ScanInput",
    "SlideTask",
    "estimate_correction",
    "extract_build",
    "extract_sample",
    "patch_tissue_fraction",
    "read_given_regions",
    "refine_patch_offset",
    "region_to_reference",
    "sample_slide",
    "slide_tasks",
]
