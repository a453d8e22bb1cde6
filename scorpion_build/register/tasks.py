"""What a registration task carries to a worker and what it sends back: typed, frozen
payloads (a scan, a pair to register) and the worker function itself.

Tasks hold only small things (paths, numbers, settings); slides are opened in the worker.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from scorpion_build.manifest import BuildDir, safe_name
from scorpion_build.parallel import cached
from scorpion_build.register.pair import RegisterConfig, failed_row, reference_view, register_pair
from scorpion_build.scan import file_changed
from scorpion_build.slide import Slide

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scan:
    """One scan as register uses it: a ``slides.parquet`` row's identity and status
    (``docs/contracts.md`` section 3; resolutions in um/px, NaN when unknown)."""

    slide_id: str
    scanner: str
    path: str
    reader: str = "auto"
    mpp_x: float = math.nan
    mpp_y: float = math.nan
    file_size: int | None = None
    file_mtime_ns: int | None = None
    status: str = "ok"
    message: str = ""

    @classmethod
    def from_row(cls, row: dict) -> Scan:
        """The scan of a slides-manifest row (pandas/NumPy scalars and NA made plain)."""
        names = cls.__dataclass_fields__
        plain = {k: _plain(v) for k, v in row.items() if k in names}
        for key in ("mpp_x", "mpp_y"):
            plain[key] = math.nan if plain.get(key) is None else float(plain[key])
        plain["reader"] = plain.get("reader") or "auto"
        plain["message"] = plain.get("message") or ""
        plain["slide_id"], plain["scanner"] = str(plain["slide_id"]), str(plain["scanner"])
        return cls(**plain)

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    def identity(self) -> tuple:
        """What identifies the scan's pixels: its file, size, time, resolution and reader."""
        return (
            self.path,
            self.file_size,
            self.file_mtime_ns,
            self.mpp_x,
            self.mpp_y,
            self.reader,
        )

    def changed(self) -> str:
        """Why the manifest no longer describes the file ("" when it still does)."""
        return file_changed(asdict(self))

    def open(self) -> Slide:
        mpp = (self.mpp_x, self.mpp_y) if np.isfinite(self.mpp_x) else None
        return Slide(self.path, reader=self.reader, mpp=mpp)


@dataclass(frozen=True)
class RegisterTask:
    """One scan to register to its slide's reference scan.

    ``pairs``: how many scans of this slide the run registers (each is charged a share of
    the reference view's time); ``build``: the build directory, for the QC overlay.
    """

    moving: Scan
    reference: Scan
    config: RegisterConfig
    pairs: int
    build: str

    @property
    def slide_id(self) -> str:
        return self.moving.slide_id

    def qc_relpath(self) -> Path:
        """The QC overlay's path relative to the build directory."""
        return qc_relpath(self.slide_id, self.moving.scanner, self.config.method)


def qc_relpath(slide_id: str, scanner: str, method: str) -> Path:
    """QC overlay path relative to the build directory."""
    suffix = "" if method == "robust" else f"_{method}"
    return Path("qc") / "register" / f"{safe_name(slide_id)}_{safe_name(scanner)}{suffix}.png"


def keyed(row: dict, moving: Scan, reference: str | None, method: str) -> dict:
    """``row`` with the columns that name its pair (slide, scanner, reference, method)."""
    return {
        **row,
        "slide_id": moving.slide_id,
        "scanner": moving.scanner,
        "reference": reference,
        "method": method,
    }


def register_scan(task: RegisterTask) -> dict:
    """Task: register one scan of a slide to the slide's reference scan; one registration row.

    The reference slide and its coarse view are kept for the process's next pairs of the
    same slide (:func:`scorpion_build.parallel.cached`). A row whose ``_retry`` is set
    (a crash: unreadable file, I/O error) must not be reused by a later run.
    """
    config, ref, mov = task.config, task.reference, task.moving
    t0 = time.perf_counter()
    try:
        ref_slide = cached(("slide", *ref.identity()), ref.open)
        ref_view = cached(
            ("view", *ref.identity(), config), lambda: reference_view(ref_slide, config)
        )
    except Exception as exc:  # the reference itself is unusable: every pair fails with it
        msg = f"reference scan {ref.path} cannot be used: {exc}"
        return keyed(failed_row(msg), mov, ref.scanner, config.method)
    ref_seconds = time.perf_counter() - t0  # ~0 when this process already had the view
    qc_path = BuildDir.at(task.build).root / task.qc_relpath()
    try:
        with mov.open() as mov_slide:
            row = register_pair(
                ref_slide,
                mov_slide,
                config,
                ref_view=ref_view,
                qc_path=qc_path,
                label=f"{task.slide_id} {mov.scanner}->{ref.scanner}",
            )
        row["qc_image"] = str(task.qc_relpath()) if qc_path.is_file() else ""
    except Exception as exc:  # one bad scan must not stop the slide's other scans
        log.debug("registration failed", exc_info=True)
        row = failed_row(f"{mov.path}: {exc.__class__.__name__}: {exc}")
        # a crash (unreadable file, I/O error) may not happen again: never reused
        row["_retry"] = True
    # the reference view serves the slide's pairs: a process that computes it charges
    # each pair a share
    row["seconds"] = row.get("seconds", 0.0) + ref_seconds / task.pairs
    return keyed(row, mov, ref.scanner, config.method)


def _plain(value: object) -> object:
    """A plain Python value (it travels to workers and into JSON)."""
    if isinstance(value, np.generic):
        value = value.item()
    return None if value is pd.NA else value
