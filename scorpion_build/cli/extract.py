"""``scorpion-build extract``: sample regions and write aligned patches to patches.zarr."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import pandas as pd

from scorpion_build.annotations import AnnotationSet, load_build_annotations
from scorpion_build.cli.common import (
    GuardedCommand,
    force_option,
    log,
    log_options,
    parallel_options,
    summarize_and_exit,
)
from scorpion_build.extract import ExtractConfig, extract_build
from scorpion_build.extract.config import ExtractInputs
from scorpion_build.manifest import BuildDir
from scorpion_build.settings import click_option


@click.command("extract", cls=GuardedCommand)
@click.argument("build", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click_option(ExtractConfig, "regions")
@click_option(ExtractConfig, "region_um")
@click_option(ExtractConfig, "size")
@click_option(ExtractConfig, "seed")
@click_option(ExtractConfig, "min_tissue")
@click_option(
    ExtractInputs, "regions_from", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click_option(
    ExtractInputs,
    "annotations",
    "annotations_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
)
@click_option(
    ExtractInputs,
    "classes",
    "class_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@click_option(ExtractInputs, "roi_class", "roi_classes")
@click_option(ExtractConfig, "refine")
@click_option(ExtractConfig, "compression")
@parallel_options
@force_option
@log_options("build")
def command(
    build: Path,
    regions: int,
    region_um: float,
    size: int,
    seed: int,
    min_tissue: float,
    regions_from: Path | None,
    annotations_dir: Path | None,
    class_file: Path | None,
    roi_classes: tuple[str, ...],
    no_refine: bool,
    compression: str,
    workers: int | None,
    scheduler: str | None,
    force: bool,
) -> None:
    """Sample tissue regions in the reference scan of every slide in BUILD and write one
    aligned patch per scanner to BUILD/patches.zarr (resumable)."""
    ExtractInputs(  # how the input options combine, checked before anything is read
        regions_from=_text(regions_from),
        annotations=_text(annotations_dir),
        classes=_text(class_file),
        roi_class=list(roi_classes),
    )
    config = ExtractConfig(
        regions=regions,
        region_um=region_um,
        size=size,
        seed=seed,
        min_tissue=min_tissue,
        refine=not no_refine,
        compression=compression,
    )
    annotations = _annotations(build, annotations_dir, class_file)
    regions_df, patches = extract_build(
        build,
        config,
        workers=workers,
        scheduler=scheduler,
        regions_from=regions_from,
        force=force,
        annotations=annotations,
        roi_classes=roi_classes,
    )
    _report(build, config, regions_df, patches, annotations)


def _text(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _annotations(
    build: Path, annotations_dir: Path | None, class_file: Path | None
) -> AnnotationSet | None:
    """``--annotations`` (and ``--classes``) read against the build's slides."""
    if annotations_dir is None:
        return None
    slides = BuildDir.at(build).read("slides")
    return load_build_annotations(slides, annotations_dir, class_file)


def _report(
    build: Path,
    config: ExtractConfig,
    regions: pd.DataFrame,
    patches: pd.DataFrame,
    annotations: AnnotationSet | None,
) -> None:
    """Log what was written, draw the slide maps, and exit 1 on failures."""
    n = patches["index"].nunique() if len(patches) else 0
    log.info(
        "%d samples x %d scanners at %.5g um/px -> %s",
        n,
        patches["scanner"].nunique() if n else 0,
        config.mpp,
        build / "patches.zarr",
    )
    _slide_maps(build)
    if annotations is not None:
        table = pd.DataFrame(annotations.rows)
        summarize_and_exit(table, "annotations", ["slide_id", "feature"], exit_on_failure=False)
        log.info("labels (%s) -> %s", ", ".join(annotations.classes), build / "patches.zarr")
    summarize_and_exit(regions, "regions", ["slide_id", "region_index"])
    summarize_and_exit(patches, "patches", ["sample_id", "scanner"])
    if annotations is not None and (table["status"] == "failed").any():
        sys.exit(1)  # features were left out: the build is done, but say so


def _slide_maps(build: Path) -> None:
    """Where the regions landed on every scan, in BUILD/qc/slides/ (also in the report)."""
    from scorpion_build.report.slidemaps import write_slide_maps
    from scorpion_build.report.summary import load_manifests

    maps = write_slide_maps(build, load_manifests(BuildDir.at(build)))
    drawn = sum(m["path"] is not None for m in maps)
    log.info("%d slide maps -> %s", drawn, BuildDir.at(build).qc / "slides")
