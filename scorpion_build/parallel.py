"""Run per-slide tasks with Dask: in-process, a local cluster, or a distributed scheduler.

Tasks receive small arguments (paths, table rows) and return small results (manifest rows);
pixels never travel through the client. Results stream back as tasks finish so callers can
checkpoint finished work (resume after an interruption loses nothing that finished).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from scorpion_build import logs

log = logging.getLogger(__name__)


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
    from threadpoolctl import threadpool_limits

    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    previous_blosc = blosc.set_nthreads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        cv2.setNumThreads(previous)
        blosc.set_nthreads(previous_blosc)


def _run_one(func: Callable[..., Any], item: Any, kwargs: dict[str, Any]) -> Any:
    with single_threaded():
        return func(item, **kwargs)


@dataclass
class TaskResult:
    item: Any
    value: Any = None
    error: BaseException | None = None


def default_workers(n_items: int) -> int:
    return max(1, min(os.cpu_count() or 1, n_items))


@contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None) -> Iterator[Any]:
    """A ``distributed.Client``: connected to ``scheduler`` if given, else a LocalCluster.

    Worker processes use one thread each (OpenCV/NumPy parallelise inside a task already,
    and slide handles are per process).
    """
    from distributed import Client, LocalCluster

    if scheduler:
        client = Client(scheduler, set_as_default=False)
        try:
            yield client
        finally:
            client.close()
        return
    cluster = LocalCluster(
        n_workers=workers or default_workers(os.cpu_count() or 1),
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    client = Client(cluster, set_as_default=False)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


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

    ``workers=1`` with no scheduler runs in this process (no cluster start-up), which is
    also the easiest to debug. An exception in a task is returned in ``TaskResult.error``
    rather than raised, so one bad slide never takes the others down.
    """
    items = list(items)
    if not items:
        return
    bar = logs.progress(len(items), desc, "tasks", enabled=progress)
    try:
        if scheduler is None and (workers or default_workers(len(items))) == 1:
            for item in items:
                try:
                    yield TaskResult(item, _run_one(func, item, kwargs))
                except Exception as exc:  # recorded by the caller as a failed row
                    yield TaskResult(item, error=exc)
                bar.update()
            return
        from distributed import as_completed

        with dask_client(workers or default_workers(len(items)), scheduler) as client:
            futures = {
                client.submit(_run_one, func, item, kwargs, pure=False): item for item in items
            }
            for fut in as_completed(futures, loop=client.loop):
                item = futures[fut]
                try:
                    yield TaskResult(item, fut.result())
                except Exception as exc:
                    yield TaskResult(item, error=exc)
                finally:
                    fut.release()
                bar.update()
    finally:
        bar.close()
