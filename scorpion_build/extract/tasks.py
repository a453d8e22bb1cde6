"""Typed payloads of extraction's tasks, built from the slides and registrations manifests.

A :class:`SlideTask` carries everything a worker needs about one slide (its scans, their
registrations to the reference, its annotations); a :class:`SampleTask` pairs it with one
sampled region. Both are frozen: a worker never changes what it was given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from scorpion_build import geometry as geo
from scorpion_build.annotations import Annotation, AnnotationSet
from scorpion_build.manifest import BuildDir
from scorpion_build.scan import file_changed
from scorpion_build.slide import Slide


@dataclass(frozen=True)
class ScanInput:
    """One scan of a slide as extraction sees it.

    Attributes
    ----------
    path, reader : where and how to open it (the slides manifest's columns).
    mpp : (x, y) um per level-0 px.
    matrix : six numbers, reference level-0 px -> this scan's level-0 px
        (``docs/contracts.md`` section 2); identity for the reference.
    status : ``ok`` or ``failed`` (then ``message`` says why: scan, registration, or a
        file changed since scan).
    """

    path: str
    reader: str
    mpp: tuple[float, float]
    matrix: tuple[float, ...]
    status: str = "ok"
    message: str = ""

    @property
    def usable(self) -> bool:
        return self.status != "failed"

    @property
    def registration(self) -> geo.Affine:
        """Reference level-0 px -> this scan's level-0 px (3x3)."""
        return geo.from_six(self.matrix)

    def open(self) -> Slide:
        return Slide(self.path, reader=self.reader, mpp=self.mpp)


@dataclass(frozen=True)
class SlideTask:
    """One slide: its scans by scanner name, and what sampling and labels need.

    ``annotations`` is None when the build has no annotations (no ``labels`` array), else
    this slide's (possibly none); ``roi`` holds the class indices regions must lie in.
    """

    slide_id: str
    reference: str
    scans: dict[str, ScanInput]
    annotations: tuple[Annotation, ...] | None = None
    roi: tuple[int, ...] = ()

    def others(self) -> list[str]:
        """The usable non-reference scanners, in the order of ``scans``."""
        return [s for s, v in self.scans.items() if v.usable and s != self.reference]


@dataclass(frozen=True)
class Sample:
    """One sampled region to extract: its position ``index`` in the store's first axis and
    its top-left corner in reference um."""

    index: int
    sample_id: str
    slide_id: str
    region_index: int
    x_um: float
    y_um: float

    @classmethod
    def from_row(cls, row: dict) -> Sample:
        """From a regions-manifest row with its store ``index``."""
        return cls(
            int(row["index"]),
            str(row["sample_id"]),
            str(row["slide_id"]),
            int(row["region_index"]),
            float(row["x_um"]),
            float(row["y_um"]),
        )

    def row(self) -> dict:
        """The columns every patch row of this sample starts with."""
        return {
            "index": self.index,
            "sample_id": self.sample_id,
            "slide_id": self.slide_id,
            "region_index": self.region_index,
        }


@dataclass(frozen=True)
class SampleTask:
    """The work of one extract task: one sample of one slide."""

    task: SlideTask
    sample: Sample


def slide_tasks(build: BuildDir) -> tuple[list[SlideTask], list[str], str]:
    """One task per slide from the slides and registrations manifests, the scanners in
    store order (reference first, then sorted) and the reference scanner."""
    slides = build.read("slides")
    regs = build.read("registrations")
    refs = slides[slides["is_reference"]]
    if refs.empty:
        raise ValueError(f"{build.manifest('slides')}: no reference scans; re-run scan")
    reference = str(refs["scanner"].iloc[0])
    scanners = [reference] + sorted(s for s in slides["scanner"].unique() if s != reference)
    reg_by = {(r.slide_id, r.scanner): r for r in regs.itertuples()}
    tasks = []
    for slide_id, group in slides.groupby("slide_id", sort=True):
        scans = {
            row.scanner: _scan_input(row, reg_by.get((slide_id, row.scanner)))
            for row in group.itertuples()
        }
        tasks.append(SlideTask(slide_id, reference, scans))
    return tasks, scanners, reference


def _scan_input(row: Any, reg: Any | None) -> ScanInput:
    """A slides-manifest row and its registrations row (None if missing), both pandas
    ``itertuples`` rows, as a ScanInput."""
    status, message = "ok", ""
    changed = file_changed(row._asdict())
    if row.status == "failed":
        status, message = "failed", f"scan failed: {row.message}"
    elif changed:
        status, message = "failed", changed
    elif reg is None:
        status, message = "failed", "not registered; run scorpion-build register"
    elif reg.status == "failed":
        status, message = "failed", f"registration failed: {reg.message}"
    matrix = reg.matrix if reg is not None else geo.to_six(geo.identity())
    return ScanInput(
        path=row.path,
        reader=row.reader,
        mpp=(float(row.mpp_x), float(row.mpp_y)),
        matrix=tuple(float(v) for v in matrix),
        status=status,
        message=message,
    )


def with_annotations(
    tasks: Sequence[SlideTask],
    annotations: AnnotationSet | None,
    roi_classes: tuple[str, ...],
    regions_from: Path | None,
) -> tuple[list[SlideTask], str]:
    """The tasks with each slide's annotations and the ROI classes, and what the resume key
    needs of them ("" without annotations)."""
    if roi_classes and annotations is None:
        raise ValueError("--roi-class needs --annotations DIR to know where the classes are")
    if roi_classes and regions_from is not None:
        raise ValueError("--roi-class samples regions; --regions-from gives them: use one")
    if annotations is None:
        return list(tasks), ""
    roi = annotations.class_indices(list(roi_classes)) if roi_classes else []
    tasks = [
        replace(t, annotations=tuple(annotations.by_slide.get(t.slide_id, [])), roi=tuple(roi))
        for t in tasks
    ]
    return tasks, f"{annotations.digest}:{roi}"
