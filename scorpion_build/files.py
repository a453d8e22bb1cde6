"""Writing and fingerprinting files: atomic replacement and SHA-256 digests.

Every output the tool writes goes through :func:`write_atomic`, so a reader (or a run
killed half-way) sees the old file or the whole new one, never a torn one
(``docs/contracts.md`` section 3).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path

_BLOCK_BYTES = 1 << 20  # read size when hashing: 1 MiB


def write_atomic(path: str | os.PathLike, write: Callable[[str], object]) -> Path:
    """Call ``write(tmp)`` on a new temp file beside ``path``, then rename it over ``path``.

    The rename is atomic on one file system. A write that fails removes its temp file; a
    killed one leaves only a ``.NAME.*.tmp`` that the next locked run removes
    (:func:`scorpion_build.lock.remove_stale_temps`).

    Parameters
    ----------
    path : str or PathLike
        The final file; its folder is created when missing.
    write : callable
        Writes the whole content to the temp file path it is given (a ``str``).

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    # created with mode 0o666 less the umask, like any plain open(): tempfile.mkstemp's
    # 0o600 would leave manifests unreadable to the rest of a group sharing a build
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        write(str(tmp))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`write_atomic`)."""
    return write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json_atomic(obj: object, path: str | os.PathLike) -> Path:
    """Write JSON (indented, sorted keys) atomically (:func:`write_atomic`)."""
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str))


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_BLOCK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()
