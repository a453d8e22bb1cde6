"""``train --data BUILD``: label maps of the chosen scanners, a split by slide that is
recorded, --resume from the saved settings, and the training scale in best.json."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from scorpion_build.cli.main import main
from scorpion_build.splits import group_splits
from scorpion_build.train.paired import slide_of

TINY = ["--encoder", "resnet18", "--size", "64", "--batch-size", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def run(labelled, tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "run"
    args = ["train", "--data", str(labelled["build"]), "--out", str(out), "--epochs", "1"]
    result = CliRunner().invoke(main, [*args, "--train-scanners", "AT2,P1000", *TINY, "--quiet"])
    assert result.exit_code == 0, result.output
    return out


def test_one_epoch_on_a_build_records_split_scale_and_scanners(labelled, run):
    split = pd.read_csv(run / "split.csv")
    assert sorted(split["sample_id"]) == ["synth_000_r00", "synth_000_r01", "synth_000_r02"]
    assert set(split["split"]) == {"train", "val", "test"}
    # one slide cannot be split by slide: the table says what was done
    assert set(split["split_by"]) == {"sample (fewer than 3 slides)"}
    best = json.loads((run / "best.json").read_text())
    assert best["mpp"] == pytest.approx(300 / 128) and best["patch_px"] == 64
    assert best["train_scanners"] == ["AT2", "P1000"]
    assert best["train_config"]["train_scanners"] == ["AT2", "P1000"]
    assert len(pd.read_csv(run / "metrics.csv")) == 1


def test_resume_needs_no_options_repeated(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    result = CliRunner().invoke(
        main, ["train", "--out", str(copy), "--resume", "--epochs", "2", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert list(pd.read_csv(copy / "metrics.csv")["epoch"]) == [1, 2]
    saved = json.loads((copy / "config.json").read_text())
    assert saved["train_scanners"] == ["AT2", "P1000"] and saved["size"] == 64
    changed = CliRunner().invoke(
        main, ["train", "--out", str(copy), "--resume", "--train-scanners", "AT2"]
    )
    assert changed.exit_code == 2 and "different settings for ['train_scanners']" in (
        changed.output
    )
    nothing = CliRunner().invoke(main, ["train", "--out", str(tmp_path / "none"), "--resume"])
    assert nothing.exit_code == 2 and "nothing to resume" in nothing.output


def test_split_keeps_every_slide_in_one_split():
    ids = [f"slide_{s}_r{r:02d}" for s in range(7) for r in range(4)]
    slides = [slide_of(i) for i in ids]
    groups = sorted(set(slides))
    owners = [groups.index(s) for s in slides]
    splits = group_splits(owners, len(groups), np.random.default_rng(0))
    table = pd.DataFrame({"slide": slides, "split": splits})
    assert (table.groupby("slide")["split"].nunique() == 1).all()
    assert set(splits) == {"train", "val", "test"}
    assert slide_of("slide_3/sample_2") == "slide_3"


def test_unknown_train_scanner_is_named(labelled, tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "train",
            "--data",
            str(labelled["build"]),
            "--out",
            str(tmp_path / "r"),
            "--train-scanners",
            "NDP",
            *TINY,
            "--quiet",
        ],
    )
    assert result.exit_code == 2 and "--train-scanners ['NDP'] not in the data's" in result.output


def test_benchmark_warns_when_the_data_mpp_differs(labelled, run, tmp_path):
    from scorpion_build.benchmark import run_benchmark

    model = tmp_path / "best.pt"
    shutil.copy(run / "best.pt", model)
    config = json.loads((run / "best.json").read_text())
    (tmp_path / "best.json").write_text(json.dumps({**config, "mpp": 0.5}))
    result = run_benchmark(
        labelled["build"],
        tmp_path / "b",
        model=model,
        labels=True,
        device="cpu",
        n_bootstrap=0,
        progress=False,
    )
    assert len(result.report["warnings"]) == 1
    assert "trained at 0.5 um/px" in result.report["warnings"][0]
    assert set(result.report["task_dice"]["per_scanner"]) == set(result.report["scanners"])
    same = run_benchmark(
        labelled["build"],
        tmp_path / "c",
        model=run / "best.pt",
        device="cpu",
        n_bootstrap=0,
        progress=False,
    )
    assert same.report["warnings"] == []


def test_an_exported_release_trains_like_its_build(labelled, run, tmp_path):
    release = tmp_path / "release"
    export = CliRunner().invoke(main, ["export", str(labelled["build"]), str(release)])
    assert export.exit_code == 0, export.output
    out = tmp_path / "run"
    args = ["train", "--data", str(release), "--out", str(out), "--epochs", "1", *TINY]
    result = CliRunner().invoke(main, [*args, "--train-scanners", "AT2,P1000", "--quiet"])
    assert result.exit_code == 0, result.output
    # the same samples (mapped back through index.csv), split the same way
    assert pd.read_csv(out / "split.csv").equals(pd.read_csv(run / "split.csv"))
    assert json.loads((out / "best.json").read_text())["mpp"] == pytest.approx(300 / 128)


def test_a_build_without_labels_says_how_to_add_them(labelled, tmp_path):
    import zarr

    build = tmp_path / "build"
    shutil.copytree(labelled["build"], build)
    del zarr.open_group(str(build / "patches.zarr"), mode="r+")["labels"]
    args = ["train", "--data", str(build), "--out", str(tmp_path / "r"), *TINY, "--quiet"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "holds no label maps" in result.output
    assert "extract --annotations" in result.output


def test_train_scanners_from_yaml_as_text_or_list():
    from scorpion_build.train import TrainConfig

    text = TrainConfig.from_dict({"data": "d", "out": "o", "train_scanners": "AT2, P1000"})
    listed = TrainConfig.from_dict({"data": "d", "out": "o", "train_scanners": ["AT2", "P1000"]})
    assert text.train_scanners == listed.train_scanners == ["AT2", "P1000"]
