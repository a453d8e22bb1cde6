"""Build-level registration: one task per (slide, scanner) pair (a scan to its slide's
reference scan), run through :mod:`scorpion_build.parallel`, checkpointed per pair so a
re-run skips finished pairs and an interrupted run loses nothing that finished."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from scorpion_build.lock import build_lock
from scorpion_build.manifest import BuildDir, order_columns, read_json, safe_name, write_json_atomic
from scorpion_build.options import check_scheduler, check_workers
from scorpion_build.parallel import cached, run_tasks
from scorpion_build.register.pair import (
    RegisterConfig,
    failed_row,
    identity_row,
    reference_view,
    register_pair,
)
from scorpion_build.scan import file_changed
from scorpion_build.slide import Slide

log = logging.getLogger(__name__)

# Bump when a change to the algorithm should invalidate checkpointed pairs.
ALGORITHM_VERSION = 1
KEY_COLS = ["slide_id", "scanner"]


def register_scan(task: dict) -> dict:
    """Task: register one scan of a slide to the slide's reference scan; one registration row.

    ``task`` holds only small things: ``slide_id``, ``reference`` and ``moving`` (slides-manifest
    rows as dicts), ``config`` (RegisterConfig fields), ``pairs`` (how many scans of this slide
    the run registers) and ``build`` (the build directory, for the QC pictures). Slides are
    opened here, in the worker; the reference slide and its coarse view are kept for the
    process's next pairs of the same slide (:func:`scorpion_build.parallel.cached`).
    """
    config = RegisterConfig(**task["config"])
    ref_row, mov_row = task["reference"], task["moving"]
    t0 = time.perf_counter()
    try:
        ref = cached(("slide", *_ident(ref_row)), lambda: _open(ref_row))
        ref_view = cached(("view", *_ident(ref_row), config), lambda: reference_view(ref, config))
    except Exception as exc:  # the reference itself is unusable: every pair fails with it
        msg = f"reference scan {ref_row['path']} cannot be used: {exc}"
        return _with_keys(failed_row(msg), mov_row, ref_row, config)
    ref_seconds = time.perf_counter() - t0  # ~0 when this process already had the view
    build = BuildDir.at(task["build"])
    rel = qc_relpath(task["slide_id"], mov_row["scanner"], config.method)
    try:
        with _open(mov_row) as mov:
            row = register_pair(
                ref,
                mov,
                config,
                ref_view=ref_view,
                qc_path=build.root / rel,
                label=f"{task['slide_id']} {mov_row['scanner']}->{ref_row['scanner']}",
            )
        row["qc_image"] = str(rel) if (build.root / rel).is_file() else ""
    except Exception as exc:  # one bad scan must not stop the slide's other scans
        log.debug("registration failed", exc_info=True)
        row = failed_row(f"{mov_row['path']}: {exc.__class__.__name__}: {exc}")
        # a crash (unreadable file, I/O error) may not happen again: never cached
        row["_retry"] = True
    # the reference view serves the slide's pairs: a process that computes it charges
    # each pair a share
    row["seconds"] = row.get("seconds", 0.0) + ref_seconds / task["pairs"]
    return _with_keys(row, mov_row, ref_row, config)


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
    with the same inputs and settings (unless ``force``); the manifest is rewritten after
    every finished slide. A pair whose registration failed on its merits (too few inliers)
    is reused like a finished one; one that crashed (unreadable file, I/O error) or whose
    file changed since scan is never cached, so it is retried once fixed and re-scanned.
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


def _register_all(bdir, slides, reference, config, workers, scheduler, force, progress):  # noqa: ANN001, ANN202
    done: dict[tuple[str, str], dict] = {}
    tasks = []
    for slide_id, group in slides.groupby("slide_id", sort=True):
        rows = [_clean(r) for r in group.to_dict("records")]
        refs = [r for r in rows if r["scanner"] == reference]
        ref_row = refs[0] if refs else None
        moving = []
        changed = {r["scanner"]: file_changed(r) for r in rows}
        for row in rows:
            if changed[row["scanner"]] or (ref_row is not None and changed[ref_row["scanner"]]):
                msg = changed[row["scanner"]] or f"reference scan: {changed[ref_row['scanner']]}"
                done[(slide_id, row["scanner"])] = _with_keys(failed_row(msg), row, ref_row, config)
            elif ref_row is not None and row is ref_row:
                done[(slide_id, row["scanner"])] = _reference_row(row, config)
            elif ref_row is None:
                msg = (
                    f"slide {slide_id} has no {reference} scan to register to; add it to the "
                    "slide table or choose another --reference"
                )
                done[(slide_id, row["scanner"])] = _with_keys(
                    failed_row(msg), row, None, config, reference
                )
            elif row.get("status") == "failed":
                msg = f"scan failed: {row.get('message', '')}"
                done[(slide_id, row["scanner"])] = _with_keys(failed_row(msg), row, ref_row, config)
            elif ref_row.get("status") == "failed":
                msg = (
                    f"the reference ({reference}) scan of slide {slide_id} failed "
                    f"({ref_row.get('message', '')}); fix it first"
                )
                done[(slide_id, row["scanner"])] = _with_keys(failed_row(msg), row, ref_row, config)
            else:
                checkpoint = None if force else _load_checkpoint(bdir, row, ref_row, config)
                if checkpoint is not None:
                    done[(slide_id, row["scanner"])] = checkpoint
                else:
                    moving.append(row)
        # one task per pair, in slide order: a few slides still fill every worker, and
        # each process mostly takes neighbouring pairs (their reference view is reused)
        tasks += [
            {
                "slide_id": str(slide_id),
                "reference": ref_row,
                "moving": row,
                "pairs": len(moving),
                "config": config.as_dict(),
                "build": str(bdir.root),
            }
            for row in moving
        ]
    if tasks:
        log.info(
            "registering %d scans of %d slides", len(tasks), len({t["slide_id"] for t in tasks})
        )
    _write(bdir, done.values())
    for result in run_tasks(
        register_scan,
        tasks,
        workers=workers,
        scheduler=scheduler,
        desc="register",
        progress=progress,
    ):
        task = result.item
        if result.error is not None:
            err = f"registration task crashed: {result.error.__class__.__name__}: {result.error}"
            row = _with_keys(failed_row(err), task["moving"], task["reference"], config)
        else:
            row = result.value
            if not row.get("_retry"):
                _save_checkpoint(bdir, row)
        done[(row["slide_id"], row["scanner"])] = row
        _write(bdir, done.values())
    return _table(done.values())


def qc_relpath(slide_id: str, scanner: str, method: str) -> Path:
    """QC overlay path relative to the build directory."""
    suffix = "" if method == "robust" else f"_{method}"
    return Path("qc") / "register" / f"{safe_name(slide_id)}_{safe_name(scanner)}{suffix}.png"


# -- rows, checkpoints ------------------------------------------------------------------------
def _open(row: dict) -> Slide:
    mpp = (row["mpp_x"], row["mpp_y"]) if np.isfinite(row.get("mpp_x", np.nan)) else None
    return Slide(row["path"], reader=row.get("reader") or "auto", mpp=mpp)


def _clean(row: dict) -> dict:
    """A slides-manifest row with plain Python values (it travels to workers and to JSON)."""
    out = {}
    for k, v in row.items():
        if isinstance(v, np.generic):
            v = v.item()
        out[k] = None if v is pd.NA else v
    return out


def _pair_key(mov_row: dict, ref_row: dict | None, config: RegisterConfig) -> dict:
    """Everything a finished pair depends on: both inputs and the settings."""

    return {
        "version": ALGORITHM_VERSION,
        "config": config.as_dict(),
        "moving": list(_ident(mov_row)),
        "reference": list(_ident(ref_row)) if ref_row is not None else None,
    }


def _ident(row: dict) -> tuple:
    """What identifies a scan's pixels: its file, size, resolution and reader."""
    return (
        row["path"],
        row.get("file_size"),
        row.get("file_mtime_ns"),
        row.get("mpp_x"),
        row.get("mpp_y"),
        row.get("reader"),
    )


def _with_keys(
    row: dict,
    mov_row: dict,
    ref_row: dict | None,
    config: RegisterConfig,
    reference: str | None = None,
) -> dict:
    row = dict(row)
    row.update(
        slide_id=str(mov_row["slide_id"]),
        scanner=str(mov_row["scanner"]),
        reference=str(ref_row["scanner"]) if ref_row is not None else reference,
        method=config.method,
        _key=_pair_key(mov_row, ref_row, config),
    )
    return row


def _reference_row(ref_row: dict, config: RegisterConfig) -> dict:
    if ref_row.get("status") == "failed":
        row = failed_row(f"reference scan failed: {ref_row.get('message', '')}")
    else:
        row = identity_row()
    return _with_keys(row, ref_row, ref_row, config)


def _checkpoint_path(bdir: BuildDir, slide_id: str, scanner: str, method: str) -> Path:
    return bdir.state / "register" / method / safe_name(slide_id) / f"{safe_name(scanner)}.json"


def _save_checkpoint(bdir: BuildDir, row: dict) -> None:
    write_json_atomic(row, _checkpoint_path(bdir, row["slide_id"], row["scanner"], row["method"]))


def _load_checkpoint(
    bdir: BuildDir, mov_row: dict, ref_row: dict, config: RegisterConfig
) -> dict | None:
    path = _checkpoint_path(bdir, str(mov_row["slide_id"]), str(mov_row["scanner"]), config.method)
    row = read_json(path)  # None when missing or damaged: recomputed
    if not isinstance(row, dict):
        return None
    # JSON turns tuples into lists: compare through the same round trip
    key = json.loads(json.dumps(_pair_key(mov_row, ref_row, config), default=str))
    return row if row.get("_key") == key else None


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
