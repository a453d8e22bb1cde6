"""extract with local helper processes and on dask.distributed equals the 1-worker run; a
killed run resumes to the same result."""

from __future__ import annotations

import functools
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr
from helpers import kill_during_extract, paired_build

from scorpion_build import geometry as geo
from scorpion_build.extract import ExtractConfig, SampleTask, extract_build, extract_sample
from scorpion_build.extract import build as extract_module
from scorpion_build.slide import Slide

CONFIG = ExtractConfig(regions=4, region_um=150.0, size=128, seed=2)


@pytest.fixture(scope="module")
def build(tmp_path_factory, cmu_svs):
    with Slide(cmu_svs) as s:
        texture = s.read(0, (0, 0, 1200, 1400))
    h, w = texture.shape[:2]
    truth = geo.compose(geo.translation(3.0, 5.0), geo.rotation_deg(-1.5, w / 2, h / 2))
    root, _ = paired_build(tmp_path_factory.mktemp("par"), texture, truth, error_px=2.0)
    return root


def _copy_inputs(build, dest):
    dest.mkdir()
    shutil.copytree(build / "manifests", dest / "manifests")
    for name in ("regions", "patches"):
        (dest / "manifests" / f"{name}.parquet").unlink(missing_ok=True)
    return dest


def _store(build):
    return zarr.open_group(str(build / "patches.zarr"), mode="r")["patches"][:]


def test_distributed_local_cluster_is_byte_identical(build, tmp_path):
    from distributed import LocalCluster

    local = _copy_inputs(build, tmp_path / "local")
    dist = _copy_inputs(build, tmp_path / "dist")
    _, p_local = extract_build(local, CONFIG, workers=1, progress=False)
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        _, p_dist = extract_build(dist, CONFIG, scheduler=cluster.scheduler_address, progress=False)
    np.testing.assert_array_equal(_store(local), _store(dist))
    pd.testing.assert_frame_equal(p_local, p_dist)
    for name in ("regions", "patches"):
        a = (local / "manifests" / f"{name}.parquet").read_bytes()
        b = (dist / "manifests" / f"{name}.parquet").read_bytes()
        assert a == b, f"{name}.parquet differs"


def gated_extract_sample(item: SampleTask, done_dir: str, main_pid: int, **kwargs) -> list[dict]:  # noqa: ANN003
    """extract_sample, but this process starts only once a helper has finished a sample
    (so the helper provably writes some patches) and each sample notes who wrote it."""
    done = Path(done_dir)
    deadline = time.monotonic() + 120.0  # a safety net: the wait ends on the helper's file
    while os.getpid() == main_pid and not any(
        int(p.name.split("_")[0]) != main_pid for p in done.iterdir()
    ):
        assert time.monotonic() < deadline, "no helper process finished a sample"
        time.sleep(0.02)
    rows = UNGATED(item, **kwargs)
    (done / f"{os.getpid()}_{item.sample.sample_id}").touch()
    return rows


UNGATED = extract_sample


def test_two_local_workers_are_byte_identical(build, tmp_path, monkeypatch):
    one = _copy_inputs(build, tmp_path / "one")
    two = _copy_inputs(build, tmp_path / "two")
    _, p_one = extract_build(one, CONFIG, workers=1, progress=False)
    done = tmp_path / "done"
    done.mkdir()
    task = functools.partial(gated_extract_sample, done_dir=str(done), main_pid=os.getpid())
    monkeypatch.setattr(extract_module, "extract_sample", task)
    _, p_two = extract_build(two, CONFIG, workers=2, progress=False)
    writers = {int(p.name.split("_")[0]) for p in done.iterdir()}
    assert os.getpid() in writers and len(writers) == 2  # this process and a helper
    np.testing.assert_array_equal(_store(one), _store(two))
    for name in ("regions", "patches"):
        a = (one / "manifests" / f"{name}.parquet").read_bytes()
        b = (two / "manifests" / f"{name}.parquet").read_bytes()
        assert a == b, f"{name}.parquet differs"


def test_killed_run_resumes_to_identical_result(build, tmp_path):
    clean = _copy_inputs(build, tmp_path / "clean")
    extract_build(clean, CONFIG, workers=1, progress=False)
    victim = _copy_inputs(build, tmp_path / "victim")
    args = [
        "extract",
        str(victim),
        "--regions",
        "4",
        "--region-um",
        "150",
        "--size",
        "128",
        "--seed",
        "2",
        "--workers",
        "1",
    ]
    kill_during_extract(args, victim, after_samples=2, timeout_s=120)
    # killed mid-run: no manifest points at a half-written store
    assert not (victim / "manifests" / "patches.parquet").exists()
    assert not (victim / "patches.zarr").exists()
    extract_build(victim, CONFIG, workers=1, progress=False)
    np.testing.assert_array_equal(_store(clean), _store(victim))
    for name in ("regions", "patches"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(clean / "manifests" / f"{name}.parquet"),
            pd.read_parquet(victim / "manifests" / f"{name}.parquet"),
        )
