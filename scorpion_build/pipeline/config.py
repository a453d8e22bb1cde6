"""Typed, validated pipeline configuration from YAML.

Each stage is a dataclass of settings (:mod:`scorpion_build.settings`), declared here or
taken from the library's own config (``RegisterConfig``, ``ExportOptions``), so a key has
the CLI option's name (``region-um`` or ``region_um``), type, default, range and help.
Unknown keys, wrong types and values out of range are errors naming the key and its line
in the file (:mod:`scorpion_build.settings_yaml`); docs/options.md lists every key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scorpion_build.errors import ConfigError
from scorpion_build.export import ExportOptions
from scorpion_build.extract.config import ExtractConfig, ExtractInputs
from scorpion_build.options import DEVICES, check_scheduler
from scorpion_build.register.pair import RegisterConfig
from scorpion_build.settings import check_settings, combine_settings, setting
from scorpion_build.settings_yaml import build, read_mapping
from scorpion_build.synth.config import SynthConfig

STAGES = ("synth", "scan", "register", "extract", "export", "benchmark", "analyze")


def _stage(cls: type) -> type:
    """A stage's options: a dataclass of :func:`~scorpion_build.settings.setting` fields,
    each value checked when the stage is read (an error names its key and line)."""
    cls.__post_init__ = check_settings
    return dataclass(cls)


@_stage
class SynthStage:
    out: str = setting("synth", "Output folder, inside the build directory.")
    slides: int = setting(SynthConfig.n_slides, "Number of slides.", minimum=1)
    scanners: str = setting(",".join(SynthConfig.scanners), "Comma-separated scanner names.")
    reference: str = setting(SynthConfig.reference, "Reference scanner name.")
    # None: SynthConfig's size (kept None, not copied, so run's fingerprints stay as they were)
    width_um: float | None = setting(
        None, "Slide width in um.", above=0, shown=f"{SynthConfig.width_um:g}"
    )
    height_um: float | None = setting(
        None, "Slide height in um.", above=0, shown=f"{SynthConfig.height_um:g}"
    )
    seed: int = setting(SynthConfig.seed, "Random seed.", minimum=0)
    texture: str | None = setting(
        None, "Real image or slide whose H&E texture replaces the procedural tissue."
    )
    scenario: list[str] = setting(
        [],
        "rot90, rot180, mirror, strong-stain, partial, blank or unrelated, for one or all "
        "non-reference scanners of one (0-based) or all slides, e.g. mirror:GT450, "
        "blank:P1000:1, rot90::0 (every non-reference scanner of slide 0). Repeatable.",
        metavar="NAME[:SCANNER[:SLIDE]]",
    )


@_stage
class ScanStage:
    input: str | None = setting(
        None, "Slide table CSV or directory.", shown="the synthesised slides.csv"
    )
    reference: str = setting("AT2", "Reference scanner name.")
    ignore: list[str] = setting([], "Globs of entries dropped from a directory input.")


RegisterStage = combine_settings(
    "RegisterStage",
    (RegisterConfig, ("method", "coarse_mpp", "fine_mpp", "max_blocks")),
    module=__name__,
)


ExtractStage = combine_settings(
    "ExtractStage", (ExtractConfig, None), (ExtractInputs, None), module=__name__
)


@dataclass
class _ExportPlace:
    dir: str = setting("release", "Output folder, inside the build directory.")


ExportStage = combine_settings(
    "ExportStage", (_ExportPlace, None), (ExportOptions, None), module=__name__
)


@_stage
class BenchmarkStage:
    model: str | None = setting(None, "Checkpoint (best.pt with best.json) or TorchScript file.")
    predictions: str | None = setting(None, "Precomputed predictions (Zarr or release folder).")
    labels: str | None = setting(None, "Ground-truth label maps (release layout).")
    batch_size: int = setting(4, "Inference batch.", minimum=1)
    device: str = setting("auto", "Torch device.", choices=DEVICES)
    out: str = setting("benchmark", "Output folder, inside the build directory.")


@_stage
class AnalyzeStage:
    features: str = setting(
        "resnet50",
        "Feature-level analysis (ResNet50 + UMAP), or none to skip it.",
        choices=("resnet50", "none"),
    )
    weights: str | None = setting(
        None,
        "Local ResNet50 ImageNet weights (state dict, .pth or .safetensors). Without it the "
        "features come from an untrained network and the report says so.",
    )


@dataclass
class PipelineConfig:
    build: str = setting(
        help="Build directory; relative paths in the file are relative to its folder.",
        shown="required",
    )
    scheduler: str | None = setting(
        None,
        "dask.distributed scheduler address (tcp://host:8786); local processes when omitted.",
    )
    workers: int | None = setting(
        None,
        "Processes working in parallel, this one included; ignored with a scheduler.",
        minimum=1,
        shown="one per usable CPU",
    )
    synth: SynthStage | None = None
    scan: ScanStage | None = None
    register: RegisterStage | None = None
    extract: ExtractStage | None = None
    export: ExportStage | None = None
    benchmark: BenchmarkStage | None = None
    analyze: AnalyzeStage | None = None
    source: Path | None = None  # the YAML file, for resolving relative paths

    def __post_init__(self) -> None:
        check_settings(self)
        check_scheduler(self.scheduler)

    def path(self, value: str | None) -> Path | None:
        """A path from the config, relative to the YAML file's folder."""
        if value is None:
            return None
        p = Path(value).expanduser()
        if p.is_absolute() or self.source is None:
            return p
        return (self.source.parent / p).resolve()

    @property
    def build_dir(self) -> Path:
        return self.path(self.build)

    def stages(self) -> list[str]:
        return [s for s in STAGES if getattr(self, s) is not None]

    def stage_options(self, stage: str) -> dict[str, Any]:
        return dataclasses.asdict(getattr(self, stage))


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Read and validate a pipeline YAML file (errors name the key and its line)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such pipeline file")
    data, lines = read_mapping(path)
    config = build(PipelineConfig, {**data, **(overrides or {})}, path, lines)
    config.source = path.resolve()
    return config
