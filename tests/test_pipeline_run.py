"""``scorpion-build run``: a whole (tiny) build, stage skipping and invalidation, resume after
a kill, and the same build on a distributed LocalCluster giving byte-identical patches."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr
from click.testing import CliRunner
from helpers import kill_during_extract

from scorpion_build.cli.main import main
from scorpion_build.pipeline import load_config, run_pipeline
from scorpion_build.report.check import check_pictures

PIPELINE = """\
build: {build}
workers: 1
synth:
  out: synth
  slides: 1
  scanners: AT2,GT450,Philips
  width-um: 1200
  height-um: 1000
  seed: 5
scan:
  reference: AT2
register:
  method: robust
extract:
  regions: 2
  region-um: 300
  size: {size}
export:
  dir: release
analyze:
  features: none
"""


def _write(tmp: Path, name: str, size: int = 128) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(PIPELINE.format(build=tmp / name, size=size))
    return path


def _patches(build: Path) -> np.ndarray:
    return zarr.open_group(str(build / "patches.zarr"), mode="r")["patches"][:]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipe")
    yaml_path = _write(tmp, "local")
    result = CliRunner().invoke(main, ["run", str(yaml_path)])
    reference = _patches(tmp / "local") if result.exit_code == 0 else None
    return tmp, yaml_path, result, reference


def test_full_run_writes_every_output(first_run):
    tmp, _, result, _ = first_run
    assert result.exit_code == 0, result.output
    build = tmp / "local"
    for rel in (
        "manifests/slides.parquet",
        "manifests/registrations.parquet",
        "manifests/regions.parquet",
        "manifests/patches.parquet",
        "patches.zarr",
        "release/index.csv",
        "report/index.html",
    ):
        assert (build / rel).exists(), rel
    logs = list((build / "logs").glob("run-*.log"))
    assert len(logs) == 1
    text = logs[0].read_text()
    # per-stage figures, and progress as plain lines (the test's output is not a terminal)
    for stage in ("synth", "scan", "register", "extract", "export", "analyze"):
        assert f"INFO    scorpion_build.file.pipeline: stage {stage} done: " in text, stage
    # register runs one task per pair (GT450, Philips), extract one per sample
    assert "s per item" in text and "register: 2/2 tasks (100%)" in text and "\r" not in text
    assert (build / "qc" / "slides" / "synth_000.png").is_file()
    # the report shows it, and every picture the report shows is there and not blank
    report = build / "report" / "index.html"
    assert 'src="../qc/slides/synth_000.png"' in report.read_text()
    assert check_pictures(report) == []
    assert "summary" in result.output and "report" in result.output
    patches = pd.read_parquet(build / "manifests" / "patches.parquet")
    assert len(patches) == 2 * 3 and (patches["status"] != "failed").all()


def test_summary_counts_every_stage_labelled(first_run):
    _, _, result, _ = first_run
    summary = result.output.split("\nsummary")[1]
    for stage, label in [
        ("scan", "scans"),
        ("register", "pairs"),
        ("extract", "regions"),
        ("extract", "patches"),
        ("export", "samples"),
    ]:
        line = next(x for x in summary.splitlines() if x.strip().startswith(stage))
        assert f"{label}: ok " in line, line
    assert "patches: ok 6, warn 0, failed 0" in summary or "patches: ok" in summary


def test_warned_and_failed_rows_reach_summary_log_and_exit_code(caplog):
    import logging

    from scorpion_build import logs
    from scorpion_build.pipeline.runner import StageResult, _counts, _item_keys, _tables

    regions = pd.DataFrame(
        {
            "slide_id": ["s1", "s1", "s2"],
            "region_index": [0, 1, -1],
            "status": ["warn", "warn", "failed"],
            "message": ["only 2 of 3 regions", "only 2 of 3 regions", "no tissue"],
        }
    )
    patches = pd.DataFrame({"sample_id": ["s1_r00"], "status": ["ok"], "message": [""]})
    tables = _tables({"regions": regions, "patches": patches})
    result = StageResult("extract", False, 1.0, _counts(tables))
    assert "regions: ok 0, warn 2, failed 1; patches: ok 1, warn 0, failed 0" in result.line()
    assert result.failed  # a slide that yields no sample fails the run
    with caplog.at_level(logging.WARNING):
        for label, table in tables.items():  # as run_pipeline logs them
            logs.log_items(table, f"extract {label}", _item_keys(table))
    assert len(caplog.records) == 3
    assert "extract regions s2 -1 failed: no tissue" in caplog.text


def test_rerun_skips_unchanged_stages_and_changed_config_reruns_downstream(first_run):
    tmp, yaml_path, _, _ = first_run
    build = tmp / "local"
    before = _patches(build)
    config = load_config(yaml_path)
    results = run_pipeline(config, echo=lambda *_: None)
    assert all(r.skipped for r in results), [r.line() for r in results]
    np.testing.assert_array_equal(before, _patches(build))
    # a changed extract option re-runs extract and what follows, not what precedes
    yaml_path.write_text(yaml_path.read_text().replace("size: 128", "size: 96"))
    results = {r.stage: r for r in run_pipeline(load_config(yaml_path), echo=lambda *_: None)}
    assert results["synth"].skipped and results["scan"].skipped and results["register"].skipped
    assert not results["extract"].skipped and not results["export"].skipped
    assert not results["analyze"].skipped
    assert _patches(build).shape[2:4] == (96, 96)
    # and changing it back reproduces the original patches exactly
    yaml_path.write_text(yaml_path.read_text().replace("size: 96", "size: 128"))
    run_pipeline(load_config(yaml_path), echo=lambda *_: None)
    np.testing.assert_array_equal(before, _patches(build))


def test_deleted_outputs_rerun_their_stage_and_what_follows(first_run):
    tmp, yaml_path, _, _ = first_run
    build = tmp / "local"
    config = load_config(yaml_path)
    run_pipeline(config, echo=lambda *_: None)  # everything current
    shutil.rmtree(build / "release")
    results = {r.stage: r for r in run_pipeline(config, echo=lambda *_: None)}
    assert results["extract"].skipped and not results["export"].skipped
    assert not results["analyze"].skipped
    assert (build / "release").is_dir()
    (build / "manifests" / "registrations.parquet").unlink()
    results = {r.stage: r for r in run_pipeline(config, echo=lambda *_: None)}
    assert results["scan"].skipped
    assert not any(results[s].skipped for s in ("register", "extract", "export", "analyze"))
    assert (build / "manifests" / "registrations.parquet").is_file()
    assert all(r.skipped for r in run_pipeline(config, echo=lambda *_: None))


def test_interrupted_run_resumes_to_identical_result(first_run, tmp_path):
    _, _, _, reference = first_run
    yaml_path = _write(tmp_path, "victim")
    build = tmp_path / "victim"
    kill_during_extract(["run", str(yaml_path)], build, after_samples=1)
    assert not (build / "manifests" / "patches.parquet").exists()
    result = CliRunner().invoke(main, ["run", str(yaml_path)])
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(reference, _patches(build))


def test_distributed_run_is_byte_identical(first_run, tmp_path):
    from distributed import LocalCluster

    tmp, _, _, reference = first_run
    yaml_path = _write(tmp_path, "dist")
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        result = CliRunner().invoke(
            main, ["run", str(yaml_path), "--scheduler", cluster.scheduler_address]
        )
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(reference, _patches(tmp_path / "dist"))
    a = pd.read_parquet(tmp / "local" / "manifests" / "patches.parquet")
    b = pd.read_parquet(tmp_path / "dist" / "manifests" / "patches.parquet")
    pd.testing.assert_frame_equal(a, b)
