"""Build-level registration: one task per (slide, scanner) pair (a scan to its slide's
reference scan), run through :mod:`scorpion_build.parallel`, checkpointed per pair so a
re-run skips finished pairs and an interrupted run loses nothing that finished.

A pair's checkpoint follows the build's one resume rule (:mod:`scorpion_build.resume`):
it is reused while both scans' identity, the settings and the algorithm version match what
it recorded and its QC overlay is still there."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from scorpion_build import resume
from scorpion_build.lock import build_lock
from scorpion_build.manifest import BuildDir, order_columns, safe_name
from scorpion_build.options import check_scheduler, check_workers
from scorpion_build.parallel import run_tasks
from scorpion_build.register.pair import RegisterConfig, failed_row, identity_row
from scorpion_build.register.tasks import RegisterTask, Scan, keyed, qc_relpath, register_scan

log = logging.getLogger(__name__)

# Bump when a change to the algorithm should invalidate checkpointed pairs.
ALGORITHM_VERSION = 1
KEY_COLS = ["slide_id", "scanner"]
# The manifest is rewritten when a slide finishes, at most this often (s): the checkpoints
# already keep every finished pair, so rewriting the whole table after each pair only cost
# time that grows with the square of the build.
WRITE_EVERY_S = 30.0

__all__ = ["ALGORITHM_VERSION", "qc_relpath", "register_build", "register_scan"]


def register_build(
    build: str | os.PathLike,
    reference: str | None = None,
    config: RegisterConfig | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    force: bool = False,
    progress: bool = True,
) -> pd.DataFrame:
    """Register every scan of every slide in ``BUILD/manifests/slides.parquet`` to the
    ``reference`` scanner's scan (default: the one ``scan`` marked as reference); write
    ``registrations.parquet`` and ``qc/`` overlays.

    Finished pairs are checkpointed under ``BUILD/.state/register`` and reused on a re-run
    with the same inputs and settings while their QC overlay is there (unless ``force``;
    :mod:`scorpion_build.resume`); the manifest is rewritten when a slide finishes (at most
    every ``WRITE_EVERY_S`` seconds) and at the end. A pair whose registration failed on its
    merits (too few inliers) is reused like a finished one; one that crashed (unreadable
    file, I/O error) or whose file changed since scan is never cached, so it is retried
    once fixed and re-scanned.
    Returns the registrations table.

    Raises
    ------
    ValueError
        ``reference`` is not the scanner ``scan`` chose (the slides manifest marks it): the
        rest of the build (extract's axis order, QC) follows scan's choice.
    """
    config = config or RegisterConfig()
    check_workers(workers)
    check_scheduler(scheduler)
    bdir = BuildDir.at(build)
    with build_lock(bdir.root):
        bdir.refuse_links(bdir.qc / "register", bdir.state / "register")
        slides = bdir.read("slides")
        reference = _scan_reference(slides, reference, bdir)
        return _register_all(bdir, slides, reference, config, workers, scheduler, force, progress)


def _scan_reference(slides: pd.DataFrame, reference: str | None, bdir: BuildDir) -> str:
    """The reference scanner: the one scan marked; a different ``reference`` is refused."""
    marked = slides.loc[slides["is_reference"].astype(bool), "scanner"].unique()
    if not len(marked):
        return reference or "AT2"
    if reference is not None and reference != str(marked[0]):
        raise ValueError(
            f"--reference {reference} differs from the reference scan chose ({marked[0]}) "
            f"in {bdir.manifest('slides')}; re-run `scorpion-build scan INPUT -o {bdir.root} "
            f"--reference {reference}` first, or leave --reference out"
        )
    return str(marked[0])


def _register_all(
    bdir: BuildDir,
    slides: pd.DataFrame,
    reference: str,
    config: RegisterConfig,
    workers: int | None,
    scheduler: str | None,
    force: bool,
    progress: bool,
) -> pd.DataFrame:
    """Settle what needs no registering, run the rest as tasks; the registrations table."""
    done: dict[tuple[str, str], dict] = {}
    tasks: list[RegisterTask] = []
    for _, group in slides.groupby("slide_id", sort=True):
        scans = [Scan.from_row(r) for r in group.to_dict("records")]
        settled, moving = _plan_slide(bdir, scans, reference, config, force)
        done.update(settled)
        # one task per pair, in slide order: a few slides still fill every worker, and
        # each process mostly takes neighbouring pairs (their reference view is reused)
        tasks += moving
    if tasks:
        log.info("registering %d scans of %d slides", len(tasks), len({t.slide_id for t in tasks}))
    return _run(bdir, tasks, done, workers, scheduler, progress)


def _plan_slide(
    bdir: BuildDir, scans: list[Scan], reference: str, config: RegisterConfig, force: bool
) -> tuple[dict[tuple[str, str], dict], list[RegisterTask]]:
    """One slide's pairs: the rows settled without registering (reference, failed or
    changed scans, valid checkpoints) and the tasks left to run."""
    ref = next((s for s in scans if s.scanner == reference), None)
    settled: dict[tuple[str, str], dict] = {}
    pending: list[Scan] = []
    for scan in scans:
        row = _settled_row(scan, ref, reference, config)
        if row is None and not force:
            row = _load_checkpoint(bdir, scan, ref, config)
        if row is None:
            pending.append(scan)
        else:
            settled[(scan.slide_id, scan.scanner)] = row
    build = str(bdir.root)
    tasks = [RegisterTask(s, ref, config, len(pending), build) for s in pending]
    return settled, tasks


def _settled_row(
    scan: Scan, ref: Scan | None, reference: str, config: RegisterConfig
) -> dict | None:
    """The row of a pair decided without registering it, or None when it needs work."""
    changed = scan.changed()
    ref_changed = ref.changed() if ref is not None else ""
    if changed or ref_changed:
        message = changed or f"reference scan: {ref_changed}"
    elif ref is not None and scan is ref:
        return keyed(_reference_row(ref), ref, ref.scanner, config.method)
    elif ref is None:
        message = (
            f"slide {scan.slide_id} has no {reference} scan to register to; add it to the "
            "slide table or choose another --reference"
        )
        return keyed(failed_row(message), scan, reference, config.method)
    elif scan.failed:
        message = f"scan failed: {scan.message}"
    elif ref.failed:
        message = (
            f"the reference ({reference}) scan of slide {scan.slide_id} failed "
            f"({ref.message}); fix it first"
        )
    else:
        return None
    return keyed(failed_row(message), scan, ref.scanner if ref else reference, config.method)


def _run(
    bdir: BuildDir,
    tasks: list[RegisterTask],
    done: dict[tuple[str, str], dict],
    workers: int | None,
    scheduler: str | None,
    progress: bool,
) -> pd.DataFrame:
    """Run ``tasks``, checkpointing each finished pair; the manifest is rewritten when a
    slide's last pair ends (at most every ``WRITE_EVERY_S``) and once at the end."""
    left = {t.slide_id: 0 for t in tasks}
    for t in tasks:
        left[t.slide_id] += 1
    written = time.monotonic()
    _write(bdir, done.values())
    results = run_tasks(
        register_scan,
        tasks,
        workers=workers,
        scheduler=scheduler,
        desc="register",
        progress=progress,
    )
    for result in results:
        task: RegisterTask = result.item
        if result.error is not None:
            err = f"registration task crashed: {result.error.__class__.__name__}: {result.error}"
            row = keyed(failed_row(err), task.moving, task.reference.scanner, task.config.method)
        else:
            row = result.value
            if not row.get("_retry"):
                _save_checkpoint(bdir, task, row)
        done[(row["slide_id"], row["scanner"])] = row
        left[task.slide_id] -= 1
        if not left[task.slide_id] and time.monotonic() - written >= WRITE_EVERY_S:
            _write(bdir, done.values())
            written = time.monotonic()
    table = _table(done.values())
    bdir.write("registrations", table)
    return table


# -- rows, checkpoints ------------------------------------------------------------------------
def _reference_row(ref: Scan) -> dict:
    if ref.failed:
        return failed_row(f"reference scan failed: {ref.message}")
    return identity_row()


def _pair_fingerprint(moving: Scan, ref: Scan | None, config: RegisterConfig) -> str:
    """Everything a finished pair depends on: both inputs and the settings."""
    return resume.fingerprint(
        ALGORITHM_VERSION,
        config.as_dict(),
        moving.identity(),
        ref.identity() if ref is not None else None,
    )


def _checkpoint_path(bdir: BuildDir, slide_id: str, scanner: str, method: str) -> Path:
    return bdir.state / "register" / method / safe_name(slide_id) / f"{safe_name(scanner)}.json"


def _save_checkpoint(bdir: BuildDir, task: RegisterTask, row: dict) -> None:
    path = _checkpoint_path(bdir, task.slide_id, task.moving.scanner, task.config.method)
    outputs = [row["qc_image"]] if row.get("qc_image") else []
    fp = _pair_fingerprint(task.moving, task.reference, task.config)
    resume.save(path, fp, outputs, root=bdir.root, row=row)


def _load_checkpoint(
    bdir: BuildDir, moving: Scan, ref: Scan | None, config: RegisterConfig
) -> dict | None:
    """A finished pair's row, if its checkpoint is valid (:func:`scorpion_build.resume.load`)."""
    path = _checkpoint_path(bdir, moving.slide_id, moving.scanner, config.method)
    record = resume.load(path, _pair_fingerprint(moving, ref, config), root=bdir.root)
    row = record.get("row") if record is not None else None
    return row if isinstance(row, dict) else None


def _table(rows: Iterable[dict]) -> pd.DataFrame:
    table = pd.DataFrame([{k: v for k, v in r.items() if not k.startswith("_")} for r in rows])
    if table.empty:
        return order_columns(table, "registrations")
    table["matrix"] = [[float(v) for v in m] for m in table["matrix"]]
    for col in ("orientation", "matches", "inliers", "refine_blocks"):
        table[col] = pd.to_numeric(table[col]).fillna(0).astype("int64")
    table = order_columns(table, "registrations")
    return table.sort_values(KEY_COLS, kind="stable").reset_index(drop=True)


def _write(bdir: BuildDir, rows: Iterable[dict]) -> None:
    bdir.write("registrations", _table(list(rows)))
