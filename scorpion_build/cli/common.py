"""Click options shared by several commands, and the one place errors are printed."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import click
import pandas as pd

from scorpion_build.errors import error_line
from scorpion_build.options import OptionError

log = logging.getLogger("scorpion_build.cli")
# `--debug` or this variable: show tracebacks instead of one-line errors
DEBUG_ENV = "SCORPION_BUILD_DEBUG"
# exit codes: 0 all ok (warnings allowed), 1 failed items or an error, 2 bad options
EXIT_FAILED, EXIT_USAGE = 1, 2

reference_option = click.option(
    "--reference", default="AT2", show_default=True, help="Reference scanner name."
)
workers_option = click.option(
    "--workers",
    type=int,
    default=None,
    help="Local worker processes, >= 1 (default: CPU count).",
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


def debug_enabled(ctx: click.Context | None) -> bool:
    root = ctx.find_root() if ctx is not None else None
    flag = bool(root and root.params.get("debug"))
    return flag or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def log_file(ctx: click.Context | None, since: float) -> Path | None:
    """The log this command wrote, if any: a file handler on the package logger, else the
    newest ``BUILD/logs/*.log`` written since the command started."""
    for handler in _file_handlers():
        return Path(handler.baseFilename)
    build = None
    while ctx is not None and build is None:
        build = ctx.params.get("build")
        ctx = ctx.parent
    logs = Path(build) / "logs" if build else None
    if logs is None or not logs.is_dir():
        return None
    recent = [p for p in logs.glob("*.log") if p.stat().st_mtime >= since - 1]
    return max(recent, key=lambda p: p.stat().st_mtime, default=None)


def _file_handlers() -> list[logging.FileHandler]:
    loggers = (logging.getLogger("scorpion_build"), logging.getLogger())
    return [h for lg in loggers for h in lg.handlers if isinstance(h, logging.FileHandler)]


def _log_traceback(exc: BaseException) -> None:
    """The traceback goes to the log file only (if any): the terminal gets one line."""
    record = log.makeRecord(
        log.name, logging.ERROR, __file__, 0, "%s", (error_line(exc),), (type(exc), exc, None)
    )
    record.exc_info = (type(exc), exc, exc.__traceback__)
    for handler in _file_handlers():
        handler.handle(record)


def fail(exc: BaseException, ctx: click.Context | None, since: float) -> None:
    """Print ``exc`` as one line (plus the log path) and exit; re-raise under --debug."""
    if debug_enabled(ctx):
        raise exc
    _log_traceback(exc)
    where = log_file(ctx, since)
    tail = (
        f" (log: {where}; --debug shows the traceback)"
        if where
        else " (--debug shows the traceback)"
    )
    click.echo(f"Error: {error_line(exc)}{tail}", err=True)
    sys.exit(EXIT_USAGE if isinstance(exc, OptionError) else EXIT_FAILED)


def invoke_guarded(invoke: Callable[[], object], ctx: click.Context) -> object:
    """Run a command; every failure that is not Click's own becomes :func:`fail`."""
    since = time.time()
    try:
        return invoke()
    except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
        raise
    except KeyboardInterrupt:
        click.echo("interrupted; finished work is kept, run the command again to resume", err=True)
        sys.exit(130)
    except Exception as exc:
        fail(exc, ctx, since)


class GuardedCommand(click.Command):
    """A Click command whose failures are printed by :func:`fail` (one line, exit code)."""

    def invoke(self, ctx: click.Context) -> object:
        return invoke_guarded(lambda: super(GuardedCommand, self).invoke(ctx), ctx)
