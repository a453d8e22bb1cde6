"""What a command tells a person: the console at the chosen verbosity, one log file per
command run in ``FOLDER/logs/`` (docs/contracts.md section 3), and progress that is a bar on
a terminal and plain periodic lines anywhere else."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

LOGGER = "scorpion_build"
# records for the log file only: the terminal gets a grouped summary of the same items
FILE_ONLY = "scorpion_build.file"
FILE_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# a plain progress line each time this share of the work is newly done (by count, not by
# clock, so the output of a run is the same however fast the machine is)
PROGRESS_STEP = 0.1
QUIET, NORMAL, VERBOSE, DEBUG = -1, 0, 1, 2

log = logging.getLogger(LOGGER)


class FolderLog(logging.Handler):
    """Writes ``FOLDER/logs/<command>-<time>-<pid>.log`` once FOLDER exists.

    Records that come before (a command validating its options before it creates its
    output) are held in memory and written first, so a command that stops early leaves no
    folder behind, and one that goes on loses no line.
    """

    def __init__(self, command: str) -> None:
        super().__init__(logging.DEBUG)
        self.command = command
        self.folder: Path | None = None
        self.path: Path | None = None
        self._stream: TextIO | None = None
        self._held: list[str] = []
        self.setFormatter(logging.Formatter(FILE_FORMAT))

    def set_folder(self, folder: str | os.PathLike) -> None:
        if self.folder is None:
            self.folder = Path(folder)
        self._open()  # the folder may have been created since it was named

    def _open(self) -> bool:
        if self._stream is None and self.folder is not None and self.folder.is_dir():
            logs = self.folder / "logs"
            logs.mkdir(exist_ok=True)
            stamp = f"{datetime.now():%Y%m%d-%H%M%S}"
            self.path = logs / f"{self.command}-{stamp}-{os.getpid()}.log"
            self._stream = self.path.open("a", encoding="utf-8")
            for line in self._held:
                self._stream.write(line + "\n")
            self._held.clear()
            self._stream.flush()
        return self._stream is not None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            if self._open():
                self._stream.write(line + "\n")
                self._stream.flush()  # a killed run keeps every line it logged
            else:
                self._held.append(line)
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self._open()
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        super().close()


class ConsoleFormat(logging.Formatter):
    """Plain text for information, ``warning:`` / ``error:`` before the rest."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.ERROR:
            return f"error: {message}"
        if record.levelno >= logging.WARNING:
            return f"warning: {message}"
        if record.levelno < logging.INFO:
            return f"debug {record.name}: {message}"
        return message


def console_level(verbosity: int) -> int:
    """Console threshold for ``-q`` (-1), the default (0), ``-v`` (1) and ``-vv`` (2)."""
    if verbosity <= QUIET:
        return logging.WARNING
    return logging.INFO if verbosity == NORMAL else logging.DEBUG


@dataclass
class _Session:
    verbosity: int
    file: FolderLog


_active: list[_Session] = []
# log files of the sessions that ended, newest last: the CLI's one-line errors point there
_finished: list[Path] = []


@contextlib.contextmanager
def session(
    command: str,
    folder: str | os.PathLike | None = None,
    verbosity: int = NORMAL,
    console: bool = True,
    details: str | None = None,
) -> Iterator[FolderLog]:
    """Route the package's log records to the console and to one log file for this run.

    Re-entrant: inside a running session (``scorpion-build run`` calling the stages) the
    outer session is kept and only its folder is set when it had none.

    Parameters
    ----------
    command : name of the command, first part of the log file name.
    folder : the build (or output) folder; its ``logs/`` receives the file. May be set later
        with :func:`use_folder` when the command learns it from a config file.
    verbosity : -1 quiet (warnings and errors only, no progress), 0 normal, 1 ``-v``
        (debug lines on the console), 2 ``-vv``.
    console : also print to stderr (False for library calls, which log to the file only).
    details : what the command was given, for the log's first line (default: ``sys.argv``).
    """
    if _active:
        if folder is not None:
            _active[-1].file.set_folder(folder)
        yield _active[-1].file
        return
    file, handlers, saved = _attach(command, verbosity, console)
    if folder is not None:
        file.set_folder(folder)
    started = time.perf_counter()
    first = details if details is not None else " ".join(sys.argv[1:])
    logging.getLogger(FILE_ONLY).info("scorpion-build %s: %s", command, first)
    try:
        yield file
    except BaseException as exc:
        if not isinstance(exc, SystemExit) or exc.code not in (0, None):
            # a usage error (it carries an exit code) needs no traceback; anything else does
            trace = not isinstance(exc, SystemExit) and not hasattr(exc, "exit_code")
            logging.getLogger(FILE_ONLY).error(
                "%s stopped: %s", command, exc or exc.__class__.__name__, exc_info=trace
            )
        raise
    finally:
        seconds = time.perf_counter() - started
        logging.getLogger(FILE_ONLY).info("%s finished after %.1f s", command, seconds)
        _detach(file, handlers, saved)


def _attach(
    command: str, verbosity: int, console: bool
) -> tuple[FolderLog, list[logging.Handler], tuple[int, bool]]:
    """Install the session's handlers and make it the active one; returns what
    :func:`_detach` needs to undo it (the package logger's saved level and propagation)."""
    root = logging.getLogger(LOGGER)
    file = FolderLog(command)
    handlers: list[logging.Handler] = [file]
    if console:
        screen = logging.StreamHandler(sys.stderr)
        screen.setFormatter(ConsoleFormat())
        screen.setLevel(console_level(verbosity))
        screen.addFilter(lambda record: not record.name.startswith(FILE_ONLY))
        handlers.append(screen)
    saved = (root.level, root.propagate)
    root.setLevel(logging.DEBUG)
    root.propagate = False  # the package's lines are printed here, not twice by the root
    for handler in handlers:
        root.addHandler(handler)
    logging.getLogger("py.warnings").addHandler(file)
    logging.captureWarnings(True)
    _active.append(_Session(verbosity, file))
    return file, handlers, saved


def _detach(file: FolderLog, handlers: list[logging.Handler], saved: tuple[int, bool]) -> None:
    """Undo :func:`_attach`: the log's path joins the finished ones, handlers are closed."""
    root = logging.getLogger(LOGGER)
    _active.pop()
    if file.path is not None:
        _finished.append(file.path)
    logging.captureWarnings(False)
    logging.getLogger("py.warnings").removeHandler(file)
    for handler in handlers:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(saved[0])
    root.propagate = saved[1]


def last_log(since: float) -> Path | None:
    """The log file of the newest session that ended, if it was written since ``since``
    (seconds since the epoch); None when there is none."""
    if _finished and _finished[-1].is_file() and _finished[-1].stat().st_mtime >= since - 1:
        return _finished[-1]
    return None


def use_folder(folder: str | os.PathLike) -> Path | None:
    """Tell the running session where its log goes; returns the log file (None outside a
    session, or while the folder does not exist yet)."""
    if not _active:
        return None
    _active[-1].file.set_folder(folder)
    return _active[-1].file.path


def verbosity() -> int:
    """The running session's verbosity (normal outside any session)."""
    return _active[-1].verbosity if _active else NORMAL


def show_progress() -> bool:
    """Progress is shown unless the command runs with ``-q``."""
    return verbosity() > QUIET


def log_items(table: Any, what: str, keys: list[str]) -> None:
    """One log-file line per row of ``table`` whose status is not ok (ERROR for failed,
    WARNING for warn), naming the item by ``keys`` and giving its message."""
    if table is None or len(table) == 0 or "status" not in table:
        return
    items = logging.getLogger(f"{FILE_ONLY}.items")
    for row in table[table["status"] != "ok"].to_dict("records"):
        key = " ".join(str(row.get(k)) for k in keys if k in row)
        level = logging.ERROR if row["status"] == "failed" else logging.WARNING
        message = row.get("message")
        items.log(level, "%s %s %s: %s", what, key, row["status"], message or "")


class PlainProgress:
    """Progress as plain log lines, one each time another tenth of the work is done; for
    output that is not a terminal, where a bar's carriage returns would be clutter."""

    def __init__(self, total: int, desc: str, unit: str, enabled: bool = True) -> None:
        self.total, self.desc, self.unit, self.enabled = int(total), desc, unit, enabled
        self.n = 0
        self._shown = 0  # tenths already reported
        self._postfix = ""
        self._started = time.perf_counter()
        self._log = logging.getLogger(f"{LOGGER}.progress")

    def update(self, n: int = 1) -> None:
        self.n += n
        step = int(self.n / max(self.total, 1) / PROGRESS_STEP + 1e-9)
        if self.enabled and step > self._shown:
            self._shown = step
            seconds = time.perf_counter() - self._started
            self._log.info(
                "%s: %d/%d %s (%d%%), %.0f s%s",
                self.desc,
                self.n,
                self.total,
                self.unit,
                round(100 * self.n / max(self.total, 1)),
                seconds,
                self._postfix,
            )

    def set_postfix(self, **values: Any) -> None:
        self._postfix = "".join(f", {k} {v}" for k, v in values.items())

    def close(self) -> None:
        pass


def progress(total: int, desc: str, unit: str = "item", enabled: bool = True) -> Any:
    """A progress reporter with ``update(n)``, ``set_postfix(**kw)`` and ``close()``: a tqdm
    bar when stderr is a terminal, :class:`PlainProgress` lines otherwise, nothing under
    ``-q`` or with ``enabled=False``."""
    enabled = enabled and show_progress()
    if enabled and sys.stderr.isatty():
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False)
    return PlainProgress(total, desc, unit, enabled=enabled)


def track(items: Iterable, total: int, desc: str, unit: str = "item") -> Iterator:
    """Iterate ``items`` while reporting progress (see :func:`progress`)."""
    bar = progress(total, desc, unit)
    try:
        for item in items:
            yield item
            bar.update()
    finally:
        bar.close()
