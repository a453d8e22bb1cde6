"""Run independent tasks in parallel: in this process, with local helper processes, or on a
Dask scheduler.

Tasks receive small arguments (paths, table rows) and return small results (manifest rows);
pixels never travel between processes. Results stream back as tasks finish so callers can
checkpoint finished work (resume after an interruption loses nothing that finished).

Locally, this process works through the task list itself while ``workers - 1`` helper
processes take tasks from the other end of the same list, so a run is never slower than
one worker by more than the cost of starting the helpers. On Linux helpers fork from this
process (milliseconds, every library already imported); elsewhere they start from a
``forkserver`` that imports the task libraries once per process (see :data:`PRELOAD`),
~1 s on another core that overlaps useful work (see :mod:`scorpion_build.local_pool`).
"""

from __future__ import annotations

import functools
import logging
import os
import uuid
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from scorpion_build import logs

log = logging.getLogger(__name__)
# Seconds to wait for a --scheduler to answer before giving up with a clear message.
CONNECT_TIMEOUT_S = 10


class SchedulerError(RuntimeError):
    """The dask.distributed scheduler given with --scheduler cannot be reached."""


# Imported once by the forkserver (where helpers do not fork from this process), so helper
# processes start with them loaded (the libraries every task uses, and the task modules).
PRELOAD = (
    "numpy",
    "cv2",
    "zarr",
    "pandas",
    "openslide",
    "tiffslide",
    "scorpion_build.register.pipeline",
    "scorpion_build.extract",
)


@contextmanager
def single_threaded() -> Iterator[None]:
    """BLAS/OpenMP, OpenCV and Blosc limited to one thread, restored afterwards.

    Multi-threaded BLAS sums in an order that depends on the thread count, which changes
    the last bits of a result and can flip a threshold downstream; one thread per task makes
    outputs byte-identical on any machine and scheduler (parallelism comes from tasks), and
    keeps a worker on the one core it was given.
    """
    import cv2
    from numcodecs import blosc

    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    previous_blosc = blosc.set_nthreads(1)
    try:
        with _threadpools().limit(limits=1):
            yield
    finally:
        cv2.setNumThreads(previous)
        blosc.set_nthreads(previous_blosc)


@functools.cache
def _threadpools() -> Any:
    """The process's BLAS/OpenMP pools, found once (a search of loaded libraries costs ~2 ms,
    which small tasks would pay each time)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


# -- per-process cache of task inputs ---------------------------------------------------------
_cache: OrderedDict[Hashable, Any] = OrderedDict()
_cache_run = ""


def cached(key: Hashable, make: Callable[[], Any], size: int = 8) -> Any:
    """``make()``'s value, kept in this process for the following tasks of the same run.

    Tasks are small (one pair, one sample), so consecutive tasks in one process often need
    the same open slide or the same reference view: this keeps the ``size`` most recently
    used ones. Values with a ``close`` method are closed when they drop out or the run ends.
    """
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    value = _cache[key] = make()
    while len(_cache) > size:
        _close(_cache.popitem(last=False)[1])
    return value


def clear_cache() -> None:
    """Drop (and close) everything :func:`cached` holds in this process."""
    while _cache:
        _close(_cache.popitem()[1])


def _close(value: Any) -> None:
    close = getattr(value, "close", None)
    if callable(close):
        close()


def _run_one(func: Callable[..., Any], item: Any, kwargs: dict[str, Any], run: str = "") -> Any:
    global _cache_run
    if run != _cache_run:  # a long-lived (Dask) worker starting another run's tasks
        clear_cache()
        _cache_run = run
    with single_threaded():
        return func(item, **kwargs)


@dataclass
class TaskResult:
    item: Any
    value: Any = None
    error: BaseException | None = None


def usable_cpus() -> int:
    """CPUs this process may use: its affinity mask (which SLURM and ``taskset`` set),
    capped by a cgroup CPU quota (which ``docker --cpus`` and Kubernetes limits set)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    return max(1, min(cpus, int(quota))) if quota is not None else cpus


def _cgroup_cpu_quota() -> float | None:
    """CPUs' worth of run time the cgroup allows per period (v2 ``cpu.max``, else the v1 CFS
    quota); None without a limit."""
    v2 = _read_text("/sys/fs/cgroup/cpu.max")  # "max 100000" or "200000 100000"
    if v2 is not None:
        quota, period = (v2.split() + ["", ""])[:2]
    else:
        quota = _read_text("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") or ""
        period = _read_text("/sys/fs/cgroup/cpu/cpu.cfs_period_us") or ""
    try:
        value = float(quota) / float(period)
    except ValueError:  # "max", or no such files
        return None
    return value if value > 0 else None  # v1 writes -1 for no limit


def _read_text(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def default_workers(n_items: int) -> int:
    """One worker per usable CPU, never more than there are tasks."""
    return max(1, min(usable_cpus(), n_items))


@contextmanager
def dask_client(scheduler: str) -> Iterator[Any]:
    """A ``distributed.Client`` connected to the scheduler at ``scheduler``."""
    from distributed import Client

    try:
        client = Client(scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise SchedulerError(
            f"cannot reach the dask scheduler at {scheduler} within {CONNECT_TIMEOUT_S} s "
            f"({exc.__class__.__name__}); check that it runs (`dask scheduler`) and the "
            "address, or leave --scheduler out to run locally. Finished work is kept"
        ) from exc
    try:
        yield client
    finally:
        client.close()


def run_tasks(
    func: Callable[..., Any],
    items: Sequence[Any],
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    desc: str = "tasks",
    progress: bool = True,
    **kwargs: Any,
) -> Iterator[TaskResult]:
    """Apply ``func(item, **kwargs)`` to every item, yielding results as they finish.

    With a ``scheduler`` address every task goes to that Dask cluster. Otherwise ``workers``
    processes share the work (default: one per usable CPU); one worker, or one task, runs
    in this process with nothing started. An exception in a task is returned in
    ``TaskResult.error`` rather than raised, so one bad slide never takes the others down;
    so is a helper process that died (killed, out of memory) in the middle of a task.
    ``func`` must be a module-level function (it is pickled by name).
    """
    items = list(items)
    if not items:
        return
    run = uuid.uuid4().hex
    bar = logs.progress(len(items), desc, "tasks", enabled=progress)
    if scheduler:
        results = _run_dask(scheduler, func, items, kwargs, run)
    else:
        n = min(workers or default_workers(len(items)), len(items))
        from scorpion_build.local_pool import run_shared

        results = run_shared(func, items, kwargs, run, n - 1)
    try:
        for result in results:
            yield result
            bar.update()
    finally:
        results.close()
        clear_cache()
        bar.close()


def _run_dask(
    scheduler: str, func: Callable[..., Any], items: list, kwargs: dict, run: str
) -> Iterator[TaskResult]:
    from distributed import as_completed

    with dask_client(scheduler) as client:
        futures = {
            client.submit(_run_one, func, item, kwargs, run, pure=False): item for item in items
        }
        for fut in as_completed(futures, loop=client.loop):
            item = futures[fut]
            try:
                yield TaskResult(item, fut.result())
            except Exception as exc:
                yield TaskResult(item, error=exc)
            finally:
                fut.release()
