"""The SimCons study's settings, data and runs: what bench_simcons.py trains and caches.

A study is one plain dictionary (a preset below, or a YAML file such as
``pipelines/table1.yaml``). Every run is cached under ``WORK/results/<key>.json`` where the
key hashes the run's full training settings, the synthetic data settings, the evaluation
and the code version (the source of ``scorpion_build`` and of this module), so a changed
setting or a code change never reuses an old result.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from scorpion_build import metrics
from scorpion_build.bench.layout import read_label_map, read_rgb, scan_layout
from scorpion_build.models import load_model, resolve_device
from scorpion_build.synth import SynthConfig
from scorpion_build.synth.labelled import write_paired_set, write_train_set
from scorpion_build.train import TrainConfig, TrainResult, train
from scorpion_build.train.evaluate import predict_labels

REPO = Path(__file__).resolve().parents[1]
PAIRED_SCANNERS = ("AT2", "DP200", "GT450", "P1000", "Philips")
# training looks: names outside the SCORPION five get their own style (synth.styles), so
# every scanner style of the paired set is unseen in training, as in the paper
TRAIN_VARIANTS = {"ref": ("LabScanA",), "hts": ("LabScanA", "LabScanB")}

# the CPU presets' model: DeepLabV3+ as in the paper, a ResNet18 encoder from random init
_CPU_TRAIN = {
    "arch": "deeplabv3plus",
    "encoder": "resnet18",
    "loss": "gdl",
    "batch_size": 8,
    "lr": 1e-3,
    "device": "cpu",
    "amp": False,
    "val_style_consistency": False,
}
_SMOKE_SYNTH = {"n_train": 64, "patch_px": 64, "patch_mpp": 2.0, "n_paired_slides": 2}
_CPU_SYNTH = {"n_train": 160, "patch_px": 96, "patch_mpp": 2.0, "n_paired_slides": 10}
PRESETS: dict[str, dict[str, Any]] = {
    # every stage once, on a toy: checks the pipeline end to end; its numbers mean nothing
    "smoke": {
        "synth": {**_SMOKE_SYNTH, "paired_samples": 5, "seed": 0},
        "train": {**_CPU_TRAIN, "size": 32, "epochs": 2},
        "convergence": {"late_fraction": 0.25, "extend_epochs": 1, "max_epochs": 3},
        "variants": ["ref", "hts"],
        "style_augmentations": ["randstainna"],
        "table_lambda": 0.3,
        "seeds": 2,
        "sweep": {"variant": "ref", "sa": "randstainna", "lambdas": [0.0, 0.3, 1.0], "seeds": 2},
        "ablations": [{"loss": "l1-mean"}],
    },
    # the CPU study (~45 min of 2 cores on a quiet machine, ~1.5 h on a busy one): 100
    # paired samples x 5 scanners; every method on the reference look, the HTS-like look
    # with the baseline and RandStainNA (with and without SimCons)
    "cpu": {
        "synth": {**_CPU_SYNTH, "paired_samples": 10, "seed": 0},
        "train": {**_CPU_TRAIN, "size": 64, "epochs": 8},
        # best epoch in the last quarter: not converged yet, train 3 more (up to 14)
        "convergence": {"late_fraction": 0.25, "extend_epochs": 3, "max_epochs": 14},
        "variants": ["ref", "hts"],
        "style_augmentations": ["colorjitter", "randstainna", "fda"],
        "variant_augmentations": {"hts": ["randstainna"]},
        "table_lambda": 0.3,
        "seeds": 5,
        "sweep": {
            "variant": "ref",
            "sa": "randstainna",
            "lambdas": [0.0, 0.1, 0.3, 0.5, 1.0],
            "seeds": 3,
        },
        # what else could explain SimCons not helping: loss form and reduction, which
        # branch gets the gradient (run last, 3 seeds each)
        "ablations": [{"loss": "l1-mean"}, {"consistency_gradient": "stop-clean"}],
    },
}
PRESET_FILES = {"paper": REPO / "pipelines" / "table1.yaml"}


def load_study(preset: str | None, config_file: Path | None) -> dict[str, Any]:
    """The study settings: a built-in preset, ``pipelines/table1.yaml`` for ``paper``, or a
    YAML file with the same keys."""
    if config_file is None and preset in PRESET_FILES:
        config_file = PRESET_FILES[preset]
    if config_file is not None:
        study = yaml.safe_load(Path(config_file).read_text())
        # variant_augmentations is optional: without it every variant trains every SA
        missing = sorted(set(PRESETS["cpu"]) - set(study) - {"variant_augmentations"})
        if missing:
            raise SystemExit(f"{config_file}: missing study keys {missing}; see PRESETS['cpu']")
        return study
    return json.loads(json.dumps(PRESETS[preset or "cpu"]))


def code_version() -> str:
    """Hash of the code a run's result depends on: scorpion_build and this module."""
    digest = hashlib.sha256()
    files = sorted((REPO / "scorpion_build").rglob("*.py")) + [Path(__file__).resolve()]
    for path in files:
        digest.update(str(path.relative_to(REPO)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


@dataclass(frozen=True)
class Run:
    """One training run of the study: training variant, style augmentation, lambda, seed,
    and any setting that differs from the study's training settings (an ablation)."""

    variant: str
    sa: str
    weight: float
    seed: int
    overrides: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def label(self) -> str:
        extra = "".join(f" {k}={v}" for k, v in sorted(self.overrides.items()))
        return f"{self.variant} {self.sa} l={self.weight:g} s{self.seed}{extra}"

    def settings(self, study: dict[str, Any]) -> dict[str, Any]:
        return {
            **study["train"],
            **self.overrides,
            "sa": self.sa,
            "consistency_weight": self.weight,
            "seed": self.seed,
        }


def augmentations(study: dict[str, Any], variant: str) -> list[str]:
    """The style augmentations trained on ``variant``: ``variant_augmentations[variant]``
    where the study names a subset, else every one of ``style_augmentations``."""
    return list(study.get("variant_augmentations", {}).get(variant, study["style_augmentations"]))


def planned_runs(study: dict[str, Any]) -> list[Run]:
    """Every run: the table and the sweep seed-major (an interrupted study still has whole
    seeds), then the ablations, which only explain."""
    lam = study["table_lambda"]
    sweep = study["sweep"]
    runs: list[Run] = []
    for seed in range(max(study["seeds"], sweep["seeds"])):
        if seed < study["seeds"]:
            for variant in study["variants"]:
                runs.append(Run(variant, "none", 0.0, seed))
                for sa in augmentations(study, variant):
                    runs += [Run(variant, sa, 0.0, seed), Run(variant, sa, lam, seed)]
        if seed < sweep["seeds"]:
            runs += [Run(sweep["variant"], sweep["sa"], w, seed) for w in sweep["lambdas"]]
    for seed in range(sweep["seeds"]):
        runs += [Run(sweep["variant"], sweep["sa"], lam, seed, dict(o)) for o in study["ablations"]]
    unique: dict[str, Run] = {}
    for run in runs:
        unique.setdefault(run.label, run)
    return list(unique.values())


class Study:
    """Data, cache and runs of one study under ``work``."""

    def __init__(self, study: dict[str, Any], work: Path) -> None:
        self.study = study
        self.work = work
        self.code = code_version()
        self.data = work / f"data-{_key(study['synth'], self.code)}"
        self._paired: tuple[list[np.ndarray], np.ndarray, int] | None = None

    def run_key(self, run: Run) -> str:
        return _key(
            run.settings(self.study),
            run.variant,
            self.study["synth"],
            self.study["convergence"],
            self.code,
        )

    def cached(self, run: Run) -> dict[str, Any] | None:
        path = self.work / "results" / f"{self.run_key(run)}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def prepare_data(self) -> None:
        """Synthesise the training variants and the paired set once per synth settings."""
        config = SynthConfig(
            **self.study["synth"], labelled=True, scanners=PAIRED_SCANNERS
        ).validate()
        done = self.data / "done.json"
        if done.is_file():
            return
        for variant in self.study["variants"]:
            write_train_set(self.data / variant, config, TRAIN_VARIANTS[variant])
        write_paired_set(self.data / "paired", config)
        done.write_text(json.dumps(self.study["synth"]))

    def paired(self) -> tuple[list[np.ndarray], np.ndarray, int]:
        """Paired images in (sample, scanner) order, ground truth ``(N, H, W)``, and N."""
        if self._paired is None:
            folder = self.data / "paired"
            table = scan_layout(folder, (".jpg",))
            images, labels = [], []
            for sample_id, files in table.items():
                images.extend(read_rgb(files[s]) for s in PAIRED_SCANNERS)
                labels.append(read_label_map(folder / sample_id / "label.png"))
            self._paired = (images, np.stack(labels), len(table))
        return self._paired

    def execute(self, run: Run) -> dict[str, Any]:
        """Train and evaluate ``run``, or read its cached result (``from_cache`` says which)."""
        cached = self.cached(run)
        if cached is not None:
            return {**cached, "from_cache": True}
        key = self.run_key(run)
        out = self.work / "runs" / key
        config = TrainConfig.from_dict(
            {**run.settings(self.study), "data": str(self.data / run.variant), "out": str(out)}
        )
        started = time.perf_counter()
        result = self._train_to_convergence(config, out)
        epochs = len(result.history)
        row = {
            "key": key,
            "label": run.label,
            "variant": run.variant,
            "sa": run.sa,
            "lambda": run.weight,
            "seed": run.seed,
            "overrides": run.overrides,
            "test_dice": result.test_dice,
            "val_dice": result.best_val_dice,
            "best_epoch": result.best_epoch,
            "epochs": epochs,
            **self.evaluate_paired(result.checkpoint),
            "seconds": round(time.perf_counter() - started, 1),
            "code": self.code,
        }
        path = self.work / "results" / f"{key}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        # written whole or not at all: a study killed mid-write must not leave a broken entry
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(row, indent=2))
        tmp.replace(path)
        return {**row, "from_cache": False}

    def _train_to_convergence(self, config: TrainConfig, out: Path) -> TrainResult:
        """Train, then extend by ``extend_epochs`` while the best validation epoch lies in the
        last ``late_fraction`` of the epochs run, up to ``max_epochs`` (resumed exactly, so
        the extended run is the run that would have been trained for longer)."""
        rule = self.study["convergence"]
        result = train(config, resume=(out / "state.pt").exists(), progress=False)
        while (
            result.best_epoch > (1 - rule["late_fraction"]) * len(result.history)
            and len(result.history) < rule["max_epochs"]
        ):
            epochs = min(len(result.history) + rule["extend_epochs"], rule["max_epochs"])
            result = train(config.replace(epochs=epochs), resume=True, progress=False)
        return result

    def evaluate_paired(self, checkpoint: Path) -> dict[str, float]:
        """Scanner-paired Dice (average and minimum over the 10 pairs) and task Dice on the
        paired set, as ``scorpion-build benchmark`` computes them (docs/contracts.md)."""
        images, labels, n = self.paired()
        device = resolve_device(self.study["train"]["device"])
        model, config = load_model(checkpoint, device)
        num_classes = len(config["classes"])
        preds = predict_labels(model, images, device, batch_size=16)
        preds = np.stack(preds).reshape(n, len(PAIRED_SCANNERS), *labels.shape[1:])
        summary = metrics.consistency_summary(
            metrics.pairwise_dice(preds, num_classes),
            PAIRED_SCANNERS,
            config["classes"],
            n_bootstrap=0,
        )
        task = metrics.task_summary(
            metrics.task_dice(preds, labels, num_classes), PAIRED_SCANNERS, config["classes"]
        )
        return {
            "paired_average": summary.average,
            "paired_minimum": summary.minimum,
            "paired_task_dice": task["average"],
            # one class everywhere agrees across scanners trivially (mode collapse)
            "paired_classes_predicted": int(np.unique(preds).size),
        }


def execute_run(study: dict[str, Any], work: Path, run: Run) -> dict[str, Any]:
    """:meth:`Study.execute` in a worker process (data already prepared by the parent)."""
    return Study(study, work).execute(run)
