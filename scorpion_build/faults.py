"""Deterministic fault injection for kill-and-resume tests.

Setting ``SCORPION_BUILD_FAULT=<point>:<n>`` makes the process kill itself with SIGKILL
right after it passes ``<point>`` for the ``n``-th time, e.g. ``extract-marker:2`` after
extract has checkpointed its second sample. Tests use it instead of polling for files and
racing the process: the kill always lands mid-run, at the same place. Unset, it costs one
dictionary lookup.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "SCORPION_BUILD_FAULT"
_passed: Counter[str] = Counter()


def reached(point: str) -> None:
    """Count one pass through ``point``; kill this process if the fault spec says so."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    name, _, count = spec.partition(":")
    if name != point:
        return
    _passed[point] += 1
    if _passed[point] >= int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
