"""The inter-scanner consistency protocol (docs/contracts.md §5): data -> inference ->
metrics -> report.

Predictions are kept in ``OUT/predictions.zarr``, so the metrics can be recomputed (other
threshold, labels, bootstrap) without running the model again: pass that array back as
``predictions``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scorpion_build import __version__
from scorpion_build.bench.layout import DataError
from scorpion_build.bench.predictions import (
    MISSING,
    DataLabels,
    GroundTruth,
    Predictions,
    ZarrPredictions,
    create_prediction_array,
    open_predictions,
)
from scorpion_build.bench.report import write_outputs
from scorpion_build.bench.sources import PatchSource, open_patch_source
from scorpion_build.files import file_sha256
from scorpion_build.metrics import (
    DEFAULT_THRESHOLD,
    ConsistencySummary,
    consistency_summary,
    pairwise_dice,
    task_dice,
    task_summary,
)

PREDICTIONS_NAME = "predictions.zarr"
Truth = GroundTruth | DataLabels
BLOCK_BYTES = 64 << 20
"""Label-map bytes per metric block: bounds memory at any dataset size."""


@dataclass
class BenchmarkResult:
    """What :func:`run_benchmark` produced: the report dict, the summary, and the files."""

    report: dict[str, Any]
    summary: ConsistencySummary
    files: dict[str, Path] = field(default_factory=dict)


def run_benchmark(
    data: str | Path,
    out_dir: str | Path,
    *,
    model: str | Path | None = None,
    predictions: str | Path | None = None,
    labels: str | Path | bool | None = None,
    classes: Sequence[str] | None = None,
    batch_size: int = 4,
    device: str = "auto",
    amp: bool = True,
    threshold: float = DEFAULT_THRESHOLD,
    n_bootstrap: int = 1000,
    seed: int = 0,
    n_worst: int = 6,
    force: bool = False,
    progress: bool = True,
) -> BenchmarkResult:
    """Benchmark a model's (or precomputed predictions') consistency across scanners.

    Parameters
    ----------
    data : a build directory, a ``patches.zarr`` store, or a release-layout folder.
    out_dir : output folder (report.json, report.md, CSVs, figures, predictions.zarr).
    model : a ``train`` checkpoint or a TorchScript file; exactly one of model, predictions.
    predictions : a Zarr ``(N, S, H, W)`` array or a release-layout folder of PNG label maps.
    labels : True for the data's own label maps (one per scanner: the ``labels`` array of
        ``extract --annotations``, or ``labels/<scanner>.png`` of its export), or a
        release-layout folder with ``label.png`` ground truth per sample; adds task Dice
        per scanner.
    classes : class names (default: the checkpoint's, the predictions' attrs, or
        ``classes.DEFAULT_CLASSES``); their number is C in the Dice class mean.
    batch_size, device, amp : inference settings; AMP (float16 autocast) applies on CUDA.
    threshold : a sample whose worst pair has Dice below this counts as a failure.
    n_bootstrap, seed : bootstrap resamples over samples for 95% intervals, and their seed.
    n_worst : samples shown in the montage, least consistent first.
    force : re-run inference even over a finished predictions.zarr of the same model and data.
    """
    if (model is None) == (predictions is None):
        raise ValueError("pass exactly one of model (a checkpoint) or predictions")
    source = open_patch_source(data)
    truth = _ground_truth(labels, source)  # a bad labels folder fails before inference
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"tool": f"scorpion-build {__version__}", "data": source.describe()}
    if model is not None:
        preds, classes = _model_predictions(
            Path(model), source, out_dir, classes, report,
            batch_size=batch_size, device=device, amp=amp, force=force, progress=progress,
        )  # fmt: skip
    else:
        preds, classes = _given_predictions(predictions, source, classes, report)
    summary = _summarise(
        report, source, preds, classes, truth, threshold, n_bootstrap, seed, n_worst
    )
    name = Path(model if model is not None else predictions).name
    files = write_outputs(report, summary, source, preds, out_dir, name, n_worst)
    if model is not None:
        files["predictions"] = out_dir / PREDICTIONS_NAME
    return BenchmarkResult(report=report, summary=summary, files=files)


def _model_predictions(
    checkpoint: Path,
    source: PatchSource,
    out_dir: Path,
    classes: Sequence[str] | None,
    report: dict[str, Any],
    **inference: Any,
) -> tuple[Predictions, list[str]]:
    """Run (or reuse) the model's predictions; records inference and warnings in ``report``."""
    preds, classes, report["inference"] = _infer(checkpoint, source, out_dir, classes, **inference)
    report["warnings"] = report["inference"].pop("warnings")
    report["model"] = str(checkpoint)
    return preds, list(classes)


def _given_predictions(
    path: str | Path, source: PatchSource, classes: Sequence[str] | None, report: dict[str, Any]
) -> tuple[Predictions, list[str]]:
    """Open precomputed predictions; records how they were matched to the data."""
    preds = open_predictions(path, source)
    report["predictions"] = {"path": str(path), "matched_by": preds.matched_by}
    return preds, list(_prediction_classes(preds, classes))


def _summarise(
    report: dict[str, Any],
    source: PatchSource,
    preds: Predictions,
    classes: list[str],
    truth: Truth | None,
    threshold: float,
    n_bootstrap: int,
    seed: int,
    n_worst: int,
) -> ConsistencySummary:
    """Measure Dice and add the protocol's numbers, missing patches, worst samples and task
    Dice to ``report`` (docs/contracts.md section 5)."""
    dice, valid, truth_dice = _measure(source, preds, len(classes), truth)
    summary = consistency_summary(
        dice, source.scanners, classes, threshold=threshold, n_bootstrap=n_bootstrap, seed=seed
    )
    report.update(summary.to_dict())
    report["missing"] = _missing(source, valid)
    report["worst_samples"] = [
        {
            "sample": source.sample_ids[n],
            "pair": summary.pair_name(summary.worst_pair[n]),
            "dice": float(summary.worst_dice[n]),
        }
        for n in summary.worst_samples(n_worst)
    ]
    if truth is not None:
        report["task_dice"] = task_summary(truth_dice, source.scanners, classes)
        report["labels"] = {"path": str(truth.path), "matched_by": truth.matched_by}
    return summary


def _prediction_classes(preds: Predictions, classes: Sequence[str] | None) -> Sequence[str]:
    if classes:
        return classes
    if preds.attrs.get("classes"):
        return preds.attrs["classes"]
    from scorpion_build.classes import DEFAULT_CLASSES

    return DEFAULT_CLASSES


def _infer(
    checkpoint: Path,
    source: PatchSource,
    out_dir: Path,
    classes: Sequence[str] | None,
    batch_size: int,
    device: str,
    amp: bool,
    force: bool,
    progress: bool,
) -> tuple[ZarrPredictions, list[str], dict[str, Any]]:
    """Run (or reuse) inference into ``out_dir/predictions.zarr``."""
    from scorpion_build.bench.inference import predict_source
    from scorpion_build.models import load_model, resolve_device

    torch_device = resolve_device(device)
    net, config = load_model(checkpoint, torch_device)
    model_classes = list(config["classes"])
    if classes and config.get("arch") != "torchscript" and len(classes) != len(model_classes):
        raise DataError(
            f"{checkpoint}: the model predicts {len(model_classes)} classes {model_classes}, "
            f"but {len(classes)} class names were given; drop --classes or match them"
        )
    classes = list(classes) if classes else model_classes
    path = out_dir / PREDICTIONS_NAME
    fingerprint = {
        "model_sha256": file_sha256(checkpoint),
        "data_path": str(source.path.resolve()),
        "classes": classes,
    }
    info: dict[str, Any] = {
        "device": str(torch_device),
        "amp": amp and torch_device.type == "cuda",
        "warnings": _scale_warnings(checkpoint, config, source),
    }
    if not force and _finished(path, fingerprint, source):
        info["reused"] = str(path)
        return ZarrPredictions(path, source), classes, info

    array = create_prediction_array(path, source, fingerprint)
    start = time.perf_counter()
    done = predict_source(net, source, array, torch_device, batch_size, amp, progress)
    seconds = time.perf_counter() - start
    array.attrs["complete"] = True
    info.update(
        batch_size=batch_size,
        patches=done,
        seconds=round(seconds, 3),
        patches_per_s=round(done / seconds, 3) if seconds > 0 else None,
    )
    return ZarrPredictions(path, source), classes, info


MPP_TOLERANCE = 0.05
"""Relative difference in um/px above which a model sees tissue at another scale."""


def _scale_warnings(checkpoint: Path, config: dict[str, Any], source: PatchSource) -> list[str]:
    """A warning when the data's um/px differs from the one the model was trained at."""
    trained, data = config.get("mpp"), source.attrs.get("mpp")
    if trained is None or data is None:
        return []
    if abs(float(data) / float(trained) - 1.0) <= MPP_TOLERANCE:
        return []
    return [
        f"{checkpoint}: trained at {float(trained):.4g} um/px but {source.path} is at "
        f"{float(data):.4g} um/px; the model sees tissue at another scale, so its Dice says "
        "little: extract at the training mpp (--region-um / --size) or retrain"
    ]


def _finished(path: Path, fingerprint: dict[str, Any], source: PatchSource) -> bool:
    """A predictions.zarr from a finished run of the same checkpoint on the same data."""
    if not (path / "zarr.json").is_file():
        return False
    import zarr

    try:
        attrs = dict(zarr.open_array(path, mode="r").attrs)
    except Exception:  # a half-written or foreign store: predict again
        return False
    return (
        attrs.get("complete") is True
        and all(attrs.get(k) == v for k, v in fingerprint.items())
        and attrs.get("scanners") == source.scanners
        and attrs.get("sample_ids") == source.sample_ids
    )


def _measure(
    source: PatchSource, preds: Predictions, num_classes: int, truth: Truth | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Stream prediction blocks through the metrics.

    Returns pairwise Dice ``(N, P, C)``, availability ``(N, S)`` (patch and prediction
    present) and, with ground truth, task Dice ``(N, S, C)``.
    """
    n_samples, n_scanners = source.valid.shape
    dice_blocks, valid_blocks, task_blocks = [], [], []
    step = max(1, BLOCK_BYTES // (n_scanners * int(np.prod(preds.size_px))))
    for n0 in range(0, n_samples, step):
        n1 = min(n0 + step, n_samples)
        block = preds.read(n0, n1)
        valid = _check_block(block, source.valid[n0:n1], num_classes, preds.path, n0)
        dice_blocks.append(pairwise_dice(block, num_classes, valid))
        valid_blocks.append(valid)
        if truth is not None:
            task_blocks.append(_task_block(block, valid, truth, range(n0, n1), num_classes))
    task = np.concatenate(task_blocks) if truth is not None else None
    return np.concatenate(dice_blocks), np.concatenate(valid_blocks), task


def _check_block(
    block: np.ndarray, present: np.ndarray, num_classes: int, path: Path, offset: int
) -> np.ndarray:
    """Which planes hold a prediction (of a present patch); refuse class indices >= C.

    MISSING inside a predicted plane means "no class" (an ignore label); any other index at
    or above C means the class list is wrong, which would silently distort Dice. Adding 1 in
    uint8 wraps MISSING (255) to 0, so one max per plane answers both questions in one pass.
    """
    peak = np.add(block, 1, dtype=np.uint8).max(axis=(2, 3))  # (b, S): highest index + 1
    valid = present & (peak > 0)
    stray = valid & (peak > num_classes)
    if stray.any():
        n, s = np.argwhere(stray)[0]
        raise DataError(
            f"{path}: sample {offset + n}, scanner {s} holds class index {int(peak[n, s]) - 1}, "
            f"but only {num_classes} classes are known; pass --classes with one name per class"
        )
    return valid


def _task_block(
    block: np.ndarray, valid: np.ndarray, truth: Truth, samples: range, num_classes: int
) -> np.ndarray:
    size_px = block.shape[2:]
    gt = np.full(block.shape, MISSING, np.uint8)
    has_gt = np.zeros(block.shape[:2], bool)
    for k, n in enumerate(samples):
        for s in np.flatnonzero(valid[k]):
            label = truth.read(n, int(s), size_px)
            if label is not None:
                gt[k, s], has_gt[k, s] = label, True
    stray = (gt >= num_classes) & (gt != MISSING)
    if stray.any():
        raise DataError(
            f"{truth.path}: a label map holds class index {int(gt[stray].max())}, but only "
            f"{num_classes} classes are known; pass --classes matching the ground truth"
        )
    return task_dice(block, gt, num_classes, valid & has_gt)


def _ground_truth(labels: str | Path | bool | None, source: PatchSource) -> Truth | None:
    """``labels``: None / False (no task Dice), True (the data's own per-scanner label
    maps), or a release folder of ``label.png`` files."""
    if labels is None or labels is False:
        return None
    if labels is True:
        return DataLabels(source)
    return GroundTruth(labels, source)


def _missing(source: PatchSource, valid: np.ndarray) -> list[dict[str, str]]:
    """Every (sample, scanner) left out, and why."""
    rows, cols = np.nonzero(~valid)
    return [
        {
            "sample": source.sample_ids[n],
            "scanner": source.scanners[s],
            "reason": "no patch" if not source.valid[n, s] else "no prediction",
        }
        for n, s in zip(rows, cols, strict=True)
    ]
