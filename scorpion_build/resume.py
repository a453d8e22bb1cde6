"""The one resume rule every stage follows (``docs/contracts.md`` section 3, ``.state/``).

Work is reused when the fingerprint of its inputs (files' identity, upstream outputs, its
settings) matches the one it recorded AND every output it recorded is still there as it
left it. Anything else (no record, a damaged record, another fingerprint, an output deleted
or replaced) means "do it again". Register checks this per pair, ``run`` per stage.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from scorpion_build.files import write_json_atomic
from scorpion_build.manifest import read_json


def file_identity(path: str | os.PathLike) -> str:
    """What tells one version of a file from another without reading it: its path, size
    (bytes) and modification time (ns). A folder (e.g. of annotations) is named by the
    entries directly in it; a missing path says so (a later file at that path differs)."""
    path = Path(path)
    if path.is_dir():
        return "".join(f"{f}:{_stat(f)}" for f in sorted(path.iterdir()))
    return f"{path}:{_stat(path)}"


def fingerprint(*parts: object) -> str:
    """A short digest of ``parts`` (settings, identities, upstream fingerprints): any
    JSON-able values; tuples and lists digest alike, so a value read back from JSON matches."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def output_identity(path: str | os.PathLike) -> str:
    """An output's identity as :func:`load` checks it: a file's size and time (ns); a
    folder's time, which changes when an entry directly in it is added or removed, or the
    folder is replaced by a new one (an export or a store swapped in whole). What lies
    deeper (a store's chunks) the stage that wrote it checks itself when it runs."""
    path = Path(path)
    if path.is_dir():
        return f"folder:{path.stat().st_mtime_ns}"
    return _stat(path)


def save(
    record: str | os.PathLike,
    fp: str,
    outputs: Iterable[str | os.PathLike] = (),
    root: Path | None = None,
    **extra: object,
) -> None:
    """Record finished work: its inputs' fingerprint ``fp``, the identity of each of its
    ``outputs`` as they are now, and ``extra`` JSON-able values returned by :func:`load`.

    ``outputs`` are paths relative to ``root`` (the build directory), so a build copied or
    moved elsewhere keeps its records."""
    body = {str(p): output_identity(_under(root, p)) for p in outputs}
    write_json_atomic({**extra, "fingerprint": fp, "outputs": body}, record)


def load(
    record: str | os.PathLike,
    fp: str,
    root: Path | None = None,
    check: Callable[[dict], bool] | None = None,
) -> dict | None:
    """The record of finished work that is still valid for inputs ``fp``, or None (redo it).

    Valid means: readable, recorded with the same fingerprint, every output it lists
    (relative to ``root``) still has the identity it had when recorded (not deleted, not
    replaced), and ``check(record)`` holds where a stage looks deeper (a store that must
    open, patches that must match their checksums).
    """
    body = read_json(record)  # None when missing or damaged: bookkeeping is only a cache
    if not isinstance(body, dict) or body.get("fingerprint") != fp:
        return None
    outputs = body.get("outputs")
    if not isinstance(outputs, dict):
        return None
    if any(output_identity(_under(root, p)) != ident for p, ident in outputs.items()):
        return None
    return body if check is None or check(body) else None


def _stat(path: Path) -> str:
    try:
        st = path.stat()
    except OSError:
        return "missing"
    return f"{st.st_size}:{st.st_mtime_ns}"


def _under(root: Path | None, path: str | os.PathLike) -> Path:
    return Path(path) if root is None else Path(root) / path
