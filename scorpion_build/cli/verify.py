"""``scorpion-build verify``: every written patch is in patches.zarr as it was written."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from scorpion_build.cli.common import EXIT_FAILED, GuardedCommand, log_options, parallel_options
from scorpion_build.verify import verify_build


@click.command("verify", cls=GuardedCommand)
@click.argument("build", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--repair", is_flag=True, help="Re-extract the patches that do not check out.")
@parallel_options
@log_options("build")
def command(build: Path, repair: bool, workers: int | None, scheduler: str | None) -> None:
    """Check that every patch of BUILD that is not `failed` has its chunk in patches.zarr
    and decodes to the checksum in patches.parquet; with --repair, re-extract those that
    do not (and only those). Exits 1 while problems remain."""
    checked, problems = verify_build(build, repair=repair, workers=workers, scheduler=scheduler)
    for row in problems.itertuples():
        click.echo(f"  BAD    {row.sample_id} {row.scanner}: {row.problem}")
    if problems.empty:
        click.echo(f"verify: {checked} patches checked, all match their checksums")
        return
    hint = "" if repair else f"; repair with `scorpion-build verify {build} --repair`"
    click.echo(f"verify: {checked} patches checked, {len(problems)} bad{hint}")
    sys.exit(EXIT_FAILED)
