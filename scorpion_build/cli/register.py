"""``scorpion-build register``: every scan -> its reference scan; registrations.parquet + QC."""

from __future__ import annotations

from pathlib import Path

import click

from scorpion_build.cli.common import (
    GuardedCommand,
    force_option,
    log,
    log_options,
    parallel_options,
    summarize_and_exit,
)
from scorpion_build.register import RegisterConfig, register_build
from scorpion_build.settings import click_option


@click.command("register", cls=GuardedCommand)
@click.argument("build", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--reference",
    default=None,
    help="Reference scanner (default: the one `scan --reference` chose).",
)
@click_option(RegisterConfig, "method")
@click_option(RegisterConfig, "coarse_mpp")
@click_option(RegisterConfig, "fine_mpp")
@click_option(RegisterConfig, "max_blocks")
@parallel_options
@force_option
@log_options("build")
def command(
    build: Path,
    reference: str | None,
    method: str,
    coarse_mpp: float | None,
    fine_mpp: float,
    max_blocks: int,
    workers: int | None,
    scheduler: str | None,
    force: bool,
) -> None:
    """Register every scan in BUILD (from `scorpion-build scan`) to the reference scanner's
    scan of the same slide; write BUILD/manifests/registrations.parquet and QC overlays in
    BUILD/qc/register/. Finished pairs are skipped on a re-run unless --force."""
    config = RegisterConfig(
        method=method, coarse_mpp=coarse_mpp, fine_mpp=fine_mpp, max_blocks=max_blocks
    )
    table = register_build(
        build,
        reference=reference,
        config=config,
        workers=workers,
        scheduler=scheduler,
        force=force,
    )
    log.info("registrations -> %s", build / "manifests" / "registrations.parquet")
    summarize_and_exit(table, "register", ["slide_id", "scanner"])
