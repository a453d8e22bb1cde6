"""One adapter per stage: pipeline options -> the library call -> a short status summary.

Each adapter returns its tables (each with a ``status`` column), labelled by what a row
counts (``{"regions": ..., "patches": ...}``), or one such table; the runner prints the
counts and logs every row that is not ``ok``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from scorpion_build.manifest import BuildDir
from scorpion_build.pipeline.config import PipelineConfig

StageFn = Callable[[PipelineConfig, str | None, bool], pd.DataFrame | dict[str, pd.DataFrame]]


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
    if o.width_um is not None:
        kwargs["width_um"] = o.width_um
    if o.height_um is not None:
        kwargs["height_um"] = o.height_um
    if o.texture:
        kwargs["texture"] = config.path(o.texture)
    if o.scenario:
        kwargs["scenarios"] = tuple(Scenario.parse(text) for text in o.scenario)
    table = synthesize(synth_input(config), SynthConfig(**kwargs))
    return {"slides": table.assign(status="ok")}


def run_scan(config: PipelineConfig, scheduler: str | None, force: bool) -> pd.DataFrame:
    from scorpion_build.scan import scan

    source = config.path(config.scan.input) if config.scan.input else None
    if source is None:
        if config.synth is None:
            raise ValueError("scan.input is not set; give a slide table CSV or a directory")
        source = synth_input(config) / "slides.csv"
    table = scan(source, reference=config.scan.reference, ignore=tuple(config.scan.ignore))
    BuildDir.at(config.build_dir).write("slides", table)
    return {"scans": table}


def register_config(config: PipelineConfig):  # noqa: ANN201 - RegisterConfig, imported lazily
    """The library's RegisterConfig for the pipeline's register options (validated there)."""
    from scorpion_build.register.pair import RegisterConfig

    return RegisterConfig(**config.stage_options("register"))


def extract_config(config: PipelineConfig):  # noqa: ANN201 - ExtractConfig, imported lazily
    """The library's ExtractConfig for the pipeline's extract options (validated there)."""
    from scorpion_build.extract import ExtractConfig
    from scorpion_build.settings import settings_of

    options = config.stage_options("extract")
    return ExtractConfig(**{name: options[name] for name in settings_of(ExtractConfig)})


def run_register(config: PipelineConfig, scheduler: str | None, force: bool) -> pd.DataFrame:
    from scorpion_build.register.pipeline import register_build

    reference = config.scan.reference if config.scan else None
    table = register_build(
        config.build_dir,
        reference=reference,
        config=register_config(config),
        workers=config.workers,
        scheduler=scheduler,
        force=force,
    )
    return {"pairs": table}


def run_extract(config: PipelineConfig, scheduler: str | None, force: bool) -> pd.DataFrame:
    from scorpion_build.extract import extract_build

    o = config.extract
    annotations = None
    if o.annotations:
        from scorpion_build.annotations import load_build_annotations

        slides = BuildDir.at(config.build_dir).read("slides")
        annotations = load_build_annotations(
            slides, config.path(o.annotations), config.path(o.classes)
        )
    regions, patches = extract_build(
        config.build_dir,
        extract_config(config),
        workers=config.workers,
        scheduler=scheduler,
        regions_from=config.path(config.extract.regions_from),
        force=force,
        annotations=annotations,
        roi_classes=tuple(o.roi_class),
    )
    return {"regions": regions, "patches": patches}


def run_export(config: PipelineConfig, scheduler: str | None, force: bool) -> pd.DataFrame:
    from scorpion_build.export import export_release

    o = config.export
    index = export_release(
        config.build_dir, config.build_dir / o.dir, fmt=o.format, quality=o.quality
    )
    return {"samples": index.assign(status="ok")}


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
    row = {"status": "ok", "average": report["average"], "minimum": report["minimum"]}
    return {"report": pd.DataFrame([row])}


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
    return {"report": pd.DataFrame([{"status": "ok", "report": str(index)}])}


STAGE_FUNCTIONS: dict[str, StageFn] = {
    "synth": run_synth,
    "scan": run_scan,
    "register": run_register,
    "extract": run_extract,
    "export": run_export,
    "benchmark": run_benchmark,
    "analyze": run_analyze,
}


# -- what each stage reads and writes, for run's resume rule (scorpion_build.resume) ----------
# Options naming files a stage reads: their identity is part of its fingerprint.
STAGE_INPUTS: dict[str, tuple[str, ...]] = {
    "synth": ("texture",),
    # scan: its slide table and the slides it lists (runner._slide_table_files)
    "extract": ("regions_from", "annotations", "classes"),
    "benchmark": ("model", "predictions", "labels"),
    "analyze": ("weights",),
}


def stage_outputs(config: PipelineConfig, stage: str) -> list[Path]:
    """What ``stage`` writes, relative to the build directory (``docs/contracts.md``
    section 3): a stage whose outputs were deleted or replaced since it ran runs again."""
    manifests = Path("manifests")
    outputs = {
        "synth": lambda: [Path(config.synth.out) / "slides.csv"],
        "scan": lambda: [manifests / "slides.parquet"],
        "register": lambda: [manifests / "registrations.parquet"],
        "extract": lambda: [
            manifests / "regions.parquet",
            manifests / "patches.parquet",
            Path("patches.zarr"),
        ],
        "export": lambda: [Path(config.export.dir)],
        "benchmark": lambda: [Path(config.benchmark.out) / "report.json"],
        "analyze": lambda: [Path("report") / "index.html"],
    }
    return outputs[stage]()
