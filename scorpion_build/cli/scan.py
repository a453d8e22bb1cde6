"""``scorpion-build scan``: slide table -> BUILD/manifests/slides.parquet."""

from __future__ import annotations

from pathlib import Path

import click

from scorpion_build.cli.common import reference_option, summarize_and_exit
from scorpion_build.manifest import BuildDir
from scorpion_build.scan import SlideTableError, scan


@click.command("scan")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option(
    "-o",
    "--out",
    "build",
    required=True,
    type=click.Path(path_type=Path),
    help="Build directory to write manifests/slides.parquet into.",
)
@reference_option
@click.option(
    "--ignore",
    multiple=True,
    metavar="GLOB",
    help="Directory SOURCE: drop entries whose name or path under SOURCE matches (repeatable).",
)
def command(source: Path, build: Path, reference: str, ignore: tuple[str, ...]) -> None:
    """Inspect every scan listed in SOURCE (a directory {slide_id}/{scanner}.{ext} or a CSV
    with columns slide_id,scanner,path[,mpp]) and write the slides manifest.

    In a directory, X.ome.tif gives scanner X, X.mrxs with its folder X/ is one scan, a folder
    of .dcm files is one DICOM scan; label/overview pictures and other files are skipped with
    a note (docs/own-dataset.md)."""
    skipped: list[str] = []
    try:
        table = scan(source, reference=reference, ignore=ignore, skipped=skipped)
    except SlideTableError as exc:
        raise click.ClickException(str(exc)) from exc
    for note in skipped:
        click.echo(f"  note: {note}")
    path = BuildDir.at(build).write("slides", table)
    scanners = sorted(table["scanner"].unique())
    click.echo(
        f"{table['slide_id'].nunique()} slides x scanners {', '.join(scanners)} "
        f"(reference {reference}) -> {path}"
    )
    summarize_and_exit(table, "scan", ["slide_id", "scanner"])
