"""One writer per build directory: an advisory lock on ``BUILD/.lock``.

The lock is a ``flock`` held by the running process, so the kernel releases it when the
process dies, however it dies: a killed run never leaves a stale lock behind. The file
holds the owner's pid for the message a second writer gets. Taking the lock also removes
temporary files that killed writes left behind (see ``docs/contracts.md`` section 3).
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from scorpion_build.staging import remove_replaced

LOCK_NAME = ".lock"


@dataclass
class _Held:
    """A build's lock held by this process: its open lock file and how many ``with`` blocks
    hold it (re-entrant: `run` holds the lock while it calls each stage)."""

    fd: int
    depth: int = 1


_held: dict[Path, _Held] = {}


def _drop_inherited() -> None:
    """In a forked child (a helper process): close its copies of the lock files and hold
    nothing. The parent's lock stays (a flock lives while any copy is open and is never
    unlocked here), but a helper that outlives a killed parent for the rest of its task no
    longer keeps the build locked against the next run."""
    for held in _held.values():
        os.close(held.fd)
    _held.clear()


os.register_at_fork(after_in_child=_drop_inherited)


class BuildBusyError(RuntimeError):
    """Another process is writing to the same build directory."""


@contextmanager
def build_lock(root: str | os.PathLike, readonly_ok: bool = False) -> Iterator[None]:
    """Hold the build's writer lock for the duration of the ``with`` block.

    Parameters
    ----------
    root : path
        The build directory (created if missing).
    readonly_ok : bool
        For commands that only read BUILD: a read-only BUILD is used without a lock
        (nothing can write to it anyway) instead of raising.

    Raises
    ------
    BuildBusyError
        Another live process holds the lock; the message names its pid.
    """
    root = Path(root).expanduser().resolve()
    if root in _held:
        _held[root].depth += 1
        try:
            yield
        finally:
            _held[root].depth -= 1
        return
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        if readonly_ok and exc.errno in (errno.EROFS, errno.EACCES):
            yield
            return
        raise
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise BuildBusyError(
                f"another scorpion-build run is using {root} (pid {pid}); wait for it to "
                "finish or stop it, then run this again"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        remove_stale_temps(root)
        _held[root] = _Held(fd)
        try:
            yield
        finally:
            del _held[root]
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing releases the flock


def remove_stale_temps(root: Path) -> list[Path]:
    """Delete ``.<name>.*.tmp`` files of atomic writes a killed run left in BUILD, and
    outputs a killed swap left waiting for deletion."""
    remove_replaced(root / ".state")
    removed = []
    for folder in (root / "manifests", root / ".state"):
        if folder.is_dir() and not folder.is_symlink():
            for path in folder.rglob(".*.tmp"):
                if path.is_file() and not path.is_symlink():
                    path.unlink(missing_ok=True)
                    removed.append(path)
    return removed
