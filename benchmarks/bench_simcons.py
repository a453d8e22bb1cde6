"""SimCons on synthetic data: the shape of the SCORPION paper's Table 1 and Fig. 4, on a CPU.

For the baseline (no style augmentation) and each SA in {ColorJitter, RandStainNA, FDA},
without (lambda = 0: train on SA(x)) and with the consistency loss (lambda = 0.3), trains a
DeepLabV3+ on the synthetic labelled set (one scanner style) and reports

- scanner-paired Dice on the synthetic paired set (five scanner styles, pixel-aligned):
  average and minimum over the 10 scanner pairs (scorpion_build.metrics, as `benchmark`),
- task Dice on the labelled test split, and task Dice on the paired set (mean over scanners),

as mean +/- std over seeds; then sweeps lambda for one SA (Fig. 4).

Small on purpose so it runs on one CPU thread in under 30 minutes: ResNet18 encoder from
random init, 64 px training crops of 128 px tiles at 2 um/px, Adam lr 1e-3. Results are
cached per run under --work, so an interrupted benchmark continues where it stopped.

    OMP_NUM_THREADS=1 python benchmarks/bench_simcons.py [--work DIR] [--seeds 3]
    python benchmarks/bench_simcons.py --speed --device cuda   # steps/s at 512 px, batch 16, AMP
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from scorpion_build import metrics  # noqa: E402
from scorpion_build.bench.layout import read_label_map, read_rgb, scan_layout  # noqa: E402
from scorpion_build.models import load_model  # noqa: E402
from scorpion_build.synth import SynthConfig, write_labelled_sets  # noqa: E402
from scorpion_build.train import TrainConfig, train  # noqa: E402
from scorpion_build.train.evaluate import predict_labels  # noqa: E402

SCANNERS = ("AT2", "DP200", "GT450", "P1000", "Philips")
TABLE = [("none", 0.0)] + [
    (sa, w) for sa in ("colorjitter", "randstainna", "fda") for w in (0.0, 0.3)
]
SWEEP_LAMBDAS = (0.0, 0.1, 0.3, 0.5, 1.0)

SYNTH = {
    "labelled": True,
    "n_train": 128,  # 8 specimens of 16 patches, split by specimen: 6 train, 1 val, 1 test
    "patch_px": 128,
    "patch_mpp": 2.0,
    "n_paired_slides": 4,
    "paired_samples": 4,
    "seed": 0,
}
TRAIN = {
    "encoder": "resnet18",
    "arch": "deeplabv3plus",
    "size": 64,
    "batch_size": 8,
    "lr": 1e-3,
    "epochs": 4,
    "device": "cpu",
    "val_style_consistency": False,
}


def make_data(work: Path) -> Path:
    data = work / "synth"
    if not (data / "paired").is_dir():
        write_labelled_sets(data, SynthConfig(**SYNTH).validate())
    return data


def load_paired(paired: Path) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Images in (sample, scanner) order, ground truth ``(N, H, W)``, and N."""
    table = scan_layout(paired, (".jpg",))
    images, labels = [], []
    for sample_id, files in table.items():
        missing = set(SCANNERS) - set(files)
        if missing:
            sys.exit(f"{paired / sample_id}: missing {sorted(missing)}; regenerate the synth set")
        images.extend(read_rgb(files[s]) for s in SCANNERS)
        labels.append(read_label_map(paired / sample_id / "label.png"))
    return images, np.stack(labels), len(table)


def evaluate_paired(checkpoint: Path, paired) -> dict[str, float]:
    images, labels, n = paired
    model, config = load_model(checkpoint, "cpu")
    num_classes = len(config["classes"])
    preds = predict_labels(model, images, torch.device("cpu"), batch_size=16)
    preds = np.stack(preds).reshape(n, len(SCANNERS), *labels.shape[1:])
    summary = metrics.consistency_summary(
        metrics.pairwise_dice(preds, num_classes), SCANNERS, config["classes"], n_bootstrap=0
    )
    task = metrics.task_summary(
        metrics.task_dice(preds, labels, num_classes), SCANNERS, config["classes"]
    )
    return {
        "paired_average": summary.average,
        "paired_minimum": summary.minimum,
        "paired_task_dice": task["average"],
    }


def run_one(data: Path, work: Path, sa: str, weight: float, seed: int, paired) -> dict:
    name = f"{sa}_l{weight:g}_s{seed}"
    cached = work / "results" / f"{name}.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    out = work / "runs" / name
    config = TrainConfig.from_dict(
        {
            **TRAIN,
            "data": str(data / "train"),
            "out": str(out),
            "sa": sa,
            "consistency_weight": weight,
            "seed": seed,
        }
    )
    started = time.perf_counter()
    result = train(config, resume=out.exists(), progress=False)
    row = {
        "sa": sa,
        "lambda": weight,
        "seed": seed,
        "test_dice": result.test_dice,
        "val_dice": result.best_val_dice,
        "best_epoch": result.best_epoch,
        **evaluate_paired(result.checkpoint, paired),
        "seconds": round(time.perf_counter() - started, 1),
    }
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(row, indent=2))
    print(
        f"  {name:24s} paired avg {row['paired_average']:.3f} min {row['paired_minimum']:.3f}"
        f"  test {row['test_dice']:.3f}  ({row['seconds']:.0f} s)",
        flush=True,
    )
    return row


def mean_std(rows: list[dict], key: str) -> str:
    values = np.array([r[key] for r in rows], float)
    if values.size == 0:
        return "-"
    return f"{values.mean():.3f} +/- {values.std(ddof=1) if len(values) > 1 else 0.0:.3f}"


LABELS = {
    "none": "Baseline",
    "colorjitter": "ColorJitter",
    "randstainna": "RandStainNA",
    "fda": "FDA",
}
COLUMNS = [
    ("paired_average", "paired Dice avg"),
    ("paired_minimum", "paired Dice min"),
    ("test_dice", "task Dice (test)"),
    ("paired_task_dice", "task Dice (paired)"),
]


def print_table(title: str, groups: list[tuple[str, list[dict]]]) -> None:
    print(f"\n{title}")
    header = f"{'':30s}{'n':>3s}" + "".join(f"{label:>20s}" for _, label in COLUMNS)
    print(header)
    print("-" * len(header))
    for name, rows in groups:
        cells = "".join(f"{mean_std(rows, key):>20s}" for key, _ in COLUMNS)
        print(f"{name:30s}{len(rows):3d}{cells}")


def time_training_steps(work: Path, size_px: int, batch: int, device: str, steps: int) -> None:
    """Training steps per second of the paper's model (DeepLabV3+/ResNet34) with SimCons
    (RandStainNA, two branches) and AMP on CUDA; one cached batch, so I/O is not timed."""
    from scorpion_build.train.trainer import Trainer

    data = work / f"speed_{size_px}"
    if not (data / "split.csv").is_file():
        rng = np.random.default_rng(0)
        for sub in ("images", "masks"):
            (data / sub).mkdir(parents=True, exist_ok=True)
        rows = ["stem,split"]
        for i in range(batch + 2):
            image = rng.integers(0, 256, (size_px, size_px, 3), dtype=np.uint8)
            mask = rng.integers(0, 3, (size_px, size_px), dtype=np.uint8)
            cv2.imwrite(str(data / "images" / f"t{i}.png"), image)
            cv2.imwrite(str(data / "masks" / f"t{i}.png"), mask)
            rows.append(f"t{i},{'train' if i < batch else 'val'}")
        (data / "split.csv").write_text("\n".join(rows) + "\n")
    config = TrainConfig.from_dict(
        {
            "data": str(data),
            "out": str(work / f"speed_run_{size_px}_{time.time_ns()}"),
            "sa": "randstainna",
            "consistency_weight": 0.3,
            "size": size_px,
            "batch_size": batch,
            "device": device,
            "amp": True,
        }
    )
    trainer = Trainer(config, progress=False)
    trainer.prepare(resume=False)
    loader = torch.utils.data.DataLoader(trainer_dataset(trainer), batch_size=batch, shuffle=False)
    batch_data = next(iter(loader))
    generator = torch.Generator(device=trainer.device).manual_seed(0)
    trainer.model.train()

    def sync() -> None:
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(3):  # warm-up: cuDNN autotuning, allocator
        trainer.train_step(batch_data, generator)
    sync()
    started = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(batch_data, generator)
    sync()
    elapsed = time.perf_counter() - started
    print(
        f"training speed on {trainer.device} (AMP {'on' if trainer.amp else 'off'}), "
        f"{config.arch}/{config.encoder}, SimCons + RandStainNA, {size_px} px, batch {batch}: "
        f"{steps / elapsed:.2f} steps/s, {steps * batch / elapsed:.1f} images/s"
    )


def trainer_dataset(trainer) -> list[dict[str, torch.Tensor]]:
    from scorpion_build.train.data import SegmentationDataset

    items = trainer.data.split("train")
    dataset = SegmentationDataset(items, crop_px=trainer.config.size)
    return [dataset[(i, i)] for i in range(len(items))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--work", type=Path, default=Path(tempfile.gettempdir()) / "scorpion_bench_simcons"
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sweep-sa", default="randstainna")
    parser.add_argument("--sweep-seeds", type=int, default=1)
    parser.add_argument(
        "--report-only", action="store_true", help="Print the tables from cached runs only."
    )
    parser.add_argument(
        "--speed",
        action="store_true",
        help="Only time training steps/s (paper model, AMP on CUDA) and exit.",
    )
    parser.add_argument("--speed-size", type=int, default=512)
    parser.add_argument("--speed-batch", type=int, default=16)
    parser.add_argument("--speed-steps", type=int, default=20)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    if args.speed:
        time_training_steps(
            args.work, args.speed_size, args.speed_batch, args.device, args.speed_steps
        )
        return

    started = time.perf_counter()
    data = make_data(args.work)
    paired = load_paired(data / "paired")
    print(
        f"synthetic data: {data} ({paired[2]} paired samples x {len(SCANNERS)} scanners); "
        f"model {TRAIN['arch']}/{TRAIN['encoder']} random init, {TRAIN['size']} px crops, "
        f"batch {TRAIN['batch_size']}, {TRAIN['epochs']} epochs, lr {TRAIN['lr']}",
        flush=True,
    )
    # seed-major order, the sweep's first seed early: an interrupted benchmark still has
    # whole seeds of both the table and the sweep
    runs = []
    for s in range(max(args.seeds, args.sweep_seeds)):
        if s < args.seeds:
            runs += [(sa, w, s) for sa, w in TABLE]
        if s < args.sweep_seeds:
            runs += [(args.sweep_sa, w, s) for w in SWEEP_LAMBDAS]
    results: dict[tuple[str, float, int], dict] = {}
    for sa, w, s in runs:
        cached = args.work / "results" / f"{sa}_l{w:g}_s{s}.json"
        if (sa, w, s) in results:
            continue
        if cached.is_file():
            results[(sa, w, s)] = json.loads(cached.read_text())
        elif not args.report_only:
            results[(sa, w, s)] = run_one(data, args.work, sa, w, s, paired)

    def rows(sa: str, w: float, n_seeds: int) -> list[dict]:
        return [results[(sa, w, s)] for s in range(n_seeds) if (sa, w, s) in results]

    table = []
    for sa, w in TABLE:
        name = LABELS[sa] + (" + SimCons (l=0.3)" if w > 0 else "")
        table.append((name, rows(sa, w, args.seeds)))
    print_table(f"Table 1 shape: mean +/- std over {args.seeds} seeds", table)
    sweep = [
        (f"{LABELS[args.sweep_sa]} lambda={w:g}", rows(args.sweep_sa, w, args.sweep_seeds))
        for w in SWEEP_LAMBDAS
    ]
    print_table(f"Fig. 4 shape: lambda sweep, mean +/- std over {args.sweep_seeds} seeds", sweep)
    summary = {f"{sa}_l{w:g}_s{s}": r for (sa, w, s), r in results.items()}
    (args.work / "summary.json").write_text(json.dumps(summary, indent=2))
    train_s = sum(r["seconds"] for r in results.values())
    print(
        f"\nwall {time.perf_counter() - started:.0f} s this call; {len(results)} runs took "
        f"{train_s:.0f} s of training + evaluation in all; per-run results in {args.work}/results"
    )


if __name__ == "__main__":
    main()
