"""Run the configured stages in order, skipping those whose inputs and outputs are unchanged.

Each finished stage records, in ``BUILD/.state/stages/<stage>.json``, the fingerprint of its
inputs (its options, the files they name, for ``scan`` the slide files, the previous stage's
fingerprint and outputs) and the identity of its own outputs. A stage re-runs when its
fingerprint changed or an output of it was deleted or replaced (the one rule of
:mod:`scorpion_build.resume`), and so does every stage after it. Stages resume their own
finished work, so an interrupted run loses nothing that finished.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from scorpion_build import logs, resume
from scorpion_build.errors import error_line
from scorpion_build.local_pool import warm_up
from scorpion_build.lock import build_lock
from scorpion_build.manifest import BuildDir
from scorpion_build.options import check_scheduler
from scorpion_build.parallel import usable_cpus
from scorpion_build.pipeline.config import STAGES, PipelineConfig
from scorpion_build.pipeline.stages import (
    STAGE_FUNCTIONS,
    STAGE_INPUTS,
    stage_outputs,
    synth_input,
)

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
    """The fingerprint of ``stage``'s inputs (:mod:`scorpion_build.resume`): its options,
    the identity of the files they name (for ``scan`` also every slide file in the table),
    the previous stage's fingerprint ``previous`` and the outputs it left in the build."""
    options = config.stage_options(stage)
    names = STAGE_INPUTS.get(stage, ())
    files = [config.path(options[name]) for name in names if options.get(name)]
    if stage == "scan":
        files += _slide_table_files(config)
    upstream = _upstream(config, stage)
    outputs = stage_outputs(config, upstream) if upstream else []
    return resume.fingerprint(
        stage,
        previous,
        options,
        [resume.file_identity(f) for f in files],
        [f"{p}:{resume.output_identity(config.build_dir / p)}" for p in outputs],
    )


def _upstream(config: PipelineConfig, stage: str) -> str | None:
    """The configured stage before ``stage`` (whose outputs it reads), if any."""
    stages = config.stages()
    i = stages.index(stage) if stage in stages else 0
    return stages[i - 1] if i > 0 else None


def _slide_table_files(config: PipelineConfig) -> list[Path]:
    """The scan stage's slide table (a CSV) and every slide file it lists: a replaced
    slide re-runs scan. A folder input is named by the slides found in it, not by every
    file it holds."""
    from scorpion_build.scan import read_slide_table

    source = config.path(config.scan.input) if config.scan.input else None
    if source is None and config.synth is not None:
        source = synth_input(config) / "slides.csv"
    if source is None or not source.exists():
        return []
    table = read_slide_table(source, tuple(config.scan.ignore))
    return ([source] if source.is_file() else []) + [Path(p) for p in table["path"]]


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
    stages after a crashed stage are not run).

    A stage is skipped when its record in ``BUILD/.state/stages`` is still valid under the
    build's one resume rule (:func:`scorpion_build.resume.load`): the same fingerprint
    (:func:`fingerprint`) and every output it wrote still in place."""
    build = config.build_dir
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
            # each fingerprint is taken once the stages before it ran: it sees their outputs
            previous = fingerprint(config, stage, previous)
            if stage not in selected:
                continue
            results.append(_stage(config, stage, previous, scheduler, force))
            echo(results[-1].line())
            if results[-1].error:
                break
        echo("\nsummary")
        for res in results:
            echo("  " + res.line())
    return results


def _stage(
    config: PipelineConfig, stage: str, fp: str, scheduler: str | None, force: bool
) -> StageResult:
    """Run one stage, or skip it when its record is valid; record it when it finishes."""
    build = config.build_dir
    record_file = build / ".state" / "stages" / f"{stage}.json"
    record = None if force else resume.load(record_file, fp, root=build)
    if record is not None:
        log.info("stage %s unchanged, skipped", stage)
        return StageResult(stage, True, 0.0, _recorded_counts(record))
    log.info("stage %s starting (fingerprint %s)", stage, fp)
    t0 = time.perf_counter()
    try:
        out = STAGE_FUNCTIONS[stage](config, scheduler, force)
    except SystemExit:
        raise
    except Exception as exc:
        log.exception("stage %s crashed", stage)
        return StageResult(stage, False, time.perf_counter() - t0, {}, error_line(exc))
    tables = _tables(out)
    for label, table in tables.items():  # one log line per warned or failed row
        logs.log_items(table, f"{stage} {label}", _item_keys(table))
    res = StageResult(stage, False, time.perf_counter() - t0, _counts(tables))
    outputs = stage_outputs(config, stage)
    resume.save(
        record_file,
        fp,
        outputs,
        root=build,
        counts=res.counts,
        seconds=res.seconds,
        finished=time.time(),
    )
    # per item of the stage's last table (patches for extract)
    items = sum(list(res.counts.values())[-1].values()) if res.counts else 0
    log.info(
        "stage %s done: %s; %.2f s per item",
        stage,
        res.line().split(None, 1)[1].strip(),
        res.seconds / max(items, 1),
    )
    return res
