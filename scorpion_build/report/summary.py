"""What the report says about a build's manifests: stage counts, failures, registration QC
and flagged patches, as plain rows for the template. A missing manifest is reported, not
raised."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scorpion_build.manifest import WRITERS, BuildDir

STAGES = ("slides", "registrations", "regions", "patches")
# columns that name a row, per manifest
KEYS = {
    "slides": ["slide_id", "scanner"],
    "registrations": ["slide_id", "scanner"],
    "regions": ["slide_id", "region_index"],
    "patches": ["sample_id", "scanner"],
    "annotations": ["slide_id", "feature"],
}
# manifests only some builds have (extract --annotations)
OPTIONAL = ("annotations",)
_SEVERITY = {"ok": 0, "warn": 1, "failed": 2}


def load_manifests(build: BuildDir) -> dict[str, pd.DataFrame | None]:
    """Every manifest that exists, None for those whose stage has not run."""
    names = STAGES + OPTIONAL
    return {name: build.read(name) if build.manifest(name).is_file() else None for name in names}


def stage_counts(tables: dict[str, pd.DataFrame | None]) -> list[dict[str, Any]]:
    """Per stage: whether it ran, and its row count by status."""
    rows = []
    for name in STAGES:
        table = tables[name]
        if table is None:
            rows.append({"stage": name, "present": False, "hint": WRITERS[name]})
            continue
        counts = table["status"].value_counts()
        rows.append(
            {
                "stage": name,
                "present": True,
                "rows": len(table),
                **{s: int(counts.get(s, 0)) for s in _SEVERITY},
            }
        )
    return rows


def problems(table: pd.DataFrame | None, stage: str) -> list[dict[str, Any]]:
    """Rows whose status is not ok, grouped by identical (status, message): one entry per
    group with the stage, status, message, ``count`` and ``items`` (the rows' keys, in
    order); failed first, then the largest groups."""
    if table is None or table.empty:
        return []
    return [{"stage": stage, **g} for g in group_messages(table, KEYS[stage])]


def group_messages(table: pd.DataFrame, keys: list[str]) -> list[dict[str, Any]]:
    """Group the rows whose status is not ok by identical (status, message).

    Nine regions with the same warning are one line saying so, not nine rows.

    Returns
    -------
    list of dict
        ``status``, ``message``, ``count`` and ``items`` (each row's ``keys`` joined by
        " / "), failed groups first, then by size, then by message.
    """
    groups: dict[tuple[str, str], list[str]] = {}
    for row in table[table["status"] != "ok"].to_dict("records"):
        item = " / ".join(str(row[c]) for c in keys if c in row)
        groups.setdefault((row["status"], text(row.get("message"))), []).append(item)
    rows = [
        {"status": status, "message": message, "count": len(items), "items": items}
        for (status, message), items in groups.items()
    ]
    return sorted(rows, key=lambda r: (-_SEVERITY.get(r["status"], 0), -r["count"], r["message"]))


def overview(tables: dict[str, pd.DataFrame | None]) -> dict[str, Any]:
    """Headline numbers: slides, scanners, reference, samples, patches."""
    slides, patches, regions = tables["slides"], tables["patches"], tables["regions"]
    info: dict[str, Any] = {}
    if slides is not None:
        info["slides"] = int(slides["slide_id"].nunique())
        info["scanners"] = sorted(slides["scanner"].unique().tolist())
        refs = slides.loc[slides["is_reference"].astype(bool), "scanner"].unique().tolist()
        info["reference"] = ", ".join(sorted(refs))
        info["scans_failed"] = int((slides["status"] == "failed").sum())
    if regions is not None:
        info["samples"] = int((regions["status"] != "failed").sum())
    if patches is not None:
        info["patches"] = int((patches["status"] != "failed").sum())
        info["patches_flagged"] = int((patches["status"] != "ok").sum())
    return info


def slide_matrix(tables: dict[str, pd.DataFrame | None]) -> dict[str, Any] | None:
    """Slide x scanner grid of the worse of the scan and registration status, with messages."""
    frames = [
        tables[n][["slide_id", "scanner", "status", "message"]].assign(stage=n)
        for n in ("slides", "registrations")
        if tables[n] is not None
    ]
    if not frames:
        return None
    both = pd.concat(frames, ignore_index=True)
    scanners = sorted(both["scanner"].unique().tolist())
    slides = sorted(both["slide_id"].unique().tolist())
    cells: dict[tuple[str, str], dict[str, str]] = {}
    for _, row in both.iterrows():
        key = (row["slide_id"], row["scanner"])
        current = cells.get(key)
        if current is None or _SEVERITY.get(row["status"], 0) > _SEVERITY[current["status"]]:
            cells[key] = {
                "status": row["status"],
                "message": f"{row['stage']}: {text(row['message'])}",
            }
    grid = [
        {
            "slide_id": s,
            "cells": [
                cells.get((s, sc), {"status": "absent", "message": "no scan"}) for sc in scanners
            ],
        }
        for s in slides
    ]
    return {"scanners": scanners, "rows": grid}


def registration_rows(regs: pd.DataFrame | None, build: BuildDir) -> list[dict[str, Any]]:
    """One row per registration with its QC overlay as a path relative to ``BUILD/report``."""
    if regs is None:
        return []
    rows = []
    for _, r in regs.sort_values(["slide_id", "scanner"]).iterrows():
        row = {k: clean_value(r.get(k)) for k in regs.columns if k not in ("matrix",)}
        qc = r.get("qc_image")
        row["qc_src"] = None
        if isinstance(qc, str) and qc and (build.root / qc).is_file():
            row["qc_src"] = report_src(build.root / qc, build)
        rows.append(row)
    return rows


def report_src(path: Path, build: BuildDir) -> str:
    """``path`` relative to ``BUILD/report``, as an ``<img src>`` of the report."""
    return Path(os.path.relpath(path, build.report)).as_posix()


def text(value: Any) -> str:
    """A manifest message as text: missing (None, NaN) is empty, not 'nan'."""
    return value if isinstance(value, str) else ""


def clean_value(value: Any) -> Any:
    """NaN/None -> None, numpy scalars -> Python, so the template prints '-' for missing."""
    if value is None:
        return None
    if isinstance(value, float | np.floating) and not np.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def flagged_patches(patches: pd.DataFrame | None) -> pd.DataFrame:
    """Patches whose status is not ok: warnings first, then failures, by sample and scanner.

    Warnings come first because they have pixels worth looking at (a patch that was
    extracted but does not match its reference); a failed patch was never extracted and its
    cause is usually a failed scan already listed in the summary.
    """
    if patches is None:
        return pd.DataFrame(columns=["index", "sample_id", "scanner", "status", "message"])
    bad = patches[patches["status"] != "ok"].copy()
    bad["_sev"] = bad["status"].map(_SEVERITY).fillna(0)
    return bad.sort_values(["_sev", "sample_id", "scanner"]).drop(columns="_sev")


def similarity_table(patches: pd.DataFrame | None, reference: str | None) -> list[dict[str, Any]]:
    """Per scanner: patches, flagged count, median and minimum NCC to the reference patch."""
    if patches is None or patches.empty:
        return []
    rows = []
    for scanner, group in patches.groupby("scanner", sort=True):
        sim = group["similarity"].astype(float)
        sim = sim[np.isfinite(sim)]
        rows.append(
            {
                "scanner": scanner,
                "reference": scanner == reference,
                "n": len(group),
                "flagged": int((group["status"] != "ok").sum()),
                "failed": int((group["status"] == "failed").sum()),
                "median": float(sim.median()) if len(sim) else None,
                "minimum": float(sim.min()) if len(sim) else None,
            }
        )
    return rows


def load_benchmark(directory: Path | None, copy_to: Path) -> dict[str, Any] | None:
    """The benchmark's ``report.json`` with its figures copied under ``copy_to``.

    Copies (rather than links) the PNGs so the report folder stays self-contained whatever
    directory the benchmark was written to. Returns None when there is no report.json.
    """
    if directory is None or not (Path(directory) / "report.json").is_file():
        return None
    directory = Path(directory)
    try:
        data = json.loads((directory / "report.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return {"error": f"{directory / 'report.json'} is not readable JSON ({exc})"}
    copy_to.mkdir(parents=True, exist_ok=True)
    images = []
    for png in sorted(directory.glob("*.png")):
        shutil.copyfile(png, copy_to / png.name)
        images.append({"name": png.stem.replace("_", " "), "file": png.name})
    per_class = data.get("per_class") or {}
    classes = []
    if isinstance(per_class, dict):
        for name, value in per_class.items():
            if isinstance(value, dict):
                classes.append(
                    {"name": name, "average": value.get("average"), "minimum": value.get("minimum")}
                )
            else:
                classes.append({"name": name, "average": value, "minimum": None})
    return {
        "source": str(directory),
        "scanners": data.get("scanners", []),
        "pairwise": [
            {**p, "ci": _interval(p.get("ci"))}
            for p in data.get("pairwise", [])
            if isinstance(p, dict)
        ],
        "average": data.get("average"),
        "minimum": data.get("minimum"),
        "n_samples": data.get("n_samples"),
        "model": data.get("model") or data.get("model_name"),
        "per_class": classes,
        "images": images,
        # bootstrap intervals (docs/contracts.md section 5): shown beside every figure
        "average_ci": _interval(data.get("average_ci")),
        "minimum_ci": _interval(data.get("minimum_ci")),
        "failure_rate": data.get("failure_rate"),
        "failure_rate_ci": _interval(data.get("failure_rate_ci")),
        "failure_threshold": data.get("failure_threshold"),
        "confidence": data.get("confidence"),
        "n_bootstrap": data.get("n_bootstrap"),
        "task": _task_rows(data.get("task_dice")),
        "warnings": [str(w) for w in data.get("warnings") or []],
    }


def _interval(value: Any) -> list[float | None] | None:
    """A ``[low, high]`` interval from report.json, or None when absent or malformed."""
    if isinstance(value, list | tuple) and len(value) == 2:
        return [clean_value(v) if isinstance(v, int | float) else None for v in value]
    return None


def _task_rows(task: Any) -> list[dict[str, Any]]:
    """Task Dice per scanner (benchmark ``--labels``), as table rows; [] without it."""
    per = task.get("per_scanner") if isinstance(task, dict) else None
    if not isinstance(per, dict):
        return []
    return [
        {"scanner": name, "dice": v.get("dice"), "n": v.get("n")}
        for name, v in per.items()
        if isinstance(v, dict)
    ]
