"""Synthetic scanner-paired slides with exact ground truth: the test bed for every stage.

Procedural H&E tissue (or real texture) is scanned by simulated scanners, each with its
own resolution, placement, distortion, stitching and appearance, and written in the
formats real readers meet (Aperio SVS, generic pyramidal TIFF, with or without mpp).
"""

from scorpion_build.synth.config import (
    SCANNER_MPP,
    SCENARIOS,
    Scenario,
    SynthConfig,
    SynthConfigError,
)
from scorpion_build.synth.generate import SLIDE_TABLE, slide_id_for, specimen_for, synthesize
from scorpion_build.synth.labelled import CLASSES, write_labelled_sets
from scorpion_build.synth.placement import ScanGeometry
from scorpion_build.synth.styles import SCANNER_STYLES, ScannerStyle, style_for
from scorpion_build.synth.texture import TextureError, specimen_from_texture
from scorpion_build.synth.tissue import LABEL_NAMES, Specimen, generate_specimen
from scorpion_build.synth.truth import SlideTruth, TruthError, load_truth

__all__ = [
    "CLASSES",
    "LABEL_NAMES",
    "SCANNER_MPP",
    "SCANNER_STYLES",
    "SCENARIOS",
    "SLIDE_TABLE",
    "ScanGeometry",
    "Scenario",
    "ScannerStyle",
    "SlideTruth",
    "Specimen",
    "SynthConfig",
    "SynthConfigError",
    "TextureError",
    "TruthError",
    "generate_specimen",
    "load_truth",
    "slide_id_for",
    "specimen_for",
    "specimen_from_texture",
    "style_for",
    "synthesize",
    "write_labelled_sets",
]
