"""``scorpion-build scan``: slide table -> BUILD/manifests/slides.parquet."""

from __future__ import annotations

from pathlib import Path

import click

from scorpion_build.cli.common import GuardedCommand, reference_option, summarize_and_exit
from scorpion_build.lock import build_lock
from scorpion_build.manifest import BuildDir
from scorpion_build.scan import scan


@click.command("scan", cls=GuardedCommand)
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
def command(source: Path, build: Path, reference: str) -> None:
    """Inspect every scan listed in SOURCE (a directory {slide_id}/{scanner}.{ext} or a CSV
    with columns slide_id,scanner,path[,mpp]) and write the slides manifest."""
    with build_lock(build):
        table = scan(source, reference=reference)
        path = BuildDir.at(build).write("slides", table)
    scanners = sorted(table["scanner"].unique())
    click.echo(
        f"{table['slide_id'].nunique()} slides x scanners {', '.join(scanners)} "
        f"(reference {reference}) -> {path}"
    )
    summarize_and_exit(table, "scan", ["slide_id", "scanner"])
