"""One task list shared by this process and local helper processes (see
:func:`scorpion_build.parallel.run_tasks`).

This process takes tasks from the front of the list and the helpers from the back, so
nothing waits for a helper to start, neighbouring tasks (the pairs or samples of one
slide) mostly land in the same process, where their open slides are reused, and one task
or one core costs no process at all. Each helper sends its results through its own pipe:
a helper that dies (killed, out of memory) shows up as the end of its pipe, and only its
task in flight is lost, reported as failed.

On Linux helpers fork from this process itself, at the start of a run, from the main
thread and before this process runs any task of it: they start in milliseconds with every
library already imported, and nothing of ours is half-done in another thread. The thread
pools tasks use (OpenCV, Blosc, BLAS/OpenMP) are wound down to one thread while forking
(:func:`parallel.single_threaded`), zarr's and fsspec's event loops restart by their own
fork handlers, and a child drops this process's build lock (:mod:`scorpion_build.lock`).
Elsewhere (macOS, Windows, or a run started from another thread) helpers start from a
forkserver (or spawn) in a background thread, as forking is not safe there.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import pickle
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection, wait
from typing import Any

from scorpion_build import parallel
from scorpion_build.parallel import TaskResult

log = logging.getLogger(__name__)


class WorkList:
    """Indices 0..n-1 handed out once each: from the front to this process, from the back
    to helpers, and who took each (to name a dead helper's task)."""

    def __init__(self, ctx: Any, n: int) -> None:
        self.span = ctx.Array("q", [0, n])  # [next from the front, end of the back]
        self.owner = ctx.Array("i", [-1] * n, lock=False)

    def take(self, helper: int | None = None) -> int | None:
        """The next index for this process (``helper`` None) or for helper ``helper``."""
        with self.span.get_lock():
            front, back = self.span[0], self.span[1]
            if front >= back:
                return None
            if helper is None:
                self.span[0] = front + 1
                return front
            self.span[1] = back - 1
            self.owner[back - 1] = helper
            return back - 1

    def stop(self) -> None:
        """Hand out nothing more."""
        with self.span.get_lock():
            self.span[1] = self.span[0]


def _context(method: str | None = None) -> Any:
    """How helpers start: ``fork`` on Linux when called from the main thread (another
    thread of the caller's may be anywhere, its locks held); otherwise a forkserver whose
    server imports :data:`parallel.PRELOAD` (once per process), or spawn where there is
    none (Windows)."""
    methods = mp.get_all_start_methods()
    if method is None:
        main = threading.current_thread() is threading.main_thread()
        method = "fork" if sys.platform.startswith("linux") and main else "forkserver"
    if method not in methods:
        method = "spawn"
    ctx = mp.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload(list(parallel.PRELOAD))  # no effect once the server runs
    return ctx


def warm_up() -> None:
    """Start the forkserver and its imports in the background now, so that helpers needed
    later (the next stage) start at once; a no-op where helpers fork from this process."""
    if _context().get_start_method() == "forkserver":
        from multiprocessing import forkserver

        threading.Thread(target=forkserver.ensure_running, daemon=True).start()


def _pack(index: int, value: Any, error: BaseException | None) -> tuple[int, bytes]:
    try:
        return index, pickle.dumps((value, error))
    except Exception as exc:  # an unpicklable result or exception: keep its text
        why = error if error is not None else exc
        return index, pickle.dumps((None, RuntimeError(f"{why.__class__.__name__}: {why}")))


def _unpack(item: Any, blob: bytes) -> TaskResult:
    try:
        value, error = pickle.loads(blob)
    except Exception as exc:
        return TaskResult(item, error=RuntimeError(f"result could not be read back: {exc}"))
    return TaskResult(item, value, error)


def _helper(
    number: int,
    func: Callable[..., Any],
    items: list,
    kwargs: dict,
    run: str,
    work: WorkList,
    out: Connection,
) -> None:
    """Helper process: run tasks from the back of the list until it is empty."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    parent = mp.parent_process()
    try:
        while parent is None or parent.is_alive():  # an orphan stops: nobody reads its rows
            index = work.take(number)
            if index is None:
                return
            try:
                value, error = parallel._run_one(func, items[index], kwargs, run), None
            except Exception as exc:
                value, error = None, exc
            out.send(_pack(index, value, error))
    except BrokenPipeError:
        return  # this process went away
    finally:
        parallel.clear_cache()
        out.close()


def run_shared(
    func: Callable[..., Any], items: list, kwargs: dict, run: str, helpers: int
) -> Iterator[TaskResult]:
    """Run every item in this process and ``helpers`` helper processes; yield as finished."""
    if helpers < 1:
        for item in items:
            yield _here(func, item, kwargs, run)
        return
    ctx = _context()
    work = WorkList(ctx, len(items))
    procs, pipes, writers = [], {}, []
    for number in range(helpers):
        reader, writer = ctx.Pipe(duplex=False)
        procs.append(
            ctx.Process(
                target=_helper,
                args=(number, func, items, kwargs, run, work, writer),
                name=f"scorpion-helper-{number}",
                daemon=True,
            )
        )
        pipes[reader] = number
        writers.append(writer)
    cancel = threading.Event()
    if ctx.get_start_method() == "fork":
        # now, before this process runs a task of this run; with the libraries' thread
        # pools wound down to one thread, as a child cannot use a pool whose threads
        # stayed behind in this process (OpenCV's would hang it)
        with parallel.single_threaded(), warnings.catch_warnings():
            # Python 3.12+ warns of forking a process with threads: the module docstring
            # says why these forks are safe
            warnings.simplefilter("ignore", DeprecationWarning)
            _start(procs, writers, cancel)
    else:  # a forkserver's first start waits for its imports: start beside the work
        threading.Thread(
            target=_start_and_hold, args=(procs, writers, cancel, work), daemon=True
        ).start()
    pending = set(range(len(items)))
    try:
        while (index := work.take()) is not None:
            yield from _receive(pipes, procs, work, items, pending, timeout=0)
            pending.discard(index)
            yield _here(func, items[index], kwargs, run)
        while pending and pipes:
            yield from _receive(pipes, procs, work, items, pending, timeout=None)
        for index in sorted(pending):  # every helper has gone: should not happen
            yield TaskResult(items[index], error=RuntimeError("no process ran this task"))
    finally:
        work.stop()  # a helper still starting, or between tasks, finds nothing and ends
        cancel.set()  # helpers not started yet are not needed
        for proc in procs:
            if pending and proc.pid is not None and proc.is_alive():
                proc.terminate()  # the caller stopped early: nobody will read this task
        for reader in pipes:
            reader.close()


def _start(procs: list, writers: list[Connection], cancel: threading.Event) -> None:
    """Start the helpers (none once ``cancel`` is set: the work is done). A helper that
    cannot start is logged, and the others and this process do its share."""
    for proc, writer in zip(procs, writers, strict=True):
        try:
            if not cancel.is_set():
                proc.start()
        except Exception as exc:  # this process does the work alone
            log.warning("a helper process could not start (%s); working without it", exc)
        finally:
            writer.close()  # the helper holds the only writer: its end is the helper's end


def _start_and_hold(
    procs: list, writers: list[Connection], cancel: threading.Event, work: WorkList
) -> None:
    """:func:`_start` in a background thread, then hold ``work`` until the helpers have
    ended: a helper started after this process took the last task may still be reading its
    arguments, and the shared list (a named semaphore) must outlive that. Waiting here, not
    in the caller, lets the caller go on at once."""
    _start(procs, writers, cancel)
    # Sentinels become ready when a helper ends; waiting on them reads nothing, so this
    # does not race the caller's own join of a helper.
    sentinels = [proc.sentinel for proc in procs if proc.pid is not None]
    while sentinels:
        ready = wait(sentinels)
        sentinels = [s for s in sentinels if s not in ready]


def _here(func: Callable[..., Any], item: Any, kwargs: dict, run: str) -> TaskResult:
    try:
        return TaskResult(item, parallel._run_one(func, item, kwargs, run))
    except Exception as exc:  # recorded by the caller as a failed row
        return TaskResult(item, error=exc)


def _receive(
    pipes: dict[Connection, int],
    procs: list,
    work: WorkList,
    items: list,
    pending: set[int],
    timeout: float | None,
) -> Iterator[TaskResult]:
    """Results the helpers have sent (waiting up to ``timeout`` s for the first); a helper
    whose pipe ended is gone, and a task it had taken without answering failed with it."""
    for reader in wait(list(pipes), timeout):
        try:
            index, blob = reader.recv()
        except (EOFError, OSError):
            number = pipes.pop(reader)
            reader.close()
            if procs[number].pid is not None:  # None: it never started
                procs[number].join()
            lost = [i for i in pending if work.owner[i] == number]
            for i in lost:
                pending.discard(i)
                code = procs[number].exitcode
                yield TaskResult(
                    items[i],
                    error=RuntimeError(f"worker process died (exit code {code}) in this task"),
                )
            continue
        pending.discard(index)
        yield _unpack(items[index], blob)
