"""``scorpion-build run PIPELINE.yaml``: every stage in order, resumable, local or distributed."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from scorpion_build import logs
from scorpion_build.cli.common import GuardedCommand, force_option, log_options, scheduler_option
from scorpion_build.pipeline import ConfigError, load_config, run_pipeline
from scorpion_build.pipeline.config import STAGES


@click.command("run", cls=GuardedCommand)
@click.argument("pipeline", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--from", "start", type=click.Choice(STAGES), help="First stage to run.")
@click.option("--until", type=click.Choice(STAGES), help="Last stage to run.")
@scheduler_option
@force_option
@log_options()
def command(
    pipeline: Path, start: str | None, until: str | None, scheduler: str | None, force: bool
) -> None:
    """Run the stages configured in PIPELINE (YAML), skipping unchanged ones."""
    try:
        config = load_config(pipeline)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    logs.use_folder(config.build_dir)
    echo = click.echo if logs.show_progress() else (lambda _line: None)
    results = run_pipeline(
        config, start=start, until=until, scheduler=scheduler, force=force, echo=echo
    )
    build = config.build_dir
    log_path = logs.use_folder(build)
    echo(f"\nresults in {build}:")
    for label, rel in (
        ("log", log_path.relative_to(build) if log_path else None),
        ("manifests", "manifests"),
        ("patches", "patches.zarr"),
        ("release", config.export.dir if config.export else None),
        ("QC pictures", "qc"),
        ("report", "report/index.html"),
    ):
        if rel and (build / rel).exists():
            echo(f"  {label:12s} {build / rel}")
    if any(r.failed for r in results):
        click.echo(
            f"some items failed: see the summary above and the log {log_path}",
            err=True,
        )
        sys.exit(1)
