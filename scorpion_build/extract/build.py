"""Extraction of a whole build: region -> one aligned patch per scanner -> ``patches.zarr``.

Sampling runs one task per slide (:mod:`.sample`), writing one task per sample
(:mod:`.write`); each task opens its own slides, writes its own Zarr chunks and returns
manifest rows. Finished samples are marked in ``BUILD/.state/extract`` so an interrupted
run resumes where it stopped (:mod:`.resume`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import zarr

from scorpion_build.annotations import AnnotationSet
from scorpion_build.extract.config import ExtractConfig
from scorpion_build.extract.given import read_given_regions
from scorpion_build.extract.resume import (
    Target,
    choose_target,
    extract_states,
    inputs_key,
    record_store,
    stored_key,
)
from scorpion_build.extract.sample import sample_task
from scorpion_build.extract.store import create_store
from scorpion_build.extract.tasks import (
    Sample,
    SampleTask,
    SlideTask,
    slide_tasks,
    with_annotations,
)
from scorpion_build.extract.write import extract_sample
from scorpion_build.labels import create_labels_array
from scorpion_build.lock import build_lock
from scorpion_build.manifest import BuildDir, order_columns, write_parquet_atomic
from scorpion_build.options import check_scheduler, check_workers
from scorpion_build.parallel import TaskResult, run_tasks


def extract_build(
    build_dir: str | Path,
    config: ExtractConfig,
    workers: int | None = None,
    scheduler: str | None = None,
    regions_from: Path | None = None,
    force: bool = False,
    progress: bool = True,
    annotations: AnnotationSet | None = None,
    roi_classes: tuple[str, ...] = (),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Sample regions and extract aligned patches for every slide of a registered build.

    ``annotations`` (:func:`scorpion_build.annotations.load_build_annotations`) adds the
    ``labels`` array; ``roi_classes`` samples only inside those annotated classes.

    A finished store is never deleted before its successor is complete: new settings or
    inputs (or ``force``) build a new store in ``BUILD/.state/extract-new`` that replaces
    ``BUILD/patches.zarr`` only once every sample is written (``docs/contracts.md`` 3-4).
    A re-run with unchanged inputs checks every finished patch against its checksum and
    re-extracts the ones that are missing or damaged.
    """
    check_workers(workers)
    check_scheduler(scheduler)
    parallel = {"workers": workers, "scheduler": scheduler, "progress": progress}
    build = BuildDir.at(build_dir)
    with build_lock(build.root):
        build.refuse_links(build.zarr, *extract_states(build))
        tasks, scanners, reference = slide_tasks(build)
        tasks, labels_key = with_annotations(tasks, annotations, roi_classes, regions_from)
        given = read_given_regions(regions_from, config.region_um) if regions_from else None
        key = inputs_key(config, build, regions_from, tasks, labels_key)
        target = choose_target(build, key, force)
        regions = _sample_all(tasks, target.state, config, given, parallel)
        samples = regions[(regions["status"] != "failed") & (regions["region_index"] >= 0)].copy()
        samples["index"] = np.arange(len(samples), dtype=np.int64)
        if not target.store.exists():
            create_store(target.store, len(samples), scanners, reference, config)
            if annotations is not None:
                group = zarr.open_group(str(target.store), mode="r+")
                create_labels_array(group, samples, len(scanners), config.size, annotations)
            record_store(target.state, key, config, regions_from, annotations is not None)
        patches = _extract_all(tasks, samples, scanners, config, target, parallel)
        target.finish(build)
        _write_manifests(build, regions, patches, annotations)
    return regions, patches


def _write_manifests(
    build: BuildDir, regions: pd.DataFrame, patches: pd.DataFrame, annotations: AnnotationSet | None
) -> None:
    if annotations is not None:
        build.write("annotations", order_columns(pd.DataFrame(annotations.rows), "annotations"))
    else:  # a build extracted without annotations has no labels to report on
        build.manifest("annotations").unlink(missing_ok=True)
    build.write("regions", regions)
    build.write("patches", patches)


def _sample_all(
    tasks: list[SlideTask],
    state: Path,
    config: ExtractConfig,
    given: dict | None,
    parallel: dict,
) -> pd.DataFrame:
    """The regions table: sampled once per store, then reused from ``state``."""
    regions_file = state / "regions.parquet"
    if regions_file.is_file():
        try:
            return pd.read_parquet(regions_file)
        except Exception:  # a damaged checkpoint is recomputed (sampling is seeded)
            regions_file.unlink()
    rows = []
    for res in run_tasks(sample_task, tasks, desc="sample", config=config, given=given, **parallel):
        rows += res.value if res.error is None else _crashed_slide(res)
    regions = pd.DataFrame(rows).sort_values(["slide_id", "region_index"], kind="stable")
    regions = regions.reset_index(drop=True)  # the same table whatever order tasks end in
    regions["region_index"] = regions["region_index"].astype("int64")
    regions["sample_id"] = [
        f"{s}_r{i:02d}" if i >= 0 else ""
        for s, i in zip(regions["slide_id"], regions["region_index"], strict=True)
    ]
    regions = order_columns(regions, "regions")
    write_parquet_atomic(regions, regions_file)
    return regions


def _extract_all(
    tasks: list[SlideTask],
    samples: pd.DataFrame,
    scanners: list[str],
    config: ExtractConfig,
    target: Target,
    parallel: dict,
) -> pd.DataFrame:
    """Patch rows of every sample, written into the target's store (resuming from its
    state)."""
    task_of = {t.slide_id: t for t in tasks}
    sample_state = target.state / "samples"
    sample_state.mkdir(parents=True, exist_ok=True)
    # one task per sample, in slide order: a few slides still fill every worker
    work = [
        SampleTask(task_of[s["slide_id"]], Sample.from_row(s)) for s in samples.to_dict("records")
    ]
    rows = []
    for res in run_tasks(
        extract_sample,
        work,
        desc="extract",
        config=config,
        zarr_path=str(target.store),
        scanners=scanners,
        state_dir=str(sample_state),
        store_key=stored_key(target.state) or "",
        **parallel,
    ):
        rows += res.value if res.error is None else _crashed_sample(res, scanners)
    # no sample at all (no region fitted anywhere) still gives a manifest with its columns
    patches = order_columns(pd.DataFrame(rows), "patches")
    patches = patches.sort_values(["index", "scanner_index"], kind="stable")
    return patches.reset_index(drop=True)  # the same table whatever order tasks end in


def _crash_message(res: TaskResult) -> str:
    return f"task crashed: {res.error.__class__.__name__}: {res.error}"


def _crashed_slide(res: TaskResult) -> list[dict]:
    """The failed regions row of a slide whose sampling task crashed."""
    row = {"slide_id": res.item.slide_id, "region_index": -1, "status": "failed"}
    return [{**row, "message": _crash_message(res)}]


def _crashed_sample(res: TaskResult, scanners: list[str]) -> list[dict]:
    """Failed patch rows, one per scanner, of a sample whose task crashed."""
    sample = res.item.sample
    return [
        {
            **sample.row(),
            "scanner": sc,
            "scanner_index": i,
            "status": "failed",
            "message": _crash_message(res),
        }
        for i, sc in enumerate(scanners)
    ]
