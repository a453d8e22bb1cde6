"""Run the configured stages in order, skipping those whose inputs and config are unchanged.

Each finished stage records a fingerprint (its options, the previous stage's fingerprint,
and for ``scan`` the slide table and slide files' sizes and times) in
``BUILD/.state/stages/<stage>.json``. A stage whose fingerprint changed re-runs, and so does
every stage after it. Stages resume their own finished work, so an interrupted run loses
nothing that finished.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from scorpion_build import logs
from scorpion_build.errors import error_line
from scorpion_build.local_pool import warm_up
from scorpion_build.lock import build_lock
from scorpion_build.manifest import BuildDir, read_json, write_json_atomic
from scorpion_build.options import check_scheduler
from scorpion_build.parallel import usable_cpus
from scorpion_build.pipeline.config import STAGES, PipelineConfig
from scorpion_build.pipeline.stages import STAGE_FUNCTIONS

# stage lines go to the log file; the terminal gets the echo lines
log = logging.getLogger(f"{logs.FILE_ONLY}.pipeline")


@dataclass
class StageResult:
    """One stage's outcome. ``counts`` maps what was counted (``regions``, ``patches``,
    ``pairs``...) to its ``{"ok": n, "warn": n, "failed": n}``."""

    stage: str
    skipped: bool
    seconds: float
    counts: dict[str, dict[str, int]]
    error: str = ""

    def line(self) -> str:
        if self.error:
            return f"{self.stage:10s} ERROR  {self.error}"
        what = "skipped (unchanged)" if self.skipped else f"{self.seconds:7.1f} s"
        counts = "; ".join(
            f"{label}: " + ", ".join(f"{k} {v}" for k, v in c.items())
            for label, c in self.counts.items()
        )
        return f"{self.stage:10s} {what:>20s}  {counts}"

    @property
    def failed(self) -> bool:
        return bool(self.error) or any(c.get("failed", 0) > 0 for c in self.counts.values())


def fingerprint(config: PipelineConfig, stage: str, previous: str) -> str:
    h = hashlib.sha256(stage.encode())
    h.update(previous.encode())
    h.update(json.dumps(config.stage_options(stage), sort_keys=True, default=str).encode())
    if stage == "scan" and config.scan.input:
        source = config.path(config.scan.input)
        h.update(_files_signature(source, tuple(config.scan.ignore)).encode())
    if stage in ("register", "extract", "benchmark"):
        for name in ("model", "predictions", "regions_from", "annotations", "classes"):
            value = config.stage_options(stage).get(name)
            path = config.path(value) if value else None
            if path is not None and path.is_file():
                h.update(_stat(path).encode())
            elif path is not None and path.is_dir():  # an annotation folder: every file
                h.update("".join(_stat(f) for f in sorted(path.iterdir())).encode())
    if stage == "analyze" and config.benchmark is not None:
        # the report shows the benchmark: a new or re-run benchmark re-runs analyze
        report = config.build_dir / config.benchmark.out / "report.json"
        h.update((_stat(report) if report.is_file() else "no benchmark").encode())
    return h.hexdigest()[:20]


def _stat(path: Path) -> str:
    st = path.stat()
    return f"{path}:{st.st_size}:{st.st_mtime_ns}"


def _files_signature(source: Path, ignore: tuple[str, ...] = ()) -> str:
    from scorpion_build.scan import read_slide_table

    parts = [_stat(source)] if source.is_file() else []
    table = read_slide_table(source, ignore)
    parts += [_stat(Path(p)) if Path(p).exists() else f"{p}:missing" for p in table["path"]]
    return "\n".join(parts)


def _item_keys(result: pd.DataFrame) -> list[str]:
    """Columns naming an item of a stage's table in the per-item log lines."""
    columns = getattr(result, "columns", [])
    if "sample_id" in columns:
        return ["sample_id", "scanner"]
    return [c for c in ("slide_id", "region_index", "scanner") if c in columns]


def _tables(result: pd.DataFrame | dict | None) -> dict[str, pd.DataFrame]:
    """A stage's labelled tables (a bare table counts ``items``)."""
    if result is None:
        return {}
    tables = result if isinstance(result, dict) else {"items": result}
    return {k: t for k, t in tables.items() if "status" in getattr(t, "columns", [])}


def _counts(tables: dict[str, pd.DataFrame]) -> dict[str, dict[str, int]]:
    out = {}
    for label, table in tables.items():
        counts = table["status"].value_counts().to_dict()
        out[label] = {k: int(counts.get(k, 0)) for k in ("ok", "warn", "failed")}
    return out


def _recorded_counts(record: dict) -> dict[str, dict[str, int]]:
    counts = record.get("counts", {})
    if counts and all(isinstance(v, int) for v in counts.values()):  # older flat records
        return {"items": counts}
    return counts


def select_stages(config: PipelineConfig, start: str | None, until: str | None) -> list[str]:
    stages = config.stages()
    for name, value in (("--from", start), ("--until", until)):
        if value is not None and value not in STAGES:
            raise ValueError(f"{name} {value}: not a stage; choose one of {', '.join(STAGES)}")
    lo = STAGES.index(start) if start else 0
    hi = STAGES.index(until) if until else len(STAGES) - 1
    return [s for s in stages if lo <= STAGES.index(s) <= hi]


def run_pipeline(
    config: PipelineConfig,
    start: str | None = None,
    until: str | None = None,
    scheduler: str | None = None,
    force: bool = False,
    echo=print,  # noqa: ANN001 - click.echo in the CLI
) -> list[StageResult]:
    """Run the selected stages; returns one result per stage (errors are recorded, and the
    stages after a crashed stage are not run)."""
    build = config.build_dir
    state = build / ".state" / "stages"
    selected = select_stages(config, start, until)
    scheduler = scheduler or config.scheduler
    check_scheduler(scheduler)
    bd = BuildDir.at(build)
    bd.refuse_links(bd.state / "stages", bd.root / "logs")  # no writes through planted links
    parallel = (config.workers or usable_cpus()) > 1
    if parallel and not scheduler and {"register", "extract"} & set(selected):
        warm_up()  # helper processes' imports run beside the stages before them
    results: list[StageResult] = []
    run_log = logs.session("run", build, console=False)
    with build_lock(build), run_log as log_file:
        echo(f"build {build}  (log: {log_file.path})")
        previous = ""
        for stage in config.stages():
            fp = fingerprint(config, stage, previous)
            previous = fp
            if stage not in selected:
                continue
            record_file = state / f"{stage}.json"
            record = read_json(record_file)
            record = record if isinstance(record, dict) else {}  # damaged: run the stage
            if not force and record.get("fingerprint") == fp:
                results.append(StageResult(stage, True, 0.0, _recorded_counts(record)))
                echo(results[-1].line())
                log.info("stage %s unchanged, skipped", stage)
                continue
            echo(f"== {stage}")
            log.info("stage %s starting (fingerprint %s)", stage, fp)
            t0 = time.perf_counter()
            try:
                out = STAGE_FUNCTIONS[stage](config, scheduler, force)
            except SystemExit:
                raise
            except Exception as exc:
                log.exception("stage %s crashed", stage)
                results.append(
                    StageResult(
                        stage,
                        False,
                        time.perf_counter() - t0,
                        {},
                        error_line(exc),
                    )
                )
                echo(results[-1].line())
                break
            tables = _tables(out)
            for label, table in tables.items():  # one log line per warned or failed row
                logs.log_items(table, f"{stage} {label}", _item_keys(table))
            res = StageResult(stage, False, time.perf_counter() - t0, _counts(tables))
            results.append(res)
            write_json_atomic(
                {
                    "fingerprint": fp,
                    "counts": res.counts,
                    "seconds": res.seconds,
                    "finished": time.time(),
                },
                record_file,
            )
            # per item of the stage's last table (patches for extract)
            items = sum(list(res.counts.values())[-1].values()) if res.counts else 0
            log.info(
                "stage %s done: %s; %.2f s per item",
                stage,
                res.line().split(None, 1)[1].strip(),
                res.seconds / max(items, 1),
            )
        echo("\nsummary")
        for res in results:
            echo("  " + res.line())
    return results
