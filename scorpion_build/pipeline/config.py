"""Typed, validated pipeline configuration from YAML.

Each stage's options carry the same names as the stage's CLI flags (``region-um`` or
``region_um`` both accepted). Unknown keys and wrong types are errors naming the key and
its line in the file.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from scorpion_build.errors import ConfigError

# YAML scalar types accepted for each option type (an int is a fine float or str).
_SCALARS: dict[type, tuple[type, ...]] = {
    bool: (bool,),
    int: (int,),
    float: (int, float),
    str: (str, int, float),
}
STAGES = ("synth", "scan", "register", "extract", "export", "benchmark", "analyze")


@dataclass
class SynthStage:
    out: str = "synth"
    slides: int = 2
    scanners: str = "AT2,GT450,DP200,P1000,Philips"
    reference: str = "AT2"
    width_um: float | None = None
    height_um: float | None = None
    seed: int = 0
    texture: str | None = None
    scenario: list[str] = field(default_factory=list)


@dataclass
class ScanStage:
    input: str | None = None
    reference: str = "AT2"
    ignore: list[str] = field(default_factory=list)  # globs dropped from a directory input


@dataclass
class RegisterStage:
    method: str = "robust"
    coarse_mpp: float | None = None
    fine_mpp: float = 2.0
    max_blocks: int = 24


@dataclass
class ExtractStage:
    regions: int = 10
    region_um: float = 800.0
    size: int = 1024
    seed: int = 0
    min_tissue: float = 0.5
    regions_from: str | None = None
    refine: bool = True
    compression: str = "zstd"
    annotations: str | None = None  # folder of {slide_id}.geojson: adds the labels array
    classes: str | None = None  # JSON list fixing the class order
    roi_class: list[str] = field(default_factory=list)


@dataclass
class ExportStage:
    dir: str = "release"
    format: str = "jpg"
    quality: int = 95


@dataclass
class BenchmarkStage:
    model: str | None = None
    predictions: str | None = None
    labels: str | None = None
    batch_size: int = 4
    device: str = "auto"
    out: str = "benchmark"


@dataclass
class AnalyzeStage:
    features: str = "none"
    weights: str | None = None


@dataclass
class PipelineConfig:
    build: str
    scheduler: str | None = None
    workers: int | None = None
    synth: SynthStage | None = None
    scan: ScanStage | None = None
    register: RegisterStage | None = None
    extract: ExtractStage | None = None
    export: ExportStage | None = None
    benchmark: BenchmarkStage | None = None
    analyze: AnalyzeStage | None = None
    source: Path | None = None  # the YAML file, for resolving relative paths

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
    """Read and validate a pipeline YAML file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such pipeline file")
    text = path.read_text()
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    lines = _key_lines(node)
    data = {**data, **(overrides or {})}
    config = _build(PipelineConfig, data, (), lines, path)
    config.source = path.resolve()
    _check_values(config, lines, path)
    return config


def _check_values(config: PipelineConfig, lines: dict[tuple, int], path: Path) -> None:
    """Ranges and choices, by the validators the CLI uses: an error names key and line."""
    from scorpion_build.options import OptionError
    from scorpion_build.pipeline.stages import check_options

    try:
        check_options(config)
    except OptionError as exc:
        stage = getattr(exc, "stage", None)
        key = (stage, exc.option) if stage else (exc.option,)
        dotted = ".".join(k.replace("_", "-") for k in key)
        raise ConfigError(
            f"{_where(path, lines, key)}: '{dotted}' {exc.value!r}: {exc.problem}"
        ) from exc


def _key_lines(node: yaml.Node | None, prefix: tuple = ()) -> dict[tuple, int]:
    out: dict[tuple, int] = {}
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = prefix + (str(k.value).replace("-", "_"),)
            out[key] = k.start_mark.line + 1
            out.update(_key_lines(v, key))
    return out


def _where(path: Path, lines: dict[tuple, int], key: tuple) -> str:
    line = lines.get(key) or lines.get(key[:-1])
    return f"{path}:{line}" if line else str(path)


def _build(cls: type, data: Any, prefix: tuple, lines: dict, path: Path) -> Any:
    name = ".".join(prefix) or "top level"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{_where(path, lines, prefix)}: {name} must be a mapping of options")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
    values = {}
    for raw_key, value in data.items():
        key = str(raw_key).replace("-", "_")
        where = _where(path, lines, prefix + (key,))
        dotted = ".".join(prefix + (str(raw_key),))
        if key not in fields:
            choices = ", ".join(f.replace("_", "-") for f in fields)
            raise ConfigError(f"{where}: unknown key '{dotted}' (expected one of: {choices})")
        values[key] = _coerce(hints[key], value, prefix + (key,), lines, path, where, dotted)
    missing = [
        n
        for n, f in fields.items()
        if n not in values
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
    ]
    if missing:
        raise ConfigError(f"{_where(path, lines, prefix)}: {name} needs '{missing[0]}'")
    return cls(**values)


def _coerce(hint: Any, value: Any, key: tuple, lines: dict, path: Path, where: str, dotted: str):  # noqa: ANN202
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, key, lines, path, where, dotted)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key, lines, path)
    if origin is list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"{where}: '{dotted}' must be a list, got {value!r}")
        return [_coerce(args[0], v, key, lines, path, where, dotted) for v in value]
    accepted = _SCALARS.get(hint, ())
    if isinstance(value, accepted) and (hint is bool or not isinstance(value, bool)):
        return hint(value)
    type_name = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"{where}: '{dotted}' must be {type_name}, got {value!r}")
