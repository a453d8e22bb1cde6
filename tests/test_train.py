"""`scorpion-build train`: data checks, a CPU smoke run, resume equality, config and CLI."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from click.testing import CliRunner

from scorpion_build.cli.main import main
from scorpion_build.models import IMAGENET_MEAN, IMAGENET_STD, load_model
from scorpion_build.train import DataError, RunError, TrainConfig, load_labelled_data, train
from scorpion_build.train.config import ConfigError, read_yaml
from scorpion_build.train.data import EpochSampler, SegmentationDataset
from scorpion_build.train.evaluate import predict_labels
from scorpion_build.train.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
COLOURS = np.array([[235, 210, 225], [90, 40, 130], [210, 110, 170]], np.uint8)


def write_dataset(root: Path, n: int = 12, size_px: int = 48, seed: int = 0) -> Path:
    """Tiny 3-class tiles: discs of two tissue colours on a pale background, with noise.

    The last four stems are val (2) and test (2).
    """
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        mask = np.zeros((size_px, size_px), np.uint8)
        for cls in (1, 2):
            for _ in range(2):
                x, y = (int(v) for v in rng.integers(0, size_px, 2))
                cv2.circle(mask, (x, y), int(rng.integers(5, 12)), cls, -1)
        image = COLOURS[mask] + rng.normal(0, 8, (size_px, size_px, 3))
        image = np.clip(image, 0, 255).astype(np.uint8)
        stem = f"tile{i:02d}"
        cv2.imwrite(str(root / "images" / f"{stem}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(root / "masks" / f"{stem}.png"), mask)
        split = "train" if i < n - 4 else "val" if i < n - 2 else "test"
        rows.append({"stem": stem, "split": split})
    pd.DataFrame(rows).to_csv(root / "split.csv", index=False)
    return root


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "data")


def small_config(data: Path, out: Path, **changes) -> TrainConfig:
    """A config that trains in about a second per epoch on one CPU thread."""
    base = {
        "data": str(data),
        "out": str(out),
        "encoder": "resnet18",
        "size": 32,
        "batch_size": 4,
        "lr": 1e-3,
        "epochs": 2,
        "seed": 0,
        "device": "cpu",
    }
    return TrainConfig.from_dict({**base, **changes})


# --- data -----------------------------------------------------------------------------------


def test_load_labelled_data_indexes_splits_and_default_classes(data_dir):
    data = load_labelled_data(data_dir)
    assert data.classes == ("background", "cancer_area", "cancer_stroma")
    assert [len(data.split(s)) for s in ("train", "val", "test")] == [8, 2, 2]


def test_classes_json_names_the_classes(data_dir):
    (data_dir / "classes.json").write_text(json.dumps(["bg", "tumour", "stroma", "necrosis"]))
    assert load_labelled_data(data_dir).classes == ("bg", "tumour", "stroma", "necrosis")


def test_mismatched_stems_are_named(data_dir):
    (data_dir / "masks" / "tile03.png").unlink()
    with pytest.raises(DataError, match=r"without a mask \(tile03\).*masks/<stem>.png"):
        load_labelled_data(data_dir)


def test_size_mismatch_names_the_mask(data_dir):
    cv2.imwrite(str(data_dir / "masks" / "tile05.png"), np.zeros((40, 48), np.uint8))
    with pytest.raises(
        DataError, match=r"tile05.png: label map is 48x40 px but tile05.png is 48x48"
    ):
        load_labelled_data(data_dir)


def test_label_values_outside_the_classes_are_named(data_dir):
    mask = np.zeros((48, 48), np.uint8)
    mask[0, 0] = 7
    cv2.imwrite(str(data_dir / "masks" / "tile01.png"), mask)
    with pytest.raises(DataError, match=r"tile01.png: label value 7 but only 3 classes"):
        load_labelled_data(data_dir)


def test_colour_mask_is_rejected(data_dir):
    cv2.imwrite(
        str(data_dir / "masks" / "tile02.png"),
        np.dstack([np.zeros((48, 48))] * 2 + [np.ones((48, 48))]),
    )
    with pytest.raises(DataError, match="tile02.png: a colour image, not a label map"):
        load_labelled_data(data_dir)


@pytest.mark.parametrize(
    ("csv", "message"),
    [
        (None, "split.csv: missing; write a CSV with columns stem,split"),
        ("name,split\n", r"missing column\(s\) \['stem'\]"),
        ("stem,split\ntile00,holdout\n", r"unknown split value\(s\) \['holdout'\]"),
        ("stem,split\nnope,train\n", "stem(.*) with no image/mask: nope"),
    ],
)
def test_split_csv_errors(data_dir, csv, message):
    if csv is None:
        (data_dir / "split.csv").unlink()
    else:
        (data_dir / "split.csv").write_text(csv)
    with pytest.raises(DataError, match=message):
        load_labelled_data(data_dir)


def test_unlisted_files_and_missing_val_split(data_dir):
    table = pd.read_csv(data_dir / "split.csv")
    table.iloc[1:].to_csv(data_dir / "split.csv", index=False)
    with pytest.raises(DataError, match=r"1 file\(s\) not listed \(tile00\)"):
        load_labelled_data(data_dir)
    table.assign(split="train").to_csv(data_dir / "split.csv", index=False)
    with pytest.raises(DataError, match="no 'val' rows"):
        load_labelled_data(data_dir)


def test_crop_larger_than_tile_is_an_error(data_dir):
    items = load_labelled_data(data_dir).split("train")
    with pytest.raises(DataError, match="smaller than the training crop --size 64"):
        SegmentationDataset(items, crop_px=64)[(0, 1)]


def test_epoch_sampler_is_seeded_by_seed_and_epoch():
    first = list(EpochSampler(10, seed=3, epoch=0))
    assert first == list(EpochSampler(10, seed=3, epoch=0))
    assert first != list(EpochSampler(10, seed=3, epoch=1))
    assert sorted(i for i, _ in first) == list(range(10))


def test_crops_align_image_and_mask(data_dir):
    items = load_labelled_data(data_dir).split("train")
    item = SegmentationDataset(items, crop_px=32)[(0, 123)]
    assert item["image"].shape == (3, 32, 32) and item["mask"].shape == (32, 32)
    # every pixel's colour is near its class colour: the crop windows are the same
    colour = torch.from_numpy(COLOURS.astype(np.float32))[item["mask"]].permute(2, 0, 1)
    assert (item["image"].float() - colour).abs().mean() < 10


# --- config ---------------------------------------------------------------------------------


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="size: 100 px is not a multiple of 32.*use 96"):
        TrainConfig(data="d", out="o", size=100)
    with pytest.raises(ConfigError, match=r"unknown key 'learning_rate' \(expected one of: data"):
        TrainConfig.from_dict({"data": "d", "out": "o", "learning_rate": 1})
    with pytest.raises(ConfigError, match=r"unknown key 'fda.band' \(expected one of: beta\)"):
        TrainConfig.from_dict({"data": "d", "out": "o", "fda": {"band": 1}})
    with pytest.raises(ConfigError, match="sa: 'cyclegan'"):
        TrainConfig(data="d", out="o", sa="cyclegan")
    with pytest.raises(ConfigError, match="loss: 'dice': choose one of gdl, l1-mean"):
        TrainConfig(data="d", out="o", loss="dice")
    with pytest.raises(ConfigError, match="batch_size: 1: must be >= 2"):
        TrainConfig(data="d", out="o", batch_size=1)
    with pytest.raises(ConfigError, match=r"'fda.beta' 0\.5: must be < 0\.5"):
        TrainConfig.from_dict({"data": "d", "out": "o", "fda": {"beta": 0.5}})


def test_example_pipeline_config_is_valid():
    raw = read_yaml(REPO / "pipelines" / "train.yaml")
    config = TrainConfig.from_dict(raw, source="pipelines/train.yaml")
    assert config.sa in ("colorjitter", "randstainna", "fda") and config.two_branch
    # the file lists every key with its default (docs/training.md), but for SimCons' sa
    defaults = TrainConfig(data=config.data, out=config.out, sa=config.sa).to_dict()
    assert sorted(raw) == sorted(defaults)
    assert config.to_dict() == defaults


# --- training -------------------------------------------------------------------------------


def test_two_epoch_cpu_run_lowers_the_loss_and_writes_a_safe_checkpoint(data_dir, tmp_path):
    result = train(small_config(data_dir, tmp_path / "run", sa="colorjitter"), progress=False)
    history = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert list(history["epoch"]) == [1, 2]
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]
    assert history["consistency"].gt(0).all()  # SimCons term active with lambda 0.3
    state = torch.load(result.checkpoint, weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    config = json.loads(result.checkpoint.with_suffix(".json").read_text())
    assert config["classes"] == ["background", "cancer_area", "cancer_stroma"]
    assert config["encoder"] == "resnet18" and config["arch"] == "deeplabv3plus"
    assert config["epoch"] == result.best_epoch
    model, _ = load_model(result.checkpoint)
    assert sum(p.numel() for p in model.parameters()) > 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["best_val_dice"] == pytest.approx(history["val_dice"].max())
    assert 0 <= summary["test_dice"] <= 1
    torch.load(tmp_path / "run" / "state.pt", weights_only=True)  # resume state is safe too


def test_resume_continues_exactly(data_dir, tmp_path):
    straight = train(small_config(data_dir, tmp_path / "a", sa="fda"), progress=False)
    train(small_config(data_dir, tmp_path / "b", sa="fda", epochs=1), progress=False)
    resumed = train(small_config(data_dir, tmp_path / "b", sa="fda"), resume=True, progress=False)
    a = torch.load(tmp_path / "a" / "state.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "state.pt", weights_only=True)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    cols = ["epoch", "loss", "supervised", "consistency", "val_dice"]
    pd.testing.assert_frame_equal(straight.history[cols], resumed.history[cols])


def test_existing_run_needs_resume_and_same_settings(data_dir, tmp_path):
    train(small_config(data_dir, tmp_path / "run", epochs=1), progress=False)
    with pytest.raises(RunError, match="already holds a run.*--resume"):
        train(small_config(data_dir, tmp_path / "run"), progress=False)
    with pytest.raises(RunError, match=r"different settings for \['lr'\]"):
        train(small_config(data_dir, tmp_path / "run", lr=0.1), resume=True, progress=False)


def test_randstainna_run_fits_and_saves_statistics(data_dir, tmp_path):
    train(
        small_config(
            data_dir, tmp_path / "run", sa="randstainna", epochs=1, consistency_weight=0.0
        ),
        progress=False,
    )
    stats = json.loads((tmp_path / "run" / "randstainna.json").read_text())
    assert stats["color_space"] == "lab" and stats["n_images"] == 8
    history = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert history["consistency"].eq(0).all()  # lambda 0: plain style augmentation


# --- CLI ------------------------------------------------------------------------------------


def test_cli_runs_from_yaml_with_option_overrides(data_dir, tmp_path):
    config = {
        "train": {
            "data": str(data_dir),
            "out": str(tmp_path / "ignored"),
            "encoder": "resnet18",
            "size": 32,
            "batch_size": 4,
            "epochs": 5,
            "sa": "fda",
            "fda": {"beta": 0.02},
        }
    }
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    result = CliRunner().invoke(
        main,
        [
            "train",
            "--config",
            str(path),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--loss",
            "l1-mean",
            "--quiet",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "best epoch 1" in result.output
    saved = json.loads((out / "config.json").read_text())
    assert saved["epochs"] == 1 and saved["fda"]["beta"] == 0.02 and saved["sa"] == "fda"
    assert saved["loss"] == "l1-mean"


def test_cli_reports_bad_data_clearly(tmp_path):
    result = CliRunner().invoke(
        main, ["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 2
    assert "nowhere: no such data folder" in result.output


# --- inference helpers ------------------------------------------------------------------------


class StrideCheckingModel(torch.nn.Module):
    """Stands in for a segmentation net: refuses sizes off the stride, echoes the input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[-2] % 32 == 0 and x.shape[-1] % 32 == 0, x.shape
        return x  # three "classes" = the normalised RGB channels


def test_predict_labels_pads_to_the_stride_and_crops_back():
    rng = np.random.default_rng(0)
    images = [
        rng.integers(0, 256, shape, dtype=np.uint8)
        for shape in [(50, 70, 3), (50, 70, 3), (20, 33, 3)]
    ]
    preds = predict_labels(StrideCheckingModel(), images, torch.device("cpu"), batch_size=2)
    assert [p.shape for p in preds] == [(50, 70), (50, 70), (20, 33)]
    # the echo model's argmax is the channel with the largest ImageNet-normalised value
    for image, pred in zip(images, preds, strict=True):
        normalised = (image / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
        np.testing.assert_array_equal(pred, normalised.argmax(axis=-1))


def test_cli_help_lists_the_options():
    result = CliRunner().invoke(main, ["train", "--help"])
    assert result.exit_code == 0
    for option in (
        "--sa",
        "--loss",
        "--consistency-weight",
        "--encoder-weights",
        "--resume",
        "--config",
    ):
        assert option in result.output


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (AMP path)")
def test_cuda_amp_run(data_dir, tmp_path):
    result = train(
        small_config(data_dir, tmp_path / "run", sa="randstainna", device="cuda", epochs=1),
        progress=False,
    )
    assert 0 <= result.best_val_dice <= 1
    assert json.loads((tmp_path / "run" / "config.json").read_text())["amp"] is True


def test_encoder_weights_come_from_a_local_file(data_dir, tmp_path):
    import torchvision

    torch.manual_seed(123)
    weights = torchvision.models.resnet18().state_dict()
    path = tmp_path / "resnet18.pth"
    torch.save(weights, path)
    trainer = Trainer(small_config(data_dir, tmp_path / "run", encoder_weights=str(path)))
    torch.testing.assert_close(trainer.model.encoder.conv1.weight, weights["conv1.weight"])
