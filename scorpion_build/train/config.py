"""The trainer's configuration: one dataclass, read from YAML and/or command-line options.

A YAML file holds the same keys as :class:`TrainConfig` (``scorpion-build train --help``
lists them), either at the top level or under a ``train:`` section so a pipeline file can
carry several stages. Sections ``augment``, ``colorjitter``, ``randstainna`` and ``fda``
set the augmentations' parameters.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from scorpion_build.errors import ConfigError
from scorpion_build.train.augment import TaskAugment
from scorpion_build.train.colorspace import check_color_space
from scorpion_build.train.losses import GRADIENT_MODES, LOSS_FORMS
from scorpion_build.train.style import FDA, STYLE_AUGMENTATIONS, ColorJitter


@dataclass(frozen=True)
class RandStainNAConfig:
    """``color_space`` to fit and transfer in; ``stats`` a saved statistics file (fitted on
    the training split when None); ``spread`` scales the fitted spreads when sampling."""

    color_space: str = "lab"
    stats: str | None = None
    spread: float = 1.0


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (paper defaults, docs/training.md).

    Units: ``size`` is the square training crop in pixels; ``lr`` is Adam's step size;
    ``consistency_weight`` is SimCons' lambda; ``loss`` the Dice form of both terms
    (:data:`~scorpion_build.train.losses.LOSS_FORMS`). With a style augmentation and
    lambda = 0 the style-augmented image is the training input (plain style augmentation);
    with lambda > 0 the supervised term sees the task-augmented image and the consistency
    term compares its prediction with that of its style-augmented copy (SimCons).
    ``val_style_consistency`` adds, per epoch, the Dice between predictions of each
    validation tile and of its style-augmented copy (one more inference pass).
    """

    data: str
    out: str
    sa: str = "none"
    consistency_weight: float = 0.3
    consistency_gradient: str = "both"
    loss: str = "gdl"
    epochs: int = 50
    batch_size: int = 8
    lr: float = 1e-4
    size: int = 512
    encoder: str = "resnet34"
    encoder_weights: str | None = None
    arch: str = "deeplabv3plus"
    classes: list[str] | None = None
    train_scanners: list[str] | None = None
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    num_workers: int = 0
    val_style_consistency: bool = True
    augment: TaskAugment = field(default_factory=TaskAugment)
    colorjitter: ColorJitter = field(default_factory=ColorJitter)
    randstainna: RandStainNAConfig = field(default_factory=RandStainNAConfig)
    fda: FDA = field(default_factory=FDA)

    def __post_init__(self) -> None:
        if self.sa not in STYLE_AUGMENTATIONS:
            raise ConfigError(f"sa: {self.sa!r} is not one of {list(STYLE_AUGMENTATIONS)}")
        if self.consistency_gradient not in GRADIENT_MODES:
            raise ConfigError(
                f"consistency_gradient: {self.consistency_gradient!r} is not one of "
                f"{list(GRADIENT_MODES)}"
            )
        if self.loss not in LOSS_FORMS:
            raise ConfigError(f"loss: {self.loss!r} is not one of {list(LOSS_FORMS)}")
        if self.consistency_weight < 0:
            raise ConfigError(f"consistency_weight: must be >= 0, got {self.consistency_weight}")
        if isinstance(self.train_scanners, str):  # "AT2,P1000" from YAML, as on the CLI
            names = [v.strip() for v in self.train_scanners.split(",") if v.strip()]
            object.__setattr__(self, "train_scanners", names or None)
        if self.sa == "none" and self.consistency_weight > 0:
            # no second branch to compare: the baseline ignores lambda rather than failing
            object.__setattr__(self, "consistency_weight", 0.0)
        for key in ("epochs", "batch_size", "size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key}: must be a positive integer, got {getattr(self, key)}")
        if self.size % 32:
            raise ConfigError(
                f"size: {self.size} px is not a multiple of 32, which the encoders' strides need; "
                f"use {max(32, round(self.size / 32) * 32)}"
            )
        if self.lr <= 0:
            raise ConfigError(f"lr: must be > 0, got {self.lr}")
        if self.sa == "fda" and self.batch_size < 2:
            raise ConfigError("batch_size: FDA swaps spectra within a batch; use batch_size >= 2")
        if self.batch_size < 2:
            raise ConfigError("batch_size: batch norm needs at least 2 images per batch")
        try:
            check_color_space(self.randstainna.color_space)
        except ValueError as exc:
            raise ConfigError(f"randstainna.color_space: {exc}") from exc

    @property
    def two_branch(self) -> bool:
        """True when SimCons' consistency term is on (a style augmentation and lambda > 0)."""
        return self.sa != "none" and self.consistency_weight > 0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (tuples become lists), as saved in a run's config.json."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config") -> TrainConfig:
        """Build from plain values (YAML or JSON); unknown keys are an error naming ``source``."""
        raw = dict(raw)
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {unknown}; known keys are {sorted(known)}")
        for name, section in (
            ("augment", TaskAugment),
            ("colorjitter", ColorJitter),
            ("randstainna", RandStainNAConfig),
            ("fda", FDA),
        ):
            if name in raw and not isinstance(raw[name], section):
                raw[name] = _section(section, raw[name] or {}, f"{source}: {name}")
        missing = [k for k in ("data", "out") if raw.get(k) in (None, "")]
        if missing:
            raise ConfigError(f"{source}: {' and '.join(missing)} must be given (--data / --out)")
        for key in ("data", "out", "encoder_weights"):
            if raw.get(key) is not None:
                raw[key] = str(raw[key])
        try:
            return cls(**raw)
        except (TypeError, ValueError) as exc:  # ConfigError included: add the source
            raise ConfigError(f"{source}: {exc}") from exc


def _section(cls: type, raw: dict[str, Any], where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of parameters, got {raw!r}")
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - fields)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known keys are {sorted(fields)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The trainer's keys from a YAML file (top level, or its ``train:`` section)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of training options at the top level")
    if "train" in raw and isinstance(raw["train"], dict):
        raw = raw["train"]
    return raw


RESUME_IGNORED = frozenset(
    {"data", "out", "epochs", "device", "num_workers", "val_style_consistency"}
)
"""Keys that may change between an interrupted run and its resumption; everything else must
match, or the resumed run would not be the run that was started."""


def resume_mismatches(saved: dict[str, Any], current: TrainConfig) -> list[str]:
    """Keys whose values differ between a run's saved config and ``current``."""
    now = current.to_dict()
    return sorted(
        k for k in set(saved) | set(now) if k not in RESUME_IGNORED and saved.get(k) != now.get(k)
    )


def saved_settings(out: str | Path | None) -> dict[str, Any]:
    """The settings a run in ``out`` was started with (its config.json), for ``--resume``."""
    if not out:
        raise ConfigError("--resume needs --out RUN, the folder of the run to continue")
    path = Path(out) / "config.json"
    if not path.is_file():
        raise ConfigError(f"{path}: missing; nothing to resume in {out} (start without --resume)")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc}); start a new --out") from exc
    return {**raw, "out": str(out)}
