"""One adapter per stage: pipeline options -> the library call -> a short status summary.

Each adapter returns a DataFrame with a ``status`` column (the stage's manifest) or a dict
of counts; the runner prints and logs it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from scorpion_build.manifest import BuildDir
from scorpion_build.pipeline.config import PipelineConfig

StageFn = Callable[[PipelineConfig, str | None, bool], pd.DataFrame]


def synth_input(config: PipelineConfig) -> Path:
    return config.build_dir / config.synth.out if config.synth else None


def run_synth(config: PipelineConfig, scheduler: str | None, force: bool) -> pd.DataFrame:
    from scorpion_build.synth import Scenario, SynthConfig, synthesize

    o = config.synth
    kwargs = {
        "n_slides": o.slides,
        "scanners": tuple(o.scanners.split(",")),
        "reference": o.reference,
        "seed": o.seed,
    }
    if o.width_um:
        kwargs["width_um"] = o.width_um
    if o.height_um:
        kwargs["height_um"] = o.height_um
    if o.texture:
        kwargs["texture"] = config.path(o.texture)
    if o.scenario:
        kwargs["scenarios"] = tuple(Scenario.parse(text) for text in o.scenario)
    table = synthesize(synth_input(config), SynthConfig(**kwargs))
    return table.assign(status="ok")


def run_scan(config: PipelineConfig, scheduler: str | None, force: bool) -> pd.DataFrame:
    from scorpion_build.scan import scan

    source = config.path(config.scan.input) if config.scan.input else None
    if source is None:
        if config.synth is None:
            raise ValueError("scan.input is not set; give a slide table CSV or a directory")
        source = synth_input(config) / "slides.csv"
    table = scan(source, reference=config.scan.reference, ignore=tuple(config.scan.ignore))
    BuildDir.at(config.build_dir).write("slides", table)
    return table


def run_register(config: PipelineConfig, scheduler: str | None, force: bool) -> pd.DataFrame:
    from scorpion_build.register.pair import RegisterConfig
    from scorpion_build.register.pipeline import register_build

    reference = config.scan.reference if config.scan else "AT2"
    return register_build(
        config.build_dir,
        reference=reference,
        config=RegisterConfig(**config.stage_options("register")),
        workers=config.workers,
        scheduler=scheduler,
        force=force,
    )


def run_extract(config: PipelineConfig, scheduler: str | None, force: bool) -> pd.DataFrame:
    from scorpion_build.extract import ExtractConfig, extract_build

    o = config.extract
    ec = ExtractConfig(
        regions=o.regions,
        region_um=o.region_um,
        size=o.size,
        seed=o.seed,
        min_tissue=o.min_tissue,
        refine=o.refine,
        compression=o.compression,
    )
    annotations = None
    if o.annotations:
        from scorpion_build.annotations import load_build_annotations
        from scorpion_build.manifest import BuildDir

        slides = BuildDir.at(config.build_dir).read("slides")
        annotations = load_build_annotations(
            slides, config.path(o.annotations), config.path(o.classes)
        )
    _, patches = extract_build(
        config.build_dir,
        ec,
        workers=config.workers,
        scheduler=scheduler,
        regions_from=config.path(o.regions_from),
        force=force,
        annotations=annotations,
        roi_classes=tuple(o.roi_class),
    )
    return patches


def run_export(config: PipelineConfig, scheduler: str | None, force: bool) -> pd.DataFrame:
    from scorpion_build.export import export_release

    o = config.export
    index = export_release(
        config.build_dir, config.build_dir / o.dir, fmt=o.format, quality=o.quality
    )
    return index.assign(status="ok")


def run_benchmark(config: PipelineConfig, scheduler: str | None, force: bool) -> pd.DataFrame:
    from scorpion_build.benchmark import run_benchmark as bench

    o = config.benchmark
    if not (o.model or o.predictions):
        raise ValueError("benchmark needs 'model' (a checkpoint) or 'predictions'")
    result = bench(
        config.build_dir,
        config.build_dir / o.out,
        model=config.path(o.model),
        predictions=config.path(o.predictions),
        labels=config.path(o.labels),
        batch_size=o.batch_size,
        device=o.device,
    )
    report = result.report
    return pd.DataFrame(
        [{"status": "ok", "average": report["average"], "minimum": report["minimum"]}]
    )


def run_analyze(config: PipelineConfig, scheduler: str | None, force: bool) -> pd.DataFrame:
    from scorpion_build.analysis import analyze_build

    o = config.analyze
    bench_dir = config.build_dir / config.benchmark.out if config.benchmark else None
    if bench_dir is not None and not (bench_dir / "report.json").is_file():
        bench_dir = None  # the benchmark stage did not finish: report the build without it
    index = analyze_build(
        config.build_dir,
        features=o.features,
        weights=config.path(o.weights),
        benchmark_dir=bench_dir,
    )
    return pd.DataFrame([{"status": "ok", "report": str(index)}])


STAGE_FUNCTIONS: dict[str, StageFn] = {
    "synth": run_synth,
    "scan": run_scan,
    "register": run_register,
    "extract": run_extract,
    "export": run_export,
    "benchmark": run_benchmark,
    "analyze": run_analyze,
}
