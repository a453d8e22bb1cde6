"""Click options shared by several commands, and the one place errors are printed."""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
from collections.abc import Callable

import click
import pandas as pd

from scorpion_build import logs
from scorpion_build.errors import error_line
from scorpion_build.options import DEVICES, OptionError
from scorpion_build.report.summary import group_messages

log = logging.getLogger("scorpion_build.cli")
# items named per group in the terminal summary; the log file names every one
SHOWN_ITEMS = 6
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
    help="Processes working in parallel, this one included, >= 1 (default: one per usable "
    "CPU; 1: all in this process). Ignored with --scheduler.",
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
    type=click.Choice(DEVICES),
    default="auto",
    show_default=True,
    help="Torch device.",
)


def parallel_options(func: Callable) -> Callable:
    return workers_option(scheduler_option(func))


def log_options(folder: str | None = None) -> Callable[[Callable], Callable]:
    """``-v/--verbose`` and ``-q/--quiet``, and a log of this run in ``FOLDER/logs/``.

    Parameters
    ----------
    folder : name of the command's parameter holding the build (or output) folder; None
        when the command learns it later (it then calls :func:`scorpion_build.logs.use_folder`)
        or writes no folder.
    """

    def decorate(func: Callable) -> Callable:
        @functools.wraps(func)
        def wrapper(*args: object, verbose: int, quiet: bool, **kwargs: object) -> object:
            if verbose and quiet:
                raise click.UsageError("-v/--verbose and -q/--quiet exclude each other")
            name = click.get_current_context().info_name or func.__name__
            where = kwargs.get(folder) if folder else None
            level = logs.QUIET if quiet else min(verbose, logs.DEBUG)
            given = ", ".join(f"{k}={v}" for k, v in kwargs.items() if v not in (None, ()))
            with logs.session(name, where, level, details=given):
                return func(*args, **kwargs)

        wrapper = click.option(
            "-q", "--quiet", is_flag=True, help="Only warnings and errors; no progress."
        )(wrapper)
        return click.option(
            "-v", "--verbose", count=True, help="More detail on the terminal (-vv: all)."
        )(wrapper)

    return decorate


def summarize_and_exit(
    table: pd.DataFrame, what: str, key_cols: list[str], exit_on_failure: bool = True
) -> None:
    """Print ok/warn/failed counts and the problems grouped by message (every item goes to
    the log file); exit non-zero when anything failed (unless ``exit_on_failure`` is False:
    more summaries follow)."""
    counts = table["status"].value_counts().to_dict() if len(table) else {}
    log.info(
        "%s: %d rows - ok %d, warn %d, failed %d",
        what,
        len(table),
        counts.get("ok", 0),
        counts.get("warn", 0),
        counts.get("failed", 0),
    )
    logs.log_items(table, what, key_cols)
    for group in group_messages(table, key_cols) if len(table) else []:
        log.log(
            logging.ERROR if group["status"] == "failed" else logging.WARNING,
            "%s",
            group_line(group),
        )
    if counts.get("failed", 0) and exit_on_failure:
        sys.exit(1)


def group_line(group: dict) -> str:
    """One terminal line for a group from ``group_messages``: ``item: message`` for one
    item, ``message (9 items: a, b, ... and 3 more, all in the log)`` for several."""
    items, message = group["items"], group["message"] or group["status"]
    if len(items) == 1:
        return f"{items[0]}: {message}"
    named = ", ".join(items[:SHOWN_ITEMS])
    if len(items) > SHOWN_ITEMS:
        named += f" and {len(items) - SHOWN_ITEMS} more, all in the log"
    return f"{message} ({len(items)} items: {named})"


def debug_enabled(ctx: click.Context | None) -> bool:
    root = ctx.find_root() if ctx is not None else None
    flag = bool(root and root.params.get("debug"))
    return flag or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def fail(exc: BaseException, ctx: click.Context | None, since: float) -> None:
    """Print ``exc`` as one line (plus the log path) and exit; re-raise under --debug."""
    if debug_enabled(ctx):
        raise exc
    where = logs.last_log(since)
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
