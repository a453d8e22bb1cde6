"""Register every scan of a slide to the reference scanner's scan, with quality control.

Steps, each a module you can use alone: :mod:`.thumbs` (views at a chosen um/px),
:mod:`.coarse` (ORB keypoints, robust affine, orientation search), :mod:`.fine` (block-wise
phase correlation, outlier-block rejection), :mod:`.qc` (metrics, status, overlays),
:mod:`.pair` (one scan to its reference), :mod:`.tasks` (typed task payloads, the worker)
and :mod:`.pipeline` (a whole build, in parallel, resumable).
"""

from scorpion_build.register.pair import METHODS, RegisterConfig, register_pair
from scorpion_build.register.pipeline import register_build
from scorpion_build.register.tasks import RegisterTask, Scan, register_scan

__all__ = [
    "METHODS",
    "RegisterConfig",
    "RegisterTask",
    "Scan",
    "register_build",
    "register_pair",
    "register_scan",
]
