"""Replace finished outputs only once their successors are complete.

A stage writes its new output beside the old one, then :func:`swap_in` moves the old out of
the way and the new into place with renames (instant on one file system), and only then
deletes the old. A run killed at any point leaves either the old output or the new one in
place, never a half-written one (``docs/contracts.md`` section 3).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def swap_in(moves: dict[Path, Path], scratch: Path) -> None:
    """Move each ``new -> final`` of ``moves`` into place, replacing what was there.

    Parameters
    ----------
    moves : dict
        Complete new outputs and where they belong, applied in order.
    scratch : Path
        A folder on the same file system where the replaced outputs wait until every move
        is done; they are deleted afterwards.
    """
    scratch.mkdir(parents=True, exist_ok=True)
    old = Path(tempfile.mkdtemp(prefix=".replaced-", dir=scratch))
    try:
        for k, (new, final) in enumerate(moves.items()):
            if final.exists() or final.is_symlink():
                os.replace(final, old / str(k))
            os.replace(new, final)
    finally:
        shutil.rmtree(old, ignore_errors=True)


def remove_replaced(scratch: Path) -> None:
    """Delete outputs a killed :func:`swap_in` left waiting in ``scratch``."""
    if scratch.is_dir():
        for path in scratch.glob(".replaced-*"):
            shutil.rmtree(path, ignore_errors=True)
