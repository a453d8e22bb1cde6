"""run_tasks: every task answered once, errors and dead helpers reported per task, one task
or one worker run in this process, per-run caches closed at the end.

Task functions live at module level: helper processes import them by name. Interleavings
are forced with files, not timing: a task in this process waits until a helper has
finished one, so helpers provably take part.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing import context as mp_context
from pathlib import Path

import pytest

from scorpion_build import parallel
from scorpion_build.parallel import cached, run_tasks

WAIT_S = 120.0  # a safety net only: the waits below end on an event, never on time


def _wait_until(done: Callable[[], bool], what: str) -> None:
    """Poll ``done`` until it is true (``WAIT_S`` is a safety net, never the expected end)."""
    deadline = time.monotonic() + WAIT_S
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.02)


def _wait_for_helper(done_dir: Path, main_pid: int) -> None:
    """In this (the main) process: wait until a helper has finished a task."""
    _wait_until(
        lambda: any(int(p.name.split("_")[0]) != main_pid for p in done_dir.iterdir()),
        "no helper process finished a task",
    )


def square(item: int, done_dir: str, main_pid: int, fail: int = -1, die: int = -1) -> tuple:
    """item squared and the pid that ran it; ``fail`` raises, ``die`` kills its process."""
    done = Path(done_dir)
    if os.getpid() == main_pid:
        _wait_for_helper(done, main_pid)
    elif item == die:  # let this process go on, then die mid-task
        (done / f"{os.getpid()}_{item}").touch()
        os.kill(os.getpid(), signal.SIGKILL)
    if item == fail:
        raise ValueError(f"bad item {item}")
    (done / f"{os.getpid()}_{item}").touch()
    return item * item, os.getpid()


def pid_of(item: int) -> int:
    return os.getpid()


class Handle:
    closed = 0

    def close(self) -> None:
        Handle.closed += 1


def open_once(item: int) -> int:
    """The same cached handle for every task of a run (in this process)."""
    return id(cached("handle", Handle))


def _results(items, tmp_path, **kwargs) -> dict:  # noqa: ANN001, ANN003
    out = {}
    for res in run_tasks(
        square,
        items,
        workers=2,
        progress=False,
        done_dir=str(tmp_path),
        main_pid=os.getpid(),
        **kwargs,
    ):
        assert res.item not in out, "a task was answered twice"
        out[res.item] = res
    return out


def test_helpers_and_this_process_share_the_tasks(tmp_path: Path) -> None:
    items = list(range(12))
    out = _results(items, tmp_path)
    assert sorted(out) == items
    assert all(r.error is None and r.value[0] == r.item**2 for r in out.values())
    pids = {r.value[1] for r in out.values()}
    assert os.getpid() in pids and len(pids) == 2


def test_a_run_started_from_another_thread_shares_the_tasks_too(tmp_path: Path) -> None:
    """Forking from a thread other than the main one is not safe (the main thread may hold
    any lock): such a run starts its helpers from the forkserver instead."""
    from scorpion_build import local_pool

    out: dict = {}
    thread = threading.Thread(target=lambda: out.update(_results(list(range(6)), tmp_path)))
    thread.start()
    thread.join(WAIT_S)
    assert sorted(out) == list(range(6)) and all(r.error is None for r in out.values())
    assert len({r.value[1] for r in out.values()}) == 2
    if sys.platform.startswith("linux"):
        assert local_pool._context().get_start_method() == "fork"  # the main thread forks


def test_a_failing_task_is_reported_and_the_rest_finish(tmp_path: Path) -> None:
    out = _results(list(range(8)), tmp_path, fail=7)  # 7 is the helper's first task
    assert isinstance(out[7].error, ValueError) and "bad item 7" in str(out[7].error)
    assert all(out[i].error is None for i in range(7))


def test_a_helper_killed_mid_task_fails_only_that_task(tmp_path: Path) -> None:
    # the helper's first task is the last item; this process waits until the helper has
    # begun it (so cannot take it), then does all the others
    out = _results(list(range(8)), tmp_path, die=7)
    assert sorted(out) == list(range(8))
    assert "worker process died" in str(out[7].error)
    assert all(out[i].error is None for i in range(7))


@pytest.mark.parametrize(("workers", "n"), [(1, 5), (4, 1)])
def test_one_worker_or_one_task_runs_in_this_process(workers: int, n: int) -> None:
    results = list(run_tasks(pid_of, list(range(n)), workers=workers, progress=False))
    assert [r.value for r in results] == [os.getpid()] * n


def test_cached_values_live_for_one_run_and_are_closed() -> None:
    Handle.closed = 0
    first = {r.value for r in run_tasks(open_once, [1, 2, 3], workers=1, progress=False)}
    assert len(first) == 1 and Handle.closed == 1  # one handle for the run, closed after
    run_tasks_again = list(run_tasks(open_once, [1], workers=1, progress=False))
    assert run_tasks_again[0].error is None and Handle.closed == 2
    assert not parallel._cache


@pytest.mark.parametrize(
    ("files", "cpus"),
    [
        ({"/sys/fs/cgroup/cpu.max": "150000 100000"}, 1),  # docker --cpus 1.5
        ({"/sys/fs/cgroup/cpu.max": "max 100000"}, 4),
        (
            {
                "/sys/fs/cgroup/cpu/cpu.cfs_quota_us": "200000",
                "/sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000",
            },
            2,
        ),
        ({"/sys/fs/cgroup/cpu/cpu.cfs_quota_us": "-1"}, 4),
        ({}, 4),
    ],
)
def test_default_workers_follow_a_container_cpu_limit(monkeypatch, files, cpus) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(parallel, "_read_text", files.get)
    assert parallel.usable_cpus() == cpus
    assert parallel.default_workers(100) == cpus and parallel.default_workers(1) == 1


_STARTING, _GATE = threading.Event(), threading.Event()
_LATE: dict = {}


class _LateProcess(mp_context.ForkServerProcess):
    """A helper whose start is held back until the test opens the gate."""

    def start(self) -> None:
        _LATE["thread"], _LATE["proc"] = threading.current_thread(), self
        _STARTING.set()
        assert _GATE.wait(WAIT_S)
        super().start()


def _once_a_helper_is_starting(item: int) -> int:
    """Runs in this process: returns only once the helper's start has begun."""
    assert _STARTING.wait(WAIT_S)
    return item


def test_a_helper_that_starts_after_the_run_still_finds_its_work_list(monkeypatch) -> None:
    """This process takes the only task and the run ends before its helper starts: the late
    helper must still find the shared work list (it used to be freed under it, and the
    helper crashed with a traceback), and the run must not wait for it."""
    from scorpion_build import local_pool

    ctx = local_pool._context("forkserver")  # how helpers start where fork is not used

    class LateContext:
        Process = _LateProcess

        def __getattr__(self, name: str):
            return getattr(ctx, name)

    monkeypatch.setattr(local_pool, "_context", LateContext)
    run = local_pool.run_shared(_once_a_helper_is_starting, [7], {}, "late-helper", helpers=1)
    results = list(run)
    _GATE.set()  # only now, with the run over, does the helper start
    _LATE["thread"].join(WAIT_S)  # the starter holds the work list until its helpers end
    assert [(r.value, r.error) for r in results] == [(7, None)]
    assert not _LATE["thread"].is_alive()
    assert _LATE["proc"].exitcode == 0


# -- a helper never keeps the build locked ---------------------------------------------------
HOLD_AND_DIE = """
import os, signal, sys, time
from pathlib import Path
from scorpion_build.lock import build_lock
from scorpion_build.parallel import run_tasks
sys.path.insert(0, sys.argv[2])
from test_parallel import wait_in_helper

build, done = sys.argv[1], Path(sys.argv[3])
with build_lock(build):
    for _ in run_tasks(wait_in_helper, [0, 1], workers=2, progress=False, done_dir=str(done),
                       main_pid=os.getpid()):
        pass
"""


def wait_in_helper(item: int, done_dir: str, main_pid: int) -> None:
    """This process waits for the helper to begin its task, then dies (SIGKILL); the helper
    names its pid and waits until the test lets it go."""
    done = Path(done_dir)
    if os.getpid() == main_pid:
        _wait_for(done / "helper.pid")
        os.kill(os.getpid(), signal.SIGKILL)
    (done / ".helper.pid").write_text(str(os.getpid()))
    (done / ".helper.pid").rename(done / "helper.pid")
    _wait_for(done / "release")


def _wait_for(path: Path) -> None:
    _wait_until(path.exists, f"{path} never appeared")


def test_a_helper_outliving_a_killed_run_does_not_hold_the_build_lock(tmp_path: Path) -> None:
    import subprocess

    from scorpion_build.lock import build_lock

    build, done = tmp_path / "build", tmp_path / "done"
    done.mkdir()
    main = subprocess.run(
        [sys.executable, "-c", HOLD_AND_DIE, str(build), str(Path(__file__).parent), str(done)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        timeout=WAIT_S,
    )
    helper = int((done / "helper.pid").read_text())
    try:
        assert main.returncode == -signal.SIGKILL
        os.kill(helper, 0)  # the helper is still in its task...
        with build_lock(build):  # ...and the next run takes the lock
            pass
    finally:
        (done / "release").touch()


# -- helpers fork safely from a process whose thread pools are running -----------------------
POOLS_RUNNING = """
import os, sys
import cv2
import numpy as np
from scorpion_build.parallel import run_tasks
sys.path.insert(0, sys.argv[1])
from test_parallel import blur_after_helper

cv2.setNumThreads(4)  # OpenCV's pool is running in this process when the helper forks
cv2.GaussianBlur(np.zeros((2000, 2000, 3), np.uint8), (31, 31), 5)
results = list(run_tasks(blur_after_helper, [0, 1, 2, 3], workers=2, progress=False,
                         done_dir=sys.argv[2], main_pid=os.getpid()))
assert all(r.error is None for r in results), [r.error for r in results]
print(sorted({r.value for r in results} - {os.getpid()}) != [], flush=True)
"""


def blur_after_helper(item: int, done_dir: str, main_pid: int) -> int:
    """Blur with OpenCV; this process waits until a helper has blurred once."""
    import cv2
    import numpy as np

    if os.getpid() == main_pid:
        _wait_for_helper(Path(done_dir), main_pid)
    cv2.GaussianBlur(np.zeros((500, 500, 3), np.uint8), (31, 31), 5)
    (Path(done_dir) / f"{os.getpid()}_{item}").touch()
    return os.getpid()


def test_helpers_fork_safely_from_a_process_with_running_thread_pools(tmp_path: Path) -> None:
    """A child cannot use a thread pool whose threads stayed in its parent: forking while
    OpenCV's pool ran used to hang the helper in its first task, and the run with it."""
    import subprocess

    run = subprocess.run(
        [sys.executable, "-c", POOLS_RUNNING, str(Path(__file__).parent), str(tmp_path)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        capture_output=True,
        text=True,
        timeout=WAIT_S,  # a safety net: without the fix the helper hangs for good
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "True"  # a helper ran tasks
