"""The SimCons study (benchmarks/bench_simcons.py): protocol, cache keys, statistics, report."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest

from benchmarks import simcons_report as report
from benchmarks import simcons_study as study_mod
from benchmarks.simcons_study import PRESETS, Run, Study, load_study, planned_runs
from scorpion_build.train import TrainConfig


def test_cpu_preset_meets_the_protocol():
    study = PRESETS["cpu"]
    synth = study["synth"]
    assert synth["n_paired_slides"] * synth["paired_samples"] >= 100
    assert study["seeds"] >= 5 and study["sweep"]["seeds"] >= 3
    assert study["sweep"]["lambdas"] == [0.0, 0.1, 0.3, 0.5, 1.0]
    assert set(study["variants"]) == {"ref", "hts"}
    assert study["style_augmentations"] == ["colorjitter", "randstainna", "fda"]
    # the training looks are none of the paired set's scanners
    looks = {name for names in study_mod.TRAIN_VARIANTS.values() for name in names}
    assert not looks & set(study_mod.PAIRED_SCANNERS)
    runs = planned_runs(study)
    table = [r for r in runs if not r.overrides]
    # 7 arms x 5 seeds on the reference look, 3 arms (baseline, RandStainNA with and without
    # SimCons) x 5 seeds on the HTS-like look, plus lambdas 0.1, 0.5, 1.0 x 3 seeds
    assert len(table) == 7 * 5 + 3 * 5 + 3 * 3
    assert len({r.label for r in runs}) == len(runs)
    # the ablations only explain: they come after every table and sweep run
    first_ablation = next(i for i, r in enumerate(runs) if r.overrides)
    assert all(r.overrides for r in runs[first_ablation:])


def test_paper_preset_is_the_papers_scale():
    study = load_study("paper", None)
    train = study["train"]
    assert (train["size"], train["encoder"], train["epochs"]) == (1024, "resnet34", 150)
    assert train["amp"] and train["device"] == "cuda" and study["seeds"] == 5


@pytest.fixture
def study(tmp_path):
    return Study(json.loads(json.dumps(PRESETS["smoke"])), tmp_path)


def test_cache_key_covers_every_setting_and_the_code(study, monkeypatch):
    run = Run("ref", "randstainna", 0.3, 0)
    key = study.run_key(run)
    assert study.run_key(Run("ref", "randstainna", 0.3, 0)) == key
    changed = [
        Run("hts", "randstainna", 0.3, 0),
        Run("ref", "randstainna", 0.3, 1),
        Run("ref", "randstainna", 0.5, 0),
        Run("ref", "randstainna", 0.3, 0, {"loss": "l1-mean"}),
    ]
    assert len({study.run_key(r) for r in changed} | {key}) == len(changed) + 1
    settings = [
        ("train", "lr", 0.5),
        ("train", "fda", {"beta": 0.1}),
        ("synth", "seed", 7),
        ("convergence", "max_epochs", 9),
    ]
    for section, name, value in settings:
        before = study.study[section].get(name)
        study.study[section][name] = value
        assert study.run_key(run) != key, f"{section}.{name} is not in the key"
        study.study[section][name] = before
    monkeypatch.setattr(study, "code", "another-version")
    assert study.run_key(Run("ref", "randstainna", 0.3, 0)) != key


def test_results_of_other_settings_or_code_are_never_read(study):
    run = Run("ref", "none", 0.0, 0)
    stale = study.work / "results" / f"{study.run_key(run)}.json"
    stale.parent.mkdir(parents=True)
    stale.write_text(json.dumps({"paired_average": 0.99}))
    assert study.cached(run) == {"paired_average": 0.99}
    study.code = "changed"
    assert study.cached(run) is None


def test_code_version_follows_the_source(tmp_path, monkeypatch):
    (tmp_path / "scorpion_build").mkdir()
    module = tmp_path / "scorpion_build" / "a.py"
    module.write_text("x = 1\n")
    monkeypatch.setattr(study_mod, "REPO", tmp_path)
    monkeypatch.setattr(study_mod, "__file__", str(module))
    before = study_mod.code_version()
    module.write_text("x = 2\n")
    assert study_mod.code_version() != before


def test_paired_difference_interval_by_hand():
    # diffs 1, 2, 3: mean 2, sd 1, t(0.975, 2) = 4.3027 -> half-width 4.3027 / sqrt(3)
    d = report.Difference.of([1.0, 2.0, 3.0])
    assert d.mean == pytest.approx(2.0)
    assert d.high - d.mean == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)
    assert math.isnan(report.Difference.of([1.0]).low)


def test_verdicts():
    holds, flat, unclear = (report.Difference.of(v) for v in ([0.02, 0.03, 0.025],
                            [0.0, 0.001, -0.001], [-0.05, 0.1, 0.02]))  # fmt: skip
    assert report.verdict_improves(holds) == "holds"
    assert report.verdict_improves(flat) == "does not hold"
    assert report.verdict_improves(unclear) == "cannot be told"
    assert report.verdict_not_worse(flat) == "holds"
    assert report.verdict_falls(report.Difference.of([-0.05, -0.04, -0.06])) == "holds"
    assert report.verdict_improves(report.Difference.of([0.1])).startswith("cannot be told")


def fake_rows(study: dict) -> list[dict]:
    rows = []
    for run in planned_runs(study):
        gain = 0.05 * (run.sa != "none") + 0.1 * run.weight
        rows.append({
            "variant": run.variant, "sa": run.sa, "lambda": run.weight, "seed": run.seed,
            "overrides": run.overrides, "paired_average": 0.7 + gain + 0.01 * run.seed,
            "paired_minimum": 0.6 + gain, "val_dice": 0.8, "test_dice": 0.8 - 0.02 * run.weight,
            "paired_task_dice": 0.7, "best_epoch": 2, "epochs": 2, "from_cache": False,
            "paired_classes_predicted": 1 if run.weight == 1.0 else 3,
        })  # fmt: skip
    return rows


def test_report_has_the_table_claims_sweep_and_figure(tmp_path):
    study = json.loads(json.dumps(PRESETS["smoke"]))
    header = {"preset": "smoke", "command": "python benchmarks/bench_simcons.py --preset smoke",
              "commit": "abc", "code": "def", "machine": "test", "date": "today", "wall_s": 1.0,
              "cached": 0, "paired": "10 x 5", "study_json": "{}"}  # fmt: skip
    path = tmp_path / "simcons.md"
    report.write_markdown(path, fake_rows(study), study, header)
    text = path.read_text()
    assert "**Smoke run.**" in text and "--preset smoke" in text
    assert "| ref | RandStainNA + SimCons (l=0.3) | 2 |" in text
    assert "| hts | RandStainNA > baseline | paired_average |" in text
    # a per-seed offset shared by both arms cancels in the paired difference
    claim = "| ref | RandStainNA+SimCons > RandStainNA | paired_average | +3.00 [+3.00, +3.00]"
    assert claim + " (n=2) | holds |" in text
    assert "holds" in text and "loss=l1-mean" in text
    assert "2 of 16 runs predict a single class on the whole paired set" in text
    assert "epochs run 2-2. 16 of 16 runs still peaked late" in text
    png = tmp_path / "simcons_lambda.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("preset", ["smoke", "cpu", "paper"])
def test_every_planned_run_is_a_valid_training_config(preset, tmp_path):
    study = load_study(preset, None)
    for run in planned_runs(study):
        config = TrainConfig.from_dict({**run.settings(study), "data": "d", "out": "o"})
        assert config.sa == run.sa and config.seed == run.seed
        if run.overrides.get("randstainna"):
            assert config.randstainna.spread == run.overrides["randstainna"]["spread"]


def test_runs_are_extended_while_the_best_epoch_is_late(study, monkeypatch):
    # best epoch = epochs run until 4, then stays at 4; late means > 75% of the epochs run:
    # 2/2, 3/3, 4/4, 4/5 are late; 4/6 is not, so the run stops at 6 epochs
    calls = []

    def fake_train(config, resume, progress):
        calls.append((config.epochs, resume))
        history = list(range(config.epochs))
        return SimpleNamespace(history=history, best_epoch=min(config.epochs, 4))

    monkeypatch.setattr(study_mod, "train", fake_train)
    study.study["convergence"] = {"late_fraction": 0.25, "extend_epochs": 1, "max_epochs": 9}
    config = TrainConfig(data="d", out="o", epochs=2)
    result = study._train_to_convergence(config, study.work / "run")
    assert calls == [(2, False), (3, True), (4, True), (5, True), (6, True)]
    assert len(result.history) == 6 and result.best_epoch == 4
    # never beyond max_epochs
    calls.clear()
    study.study["convergence"]["max_epochs"] = 3
    study._train_to_convergence(config, study.work / "run2")
    assert calls == [(2, False), (3, True)]
