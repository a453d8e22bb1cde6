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
from scorpion_build.register import METHODS, RegisterConfig, register_build


@click.command("register", cls=GuardedCommand)
@click.argument("build", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--reference",
    default=None,
    help="Reference scanner (default: the one `scan --reference` chose).",
)
@click.option(
    "--method",
    type=click.Choice(METHODS),
    default="robust",
    show_default=True,
    help="robust: optical-density ORB, orientation search, block refinement; "
    "orb-affine: the paper's plain ORB + RANSAC affine on a thumbnail (for comparison).",
)
@click.option(
    "--coarse-mpp",
    type=float,
    default=None,
    help="Keypoint resolution in um/px (default: 2-16 um/px from the slide size).",
)
@click.option(
    "--fine-mpp",
    type=float,
    default=2.0,
    show_default=True,
    help="Block refinement resolution in um/px.",
)
@click.option(
    "--max-blocks",
    type=int,
    default=RegisterConfig.max_blocks,
    show_default=True,
    help="Tissue blocks measured by the refinement (more: slower, steadier).",
)
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
