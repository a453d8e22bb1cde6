"""``scorpion-build analyze``: paired/unpaired analysis, figures and the HTML report."""

from __future__ import annotations

from pathlib import Path

import click

from scorpion_build.cli.common import GuardedCommand, device_option, force_option, log_options
from scorpion_build.pipeline.config import AnalyzeStage
from scorpion_build.settings import click_option


@click.command("analyze", cls=GuardedCommand)
@click.argument("build", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click_option(AnalyzeStage, "features")
@click_option(AnalyzeStage, "weights", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--benchmark",
    "benchmark_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Benchmark output folder (report.json + figures); default BUILD/benchmark if present.",
)
@device_option
@force_option
@log_options("build")
def command(
    build: Path,
    features: str,
    weights: Path | None,
    benchmark_dir: Path | None,
    device: str,
    force: bool,
) -> None:
    """Analyse BUILD (colour and feature shifts per scanner, paired to the reference,
    registration and alignment QC, benchmark results) and write BUILD/report/index.html."""
    from scorpion_build.analysis import analyze_build  # heavy imports only when run
    from scorpion_build.lock import build_lock
    from scorpion_build.manifest import BuildDir

    if weights is not None and features == "none":
        raise click.UsageError("--weights is only used with --features resnet50")
    with build_lock(build):
        bd = BuildDir.at(build)
        bd.refuse_links(bd.report, bd.root / "analysis")
        path = analyze_build(
            build,
            features=features,
            weights=weights,
            benchmark_dir=benchmark_dir,
            device=device,
            force=force,
        )
    click.echo(f"report: {path}")
