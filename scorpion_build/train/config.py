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

from scorpion_build.errors import ConfigError
from scorpion_build.models import ARCHITECTURES
from scorpion_build.options import DEVICES, OptionError
from scorpion_build.settings import check_settings, setting
from scorpion_build.settings_yaml import Lines, build, read_mapping
from scorpion_build.train.augment import TaskAugment
from scorpion_build.train.colorspace import COLOR_SPACES
from scorpion_build.train.losses import GRADIENT_MODES, LOSS_FORMS
from scorpion_build.train.style import FDA, STYLE_AUGMENTATIONS, ColorJitter


@dataclass(frozen=True)
class RandStainNAConfig:
    """``color_space`` to fit and transfer in; ``stats`` a saved statistics file (fitted on
    the training split when None); ``spread`` scales the fitted spreads when sampling."""

    color_space: str = setting("lab", "RandStainNA colour space.", choices=COLOR_SPACES)
    stats: str | None = setting(
        None, "Saved RandStainNA statistics.", shown="fitted on the training split"
    )
    spread: float = setting(1.0, "Scale of the fitted spreads when sampling.", minimum=0)

    def __post_init__(self) -> None:
        check_settings(self)


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

    data: str = setting(
        help="A build (or its patches.zarr, or its export) with label maps from `extract "
        "--annotations`, split by slide; or a folder with images/, masks/, split.csv "
        "[, classes.json].",
        shown="required",
    )
    out: str = setting(help="Run folder to write.", shown="required")
    sa: str = setting("none", "Style augmentation.", choices=STYLE_AUGMENTATIONS)
    consistency_weight: float = setting(
        0.3, "SimCons lambda; 0 trains on style-augmented images alone.", minimum=0
    )
    consistency_gradient: str = setting(
        "both",
        "Consistency gradient through both branches, or the clean one detached (stop-clean).",
        choices=GRADIENT_MODES,
    )
    loss: str = setting(
        "gdl",
        "Dice form of both terms: generalised Dice (Sudre 2017, per batch) or the per-tile "
        "class mean with an L1 consistency Dice.",
        choices=LOSS_FORMS,
    )
    epochs: int = setting(50, "Epochs.", minimum=1)
    batch_size: int = setting(
        8, "Images per batch, at least 2 (batch norm; FDA swaps spectra within a batch).",
        minimum=2,
    )  # fmt: skip
    lr: float = setting(1e-4, "Adam learning rate.", above=0)
    size: int = setting(512, "Training crop side in px, a multiple of 32.", minimum=32)
    encoder: str = setting("resnet34", "segmentation-models-pytorch encoder name.")
    encoder_weights: str | None = setting(
        None, "Local encoder weights file (.pth/.safetensors); never downloaded.",
        shown="none (random init)",
    )  # fmt: skip
    arch: str = setting("deeplabv3plus", "Decoder.", choices=ARCHITECTURES)
    classes: list[str] | None = setting(
        None, "Class names (index 0 = background).", shown="classes.json, else the SCORPION three"
    )
    train_scanners: list[str] | None = setting(
        None, "With a build: scanners whose patches are training images, e.g. AT2,P1000.",
        shown="the reference",
    )  # fmt: skip
    seed: int = setting(0, "Random seed.", minimum=0)
    device: str = setting("auto", "Torch device.", choices=DEVICES)
    amp: bool = setting(True, "Mixed precision on CUDA.")
    num_workers: int = setting(0, "DataLoader worker processes.", minimum=0)
    val_style_consistency: bool = setting(
        True, "Per epoch, the Dice between predictions of each validation tile and its copy."
    )
    augment: TaskAugment = field(default_factory=TaskAugment)
    colorjitter: ColorJitter = field(default_factory=ColorJitter)
    randstainna: RandStainNAConfig = field(default_factory=RandStainNAConfig)
    fda: FDA = field(default_factory=FDA)

    def __post_init__(self) -> None:
        if self.train_scanners is not None:  # "AT2,P1000" from YAML, as on the CLI
            given = [self.train_scanners] if isinstance(self.train_scanners, str) else []
            given = given or self.train_scanners
            names = [v.strip() for item in given for v in item.split(",") if v.strip()]
            object.__setattr__(self, "train_scanners", names or None)
        try:
            check_settings(self)
        except OptionError as exc:
            raise ConfigError(f"{exc.option}: {exc.value!r}: {exc.problem}") from exc
        if self.sa == "none" and self.consistency_weight > 0:
            # no second branch to compare: the baseline ignores lambda rather than failing
            object.__setattr__(self, "consistency_weight", 0.0)
        if self.size % 32:
            raise ConfigError(
                f"size: {self.size} px is not a multiple of 32, which the encoders' strides need; "
                f"use {max(32, round(self.size / 32) * 32)}"
            )

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
    def from_dict(
        cls, raw: dict[str, Any], source: str = "config", lines: Lines | None = None
    ) -> TrainConfig:
        """Build from plain values (YAML, JSON or options); an unknown key or a wrong type is
        an error naming ``source`` and, with ``lines`` from :func:`read_yaml_lines`, the line."""
        raw = dict(raw)
        missing = [k for k in ("data", "out") if raw.get(k) in (None, "")]
        if missing:
            raise ConfigError(f"{source}: {' and '.join(missing)} must be given (--data / --out)")
        for key in ("data", "out", "encoder_weights"):
            if raw.get(key) is not None:
                raw[key] = str(raw[key])
        try:
            return build(cls, raw, source, lines)
        except ConfigError:
            raise
        except (TypeError, ValueError) as exc:  # a section's own check (ColorJitter's hue)
            raise ConfigError(f"{source}: {exc}") from exc


def read_yaml_lines(path: str | Path) -> tuple[dict[str, Any], Lines]:
    """The trainer's keys from a YAML file (top level, or its ``train:`` section), and the
    line of each (for :meth:`TrainConfig.from_dict`'s errors)."""
    raw, lines = read_mapping(Path(path))
    if "train" in raw and isinstance(raw["train"], dict):
        raw = raw["train"]
        lines = {key[1:]: n for key, n in lines.items() if key[:1] == ("train",) and key[1:]}
    return raw, lines


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The trainer's keys from a YAML file (top level, or its ``train:`` section)."""
    return read_yaml_lines(path)[0]


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
