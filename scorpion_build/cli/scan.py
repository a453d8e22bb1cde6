"""``scorpion-build scan``: slide table -> BUILD/manifests/slides.parquet; ``--show BUILD``
prints what was read from every scan."""

from __future__ import annotations

from pathlib import Path

import click

from scorpion_build.cli.common import (
    GuardedCommand,
    log,
    log_options,
    reference_option,
    summarize_and_exit,
)
from scorpion_build.lock import build_lock
from scorpion_build.manifest import BuildDir
from scorpion_build.scan import scan


@click.command("scan", cls=GuardedCommand)
@click.argument("source", required=False, type=click.Path(exists=True, path_type=Path))
@click.option(
    "-o",
    "--out",
    "build",
    type=click.Path(path_type=Path),
    help="Build directory to write manifests/slides.parquet into.",
)
@click.option(
    "--show",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    metavar="BUILD",
    help="Print the scan table of BUILD (vendor, container, reader, mpp and its source, "
    "levels, size; overrides and problems flagged) and exit.",
)
@reference_option
@click.option(
    "--ignore",
    multiple=True,
    metavar="GLOB",
    help="Directory SOURCE: drop entries whose name or path under SOURCE matches (repeatable).",
)
@log_options("build")
def command(
    source: Path | None,
    build: Path | None,
    show: Path | None,
    reference: str,
    ignore: tuple[str, ...],
) -> None:
    """Inspect every scan listed in SOURCE (a directory {slide_id}/{scanner}.{ext} or a CSV
    with columns slide_id,scanner,path[,mpp]) and write the slides manifest; with
    --show BUILD, print what was read from every scan of BUILD instead.

    In a directory, X.ome.tif gives scanner X, X.mrxs with its folder X/ is one scan, a folder
    of .dcm files is one DICOM scan; label/overview pictures and other files are skipped with
    a note (docs/own-dataset.md)."""
    if show is not None:
        if source is not None or build is not None:
            raise click.UsageError("--show BUILD only prints; give no SOURCE or --out with it")
        show_scans(show)
        return
    if source is None or build is None:
        raise click.UsageError("give SOURCE and -o/--out BUILD (or --show BUILD)")
    skipped: list[str] = []
    with build_lock(build):
        table = scan(source, reference=reference, ignore=ignore, skipped=skipped)
        path = BuildDir.at(build).write("slides", table)
    for note in skipped:
        log.info("  note: %s", note)
    scanners = sorted(table["scanner"].unique())
    log.info(
        "%d slides x scanners %s (reference %s) -> %s",
        table["slide_id"].nunique(),
        ", ".join(scanners),
        reference,
        path,
    )
    summarize_and_exit(table, "scan", ["slide_id", "scanner"])


def show_scans(build: Path) -> None:
    from scorpion_build.report.scans import format_table, scan_rows

    bd = BuildDir.at(build)
    if not bd.manifest("slides").is_file():
        raise click.ClickException(
            f"{bd.manifest('slides')} not found; run `scorpion-build scan SOURCE -o {build}` first"
        )
    rows = scan_rows(bd.read("slides"))

    def style(line: str, flagged: bool) -> str:
        return click.style(line, fg="yellow", bold=True) if flagged else line

    for line in format_table(rows, style):
        click.echo(line)
