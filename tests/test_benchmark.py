"""`scorpion-build benchmark` on tiny paired sets: sources, predictions, checkpoints, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
import zarr
from click.testing import CliRunner

from scorpion_build.bench.inference import predict_batch, preprocess
from scorpion_build.bench.layout import DataError
from scorpion_build.bench.predictions import MISSING
from scorpion_build.bench.sources import open_patch_source
from scorpion_build.benchmark import run_benchmark
from scorpion_build.cli.main import main
from scorpion_build.models import IMAGENET_MEAN, IMAGENET_STD, build_model, save_checkpoint

SCANNERS = ["AT2", "GT450", "P1000"]
CLASSES = ["background", "cancer_area", "cancer_stroma"]
# natural order: slide_2 before slide_10
SAMPLES = ["slide_2/sample_0", "slide_2/sample_1", "slide_10/sample_0"]
MISSING_PATCH = ("slide_10/sample_0", "P1000")
SIZE_PX = 64


def tissue_label(seed: int) -> np.ndarray:
    """A label map with all three classes: a disc of class 1 inside a band of class 2."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE_PX, :SIZE_PX]
    cy, cx = rng.integers(20, 44, 2)
    label = np.zeros((SIZE_PX, SIZE_PX), np.uint8)
    label[(yy - cy) ** 2 + (xx - cx) ** 2 < 22**2] = 2
    label[(yy - cy) ** 2 + (xx - cx) ** 2 < 12**2] = 1
    return label


def stained(label: np.ndarray, scanner: int) -> np.ndarray:
    """RGB patch coloured by class, with a per-scanner colour cast like a real scanner's."""
    palette = np.array([[235, 225, 235], [120, 60, 150], [220, 130, 180]], np.float64)
    image = palette[label] + np.array([10, -8, 5]) * scanner
    return np.clip(image, 0, 255).astype(np.uint8)


def scanner_prediction(label: np.ndarray, scanner: int) -> np.ndarray:
    """AT2 and GT450 predict the truth exactly; P1000 misses the top rows of the disc."""
    pred = label.copy()
    if SCANNERS[scanner] == "P1000":
        pred[: SIZE_PX // 2][pred[: SIZE_PX // 2] == 1] = 0
    return pred


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Release layout: slide_i/sample_j/<scanner>.jpg + label.png; one P1000 patch missing."""
    root = tmp_path_factory.mktemp("release")
    for k, sid in enumerate(SAMPLES):
        folder = root / sid
        folder.mkdir(parents=True)
        label = tissue_label(k)
        cv2.imwrite(str(folder / "label.png"), label)
        for s, scanner in enumerate(SCANNERS):
            if (sid, scanner) != MISSING_PATCH:
                rgb = stained(label, s)
                cv2.imwrite(str(folder / f"{scanner}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return root


@pytest.fixture(scope="module")
def predicted(release: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same predictions as PNG label maps in the release layout and as a Zarr array."""
    root = tmp_path_factory.mktemp("preds")
    array = np.full((len(SAMPLES), len(SCANNERS), SIZE_PX, SIZE_PX), MISSING, np.uint8)
    for n, sid in enumerate(SAMPLES):
        (root / "png" / sid).mkdir(parents=True)
        for s, scanner in enumerate(SCANNERS):
            if (sid, scanner) == MISSING_PATCH:
                continue
            array[n, s] = scanner_prediction(tissue_label(n), s)
            cv2.imwrite(str(root / "png" / sid / f"{scanner}.png"), array[n, s])
    store = zarr.create_array(
        store=str(root / "preds.zarr"),
        shape=array.shape,
        chunks=(1, 1, SIZE_PX, SIZE_PX),
        dtype=np.uint8,
        fill_value=MISSING,
    )
    store[:] = array
    return {"png": root / "png", "zarr": root / "preds.zarr"}


def test_release_folder_is_read_with_scanners_samples_and_gaps(release: Path):
    source = open_patch_source(release)
    assert source.kind == "release"
    assert source.scanners == SCANNERS
    assert source.sample_ids == SAMPLES
    assert source.size_px == (SIZE_PX, SIZE_PX)
    assert source.valid.tolist() == [[True] * 3, [True] * 3, [True, True, False]]
    patch = source.read(0, 1)
    assert patch.dtype == np.uint8 and patch.shape == (SIZE_PX, SIZE_PX, 3)
    # RGB order, not OpenCV's BGR: class-0 tissue of GT450 is palette + cast (245, 217, 240)
    np.testing.assert_allclose(patch[0, 0], [245, 217, 240], atol=6)


def build_dir(root: Path, failed: tuple[int, str] | None) -> Path:
    """A build directory as `extract` writes it (docs/contracts.md §3), one manifest row failed."""
    scanners = ["AT2", "DP200"]
    group = zarr.open_group(root / "patches.zarr", mode="w")
    group.attrs.update(
        {"scanners": scanners, "reference": "AT2", "mpp": 0.78125, "region_um": 25, "size": 32}
    )
    patches = group.create_array(
        "patches", shape=(2, 2, 32, 32, 3), chunks=(1, 1, 32, 32, 3), dtype=np.uint8
    )
    patches[:] = 200
    rows = [
        {
            "index": n,
            "slide_id": f"S{n}",
            "sample_id": f"S{n}_r0",
            "scanner": scanner,
            "status": "failed" if (n, scanner) == failed else "ok",
            "message": "",
        }
        for n in range(2)
        for scanner in scanners
    ]
    (root / "manifests").mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(root / "manifests" / "patches.parquet")
    return root


def test_build_directory_and_zarr_store_use_the_manifest(tmp_path: Path):
    build = build_dir(tmp_path / "build", failed=(1, "DP200"))
    for path in (build, build / "patches.zarr"):
        source = open_patch_source(path)
        assert source.scanners == ["AT2", "DP200"]
        assert source.sample_ids == ["S0_r0", "S1_r0"]
        assert source.valid.tolist() == [[True, True], [True, False]]
        assert source.describe()["mpp"] == 0.78125
    assert open_patch_source(build).kind == "build"
    table = pd.read_parquet(build / "manifests" / "patches.parquet")
    table.loc[0, "scanner"] = "GT450"  # a scanner the store does not have
    table.to_parquet(build / "manifests" / "patches.parquet")
    with pytest.raises(DataError, match="patches.parquet.*different runs, re-run extract"):
        open_patch_source(build)


def test_unknown_layout_is_a_clear_error(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("not patches")
    with pytest.raises(DataError, match="unknown layout.*release layout"):
        open_patch_source(tmp_path)
    single = tmp_path / "single" / "slide_0" / "sample_0"
    single.mkdir(parents=True)
    cv2.imwrite(str(single / "AT2.jpg"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DataError, match="at least 2 scanners"):
        open_patch_source(tmp_path / "single")


def test_png_and_zarr_predictions_give_the_same_report(
    release: Path, predicted: dict[str, Path], tmp_path: Path
):
    reports = {}
    for kind, path in predicted.items():
        result = run_benchmark(
            release, tmp_path / kind, predictions=path, n_bootstrap=100, progress=False
        )
        reports[kind] = json.loads((tmp_path / kind / "report.json").read_text())
        assert result.report["average"] == reports[kind]["average"]
        reports[kind].pop("predictions")
    assert reports["png"] == reports["zarr"]
    report = reports["png"]
    pairs = {(p["a"], p["b"]): p for p in report["pairwise"]}
    assert pairs["AT2", "GT450"]["dice"] == 1.0  # identical predictions
    assert pairs["AT2", "P1000"]["dice"] < 0.95
    assert pairs["AT2", "P1000"]["dice"] == pairs["GT450", "P1000"]["dice"]
    assert report["minimum"] == pairs["AT2", "P1000"]["dice"]
    assert report["average"] == pytest.approx(np.mean([p["dice"] for p in pairs.values()]))


def test_missing_scanner_is_reported_and_left_out_of_its_pairs_only(
    release: Path, predicted: dict[str, Path], tmp_path: Path
):
    result = run_benchmark(
        release, tmp_path, predictions=predicted["zarr"], n_bootstrap=0, progress=False
    )
    report = result.report
    assert report["missing"] == [
        {"sample": MISSING_PATCH[0], "scanner": MISSING_PATCH[1], "reason": "no patch"}
    ]
    assert [p["n"] for p in report["pairwise"]] == [3, 2, 2]
    assert report["n_samples"] == 3
    samples = pd.read_csv(tmp_path / "samples.csv")
    assert samples["sample"].tolist() == SAMPLES
    assert np.isnan(samples.loc[2, "AT2-P1000"]) and samples.loc[2, "AT2-GT450"] == 1.0
    assert "missing" in (tmp_path / "report.md").read_text()


def test_outputs_and_labels(release: Path, predicted: dict[str, Path], tmp_path: Path):
    result = run_benchmark(
        release, tmp_path, predictions=predicted["png"], labels=release, n_worst=2, progress=False
    )
    report = result.report
    task = report["task_dice"]["per_scanner"]
    assert task["AT2"]["dice"] == 1.0 and task["GT450"]["dice"] == 1.0
    assert task["P1000"]["dice"] < 1.0 and task["P1000"]["n"] == 2
    assert report["labels"]["matched_by"] == "id"
    pairs = pd.read_csv(tmp_path / "pairs.csv")
    assert pairs[["a", "b"]].values.tolist() == [
        ["AT2", "GT450"],
        ["AT2", "P1000"],
        ["GT450", "P1000"],
    ]
    assert {"dice", "ci_low", "ci_high", "n", "dice_cancer_area"} <= set(pairs.columns)
    markdown = (tmp_path / "report.md").read_text()
    assert "| Model | AT2-GT450 | AT2-P1000 | GT450-P1000 | Average | Minimum |" in markdown
    interval_row = next(line for line in markdown.splitlines() if line.startswith("| 95% interval"))
    assert interval_row.count("[") == 5  # one per pair, the average and the minimum
    assert "## Task Dice against ground truth" in markdown
    assert len(report["worst_samples"]) == 2
    assert report["worst_samples"][0]["pair"] in ("AT2-P1000", "GT450-P1000")
    for name in ("pairs_heatmap.png", "worst_samples.png"):
        image = cv2.imread(str(tmp_path / name))
        assert image is not None and image.shape[0] > 100 and image.std() > 5


def test_class_index_beyond_the_classes_is_a_clear_error(release: Path, tmp_path: Path):
    array = np.full((len(SAMPLES), len(SCANNERS), 8, 8), 4, np.uint8)
    store = zarr.create_array(store=str(tmp_path / "p.zarr"), shape=array.shape, dtype=np.uint8)
    store[:] = array
    with pytest.raises(DataError, match="class index 4, but only 3 classes.*--classes"):
        run_benchmark(release, tmp_path / "out", predictions=tmp_path / "p.zarr", progress=False)
    with pytest.raises(DataError, match="2 samples x 3 scanners"):
        run_benchmark(
            release, tmp_path / "out", predictions=_zarr(tmp_path / "q.zarr", (2, 3, 8, 8))
        )


def _zarr(path: Path, shape: tuple[int, ...]) -> Path:
    zarr.create_array(store=str(path), shape=shape, dtype=np.uint8)
    return path


def test_preprocess_normalises_like_training():
    images = torch.full((1, 4, 4, 3), 255, dtype=torch.uint8)
    x = preprocess(images)
    assert x.shape == (1, 3, 4, 4) and x.dtype == torch.float32
    expected = (1 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(x[0, :, 0, 0].numpy(), expected, rtol=1e-6)


class StrideModel(torch.nn.Module):
    """Like an encoder-decoder: refuses sizes that are not a multiple of 32, logits at 1/4 size."""

    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Conv2d(3, 3, kernel_size=4, stride=4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] % 32 or x.shape[-1] % 32:
            raise RuntimeError(f"input {tuple(x.shape)} not divisible by 32")
        return self.head(x)


def test_inference_accepts_sizes_that_are_not_a_multiple_of_32():
    torch.manual_seed(0)
    images = np.random.default_rng(0).integers(0, 256, (2, 40, 50, 3), dtype=np.uint8)
    labels = predict_batch(StrideModel().eval(), images, torch.device("cpu"), amp=True)
    assert labels.shape == (2, 40, 50) and labels.dtype == np.uint8 and labels.max() < 3


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = build_model(encoder="resnet18", num_classes=len(CLASSES))
    config = {"classes": CLASSES, "encoder": "resnet18", "arch": "deeplabv3plus"}
    return save_checkpoint(model, config, tmp_path_factory.mktemp("ckpt") / "model.pt")


def test_checkpoint_end_to_end_through_the_cli(release: Path, checkpoint: Path, tmp_path: Path):
    out = tmp_path / "bench"
    args = ["benchmark", "--data", str(release), "--model", str(checkpoint), "--out", str(out)]
    args += ["--labels", str(release), "--device", "cpu", "--batch-size", "3", "--quiet"]
    args += ["--bootstrap", "50"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "3 pairs" in result.output and "average" in result.output
    report = json.loads((out / "report.json").read_text())
    assert report["scanners"] == SCANNERS and report["classes"] == CLASSES
    assert report["inference"]["patches"] == 8  # 9 minus the missing one
    assert "task_dice" in report
    for name in ("pairs.csv", "samples.csv", "report.md", "pairs_heatmap.png", "worst_samples.png"):
        assert (out / name).is_file(), name

    preds = zarr.open_array(out / "predictions.zarr", mode="r")
    assert preds.shape == (3, 3, SIZE_PX, SIZE_PX) and preds.dtype == np.uint8
    assert (np.asarray(preds[2, 2]) == MISSING).all()  # no patch, no prediction
    # the stored map is the model's argmax on the ImageNet-normalised RGB patch
    model = build_model(encoder="resnet18", num_classes=3)
    model.load_state_dict(torch.load(checkpoint, weights_only=True))
    rgb = open_patch_source(release).read(1, 2).astype(np.float32) / 255
    x = torch.from_numpy((rgb - IMAGENET_MEAN) / IMAGENET_STD).permute(2, 0, 1)[None].float()
    with torch.inference_mode():
        expected = model.eval()(x).argmax(1)[0].numpy()
    np.testing.assert_array_equal(preds[1, 2], expected)

    # a second run reuses the finished predictions; the stored array reproduces the report
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0, again.output
    assert "reused" in json.loads((out / "report.json").read_text())["inference"]
    replay = run_benchmark(
        release,
        tmp_path / "replay",
        predictions=out / "predictions.zarr",
        n_bootstrap=50,
        labels=release,
        progress=False,
    )
    assert replay.report["pairwise"] == report["pairwise"]
    assert replay.report["task_dice"] == report["task_dice"]


def test_corrupt_checkpoint_is_a_clear_error(release: Path, checkpoint: Path, tmp_path: Path):
    broken = tmp_path / "model.pt"
    broken.write_bytes(b"\x80\x02 definitely not a state dict")
    broken.with_suffix(".json").write_text(checkpoint.with_suffix(".json").read_text())
    args = ["benchmark", "--data", str(release), "--out", str(tmp_path / "o"), "--quiet"]
    result = CliRunner().invoke(main, [*args, "--model", str(broken)])
    assert result.exit_code == 1
    assert str(broken) in result.output and "state dict" in result.output
    foreign = tmp_path / "foreign.bin"
    foreign.write_bytes(b"garbage")
    result = CliRunner().invoke(main, [*args, "--model", str(foreign)])
    assert result.exit_code == 1 and "not a TorchScript file" in result.output


def test_model_and_predictions_are_exclusive(release: Path, tmp_path: Path):
    args = ["benchmark", "--data", str(release), "--out", str(tmp_path)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "exactly one of --model or --predictions" in result.output


def test_torchscript_model_without_config(release: Path, tmp_path: Path):
    # a foreign model: a 1x1 convolution scripted, no model.json beside it
    torch.manual_seed(0)
    scripted = torch.jit.script(torch.nn.Conv2d(3, 3, kernel_size=1))
    path = tmp_path / "foreign.pt"
    torch.jit.save(scripted, str(path))
    result = run_benchmark(
        release, tmp_path / "out", model=path, device="cpu", n_bootstrap=0, progress=False
    )
    assert result.report["classes"] == CLASSES  # the default class names
    assert result.report["inference"]["patches"] == 8
    assert 0.0 <= result.report["minimum"] <= result.report["average"] <= 1.0


def test_labels_for_a_build_are_matched_through_the_export_index(tmp_path: Path):
    build = build_dir(tmp_path / "build", failed=None)  # samples S0_r0, S1_r0; all pixels 200
    labels = tmp_path / "export"
    for folder in ("slide_1/sample_1", "slide_2/sample_1"):
        (labels / folder).mkdir(parents=True)
    # the index maps slide_1 to the *second* build sample: order alone would pair them wrongly
    cv2.imwrite(str(labels / "slide_1/sample_1/label.png"), np.ones((32, 32), np.uint8))
    cv2.imwrite(str(labels / "slide_2/sample_1/label.png"), np.zeros((32, 32), np.uint8))
    pd.DataFrame(
        {
            "slide": ["slide_1", "slide_2"],
            "sample": ["sample_1"] * 2,
            "sample_id": ["S1_r0", "S0_r0"],
        }
    ).to_csv(labels / "index.csv", index=False)
    preds = np.zeros((2, 2, 32, 32), np.uint8)
    preds[1] = 1  # sample S1_r0 predicted all class 1 on both scanners
    store = zarr.create_array(store=str(tmp_path / "p.zarr"), shape=preds.shape, dtype=np.uint8)
    store[:] = preds
    result = run_benchmark(
        build,
        tmp_path / "out",
        predictions=tmp_path / "p.zarr",
        labels=labels,
        n_bootstrap=0,
        progress=False,
    )
    assert result.report["labels"]["matched_by"] == "export index"
    assert result.report["task_dice"]["average"] == 1.0


def test_jpeg_coded_patch_store_is_readable_in_a_fresh_process(tmp_path: Path):
    # `extract --compression jpeg` stores patches with a custom codec; a benchmark run in a
    # new process (nothing else imported) must still decode them
    from scorpion_build.zarr_jpeg import JpegCodec

    group = zarr.open_group(tmp_path / "patches.zarr", mode="w")
    group.attrs["scanners"] = ["AT2", "GT450"]
    patches = group.create_array(
        "patches",
        shape=(1, 2, 16, 16, 3),
        chunks=(1, 1, 16, 16, 3),
        dtype=np.uint8,
        serializer=JpegCodec(quality=95),
        compressors=None,
    )
    patches[:] = 180
    code = (
        "import sys; from scorpion_build.bench.sources import open_patch_source; "
        "print(int(open_patch_source(sys.argv[1]).read(0, 1).mean()))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "patches.zarr")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert abs(int(done.stdout) - 180) <= 2
