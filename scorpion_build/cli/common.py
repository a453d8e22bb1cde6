"""Click options shared by several commands, defined once."""

from __future__ import annotations

import sys
from collections.abc import Callable

import click
import pandas as pd

reference_option = click.option(
    "--reference", default="AT2", show_default=True, help="Reference scanner name."
)
workers_option = click.option(
    "--workers",
    type=int,
    default=None,
    help="Processes working in parallel, this one included (default: one per usable CPU; "
    "1: all in this process). Ignored with --scheduler.",
)
scheduler_option = click.option(
    "--scheduler",
    default=None,
    metavar="ADDR",
    help="dask.distributed scheduler address (tcp://host:8786); local when omitted.",
)
force_option = click.option("--force", is_flag=True, help="Recompute finished work.")
seed_option = click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
device_option = click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="Torch device.",
)


def parallel_options(func: Callable) -> Callable:
    return workers_option(scheduler_option(func))


def summarize_and_exit(table: pd.DataFrame, what: str, key_cols: list[str]) -> None:
    """Print ok/warn/failed counts and the failed rows; exit non-zero when anything failed."""
    counts = table["status"].value_counts().to_dict() if len(table) else {}
    click.echo(
        f"{what}: {len(table)} rows - ok {counts.get('ok', 0)}, warn {counts.get('warn', 0)}, "
        f"failed {counts.get('failed', 0)}"
    )
    bad = table[table["status"] != "ok"] if len(table) else table
    for _, row in bad.iterrows():
        key = " ".join(str(row[c]) for c in key_cols)
        click.echo(f"  {row['status'].upper():6s} {key}: {row['message']}")
    if counts.get("failed", 0):
        sys.exit(1)
