"""``scorpion-build benchmark``: how consistent is a model across scanners."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

import click

from scorpion_build import logs
from scorpion_build.cli.common import GuardedCommand, device_option, log, log_options, seed_option
from scorpion_build.metrics import DEFAULT_THRESHOLD


def _classes(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise click.BadParameter("give class names separated by commas")
    return names


DATA_LABELS = "\0data"  # --labels given without a folder


def _labels(ctx: click.Context, param: click.Parameter, value: str | None) -> Path | bool | None:
    if value is None or value == DATA_LABELS:
        return value == DATA_LABELS or None
    path = Path(value)
    if not path.is_dir():
        raise click.BadParameter(f"{path}: no such folder of label.png ground truth")
    return path


@click.command("benchmark", cls=GuardedCommand)
@click.option(
    "--data",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="Build directory, patches.zarr store, or release folder slide_i/sample_j/<scanner>.jpg.",
)
@click.option(
    "--model",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Checkpoint from `scorpion-build train` (RUN/best.pt, config in best.json beside it) "
    "or a TorchScript file.",
)
@click.option(
    "--predictions",
    type=click.Path(exists=True, path_type=Path),
    help="Precomputed predictions: Zarr (N, S, H, W) class indices, or release folder of PNGs.",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder for report.json, pairs.csv, report.md, figures, predictions.zarr.",
)
@click.option(
    "--labels",
    is_flag=False,
    flag_value=DATA_LABELS,
    callback=_labels,
    help="Adds task Dice per scanner. Alone: the data's own label maps (the `labels` array "
    "of `extract --annotations`, or labels/<scanner>.png of its export). With a folder: "
    "slide_i/sample_j/label.png ground truth.",
)
@click.option(
    "--classes",
    callback=_classes,
    help="Comma-separated class names; their number is C in the class mean (default: from "
    "the checkpoint or the predictions' `classes` attr, else "
    "background,cancer_area,cancer_stroma).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Inference batch.",
)
@device_option
@click.option("--amp/--no-amp", default=True, show_default=True, help="float16 autocast on CUDA.")
@click.option(
    "--threshold",
    type=click.FloatRange(0.0, 1.0),
    default=DEFAULT_THRESHOLD,
    show_default=True,
    help="A sample whose worst scanner pair has Dice below this counts as a failure.",
)
@click.option(
    "--bootstrap",
    "n_bootstrap",
    type=click.IntRange(min=0),
    default=1000,
    show_default=True,
    help="Bootstrap resamples over samples for 95% intervals (0: none).",
)
@seed_option
@click.option(
    "--worst",
    "n_worst",
    type=click.IntRange(min=0),
    default=6,
    show_default=True,
    help="Samples in the worst-samples montage.",
)
@click.option("--force", is_flag=True, help="Re-run inference even if predictions.zarr is done.")
@log_options("out_dir")
def command(
    data: Path,
    model: Path | None,
    predictions: Path | None,
    out_dir: Path,
    labels: Path | bool | None,
    classes: list[str] | None,
    batch_size: int,
    device: str,
    amp: bool,
    threshold: float,
    n_bootstrap: int,
    seed: int,
    n_worst: int,
    force: bool,
) -> None:
    """Measure a model's consistency across scanners on a scanner-paired dataset.

    For every scanner pair, Dice between the two predictions on the same tissue, per sample
    and class; reports the average and minimum over pairs (the SCORPION paper's numbers),
    per-class tables, the failure rate and bootstrap intervals.
    """
    from scorpion_build.benchmark import run_benchmark
    from scorpion_build.lock import build_lock

    if (model is None) == (predictions is None):
        raise click.UsageError("pass exactly one of --model or --predictions")
    # a build being read must not be rewritten meanwhile: hold its lock (if it is a build)
    holder = build_lock(data, readonly_ok=True) if (data / "manifests").is_dir() else nullcontext()
    with holder:
        result = run_benchmark(
            data,
            out_dir,
            model=model,
            predictions=predictions,
            labels=labels,
            classes=classes,
            batch_size=batch_size,
            device=device,
            amp=amp,
            threshold=threshold,
            n_bootstrap=n_bootstrap,
            seed=seed,
            n_worst=n_worst,
            force=force,
            progress=logs.show_progress(),
        )
    _print_summary(result.report, threshold)
    click.echo(f"report: {result.files['report']}")


def _print_summary(report: dict[str, Any], threshold: float) -> None:
    """Warnings to the log; the pairs, average, minimum, failure rate and task Dice to stdout."""
    from scorpion_build.bench.report import fmt_interval, fmt_number

    for warning in report.get("warnings", []):
        log.warning("%s", warning)
    click.echo(
        f"{report['n_samples']} samples x {len(report['scanners'])} scanners "
        f"({', '.join(report['scanners'])}), {len(report['pairwise'])} pairs"
    )
    for pair in report["pairwise"]:
        click.echo(
            f"  {pair['a']:>10s} - {pair['b']:<10s} "
            f"Dice {fmt_number(pair['dice'], 4)}  n={pair['n']}"
        )
    click.echo(
        f"average {fmt_number(report['average'], 4)} {fmt_interval(report['average_ci'])}   "
        f"minimum {fmt_number(report['minimum'], 4)} {fmt_interval(report['minimum_ci'])}"
    )
    click.echo(
        f"failure rate (worst pair < {threshold}) {fmt_number(report['failure_rate'])} "
        f"{fmt_interval(report['failure_rate_ci'])}"
    )
    if report.get("task_dice"):
        task = report["task_dice"]
        per = ", ".join(f"{k} {fmt_number(v['dice'])}" for k, v in task["per_scanner"].items())
        click.echo(f"task Dice vs labels: average {fmt_number(task['average'])} ({per})")
    if report["missing"]:
        click.echo(f"{len(report['missing'])} (sample, scanner) patches missing: see report.json")
