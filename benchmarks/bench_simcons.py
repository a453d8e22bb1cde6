"""SimCons evidence on synthetic data: the SCORPION paper's Table 1 and Fig. 4, with statistics.

One command runs the whole study and writes ``docs/results/simcons.md`` (tables, paired
differences with 95% intervals, verdicts per claim, the lambda-sweep PNG):

    nice -n 10 python benchmarks/bench_simcons.py --preset smoke   # minutes; numbers mean nothing
    python benchmarks/bench_simcons.py --preset cpu --jobs 2   # the study, ~1-2 h
    python benchmarks/bench_simcons.py --preset paper               # pipelines/table1.yaml, GPU
    python benchmarks/bench_simcons.py --speed --device cuda   # steps/s, GPU memory, paper model

For the baseline and each style augmentation (SA) without (lambda = 0: train on SA(x)) and
with the consistency loss, over several seeds and two training sets (one lab scanner, and an
HTS-like set from two), it trains DeepLabV3+ on synthetic labelled tiles whose looks the
paired set never shows, and measures scanner-paired Dice on 5 pixel-aligned scanner styles
(scorpion_build.metrics, as ``scorpion-build benchmark``) and task Dice. Runs are cached
under ``--work`` by a hash of every setting and of the code (benchmarks/simcons_study.py);
an interrupted study continues where it stopped, and a cached result is always marked so.
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

# one thread per process by default: on a busy machine two OpenMP threads that wait for
# each other's cores ran 4x slower than one; OMP_NUM_THREADS=2 pays only on a quiet machine
os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.simcons_report import write_markdown  # noqa: E402
from benchmarks.simcons_study import (  # noqa: E402
    PRESET_FILES,
    PRESETS,
    REPO,
    Run,
    Study,
    execute_run,
    load_study,
    planned_runs,
)
from scorpion_build.train import TrainConfig  # noqa: E402


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
    memory = (
        f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"
        if trainer.device.type == "cuda"
        else ""
    )
    print(
        f"training speed on {trainer.device} (AMP {'on' if trainer.amp else 'off'}), "
        f"{config.arch}/{config.encoder}, SimCons + RandStainNA, {size_px} px, batch {batch}: "
        f"{steps / elapsed:.2f} steps/s, {steps * batch / elapsed:.1f} images/s{memory}"
    )


def trainer_dataset(trainer) -> list[dict[str, torch.Tensor]]:
    from scorpion_build.train.data import SegmentationDataset

    items = trainer.data.split("train")
    dataset = SegmentationDataset(items, crop_px=trainer.config.size)
    return [dataset[(i, i)] for i in range(len(items))]


def commit() -> str:
    """The checked-out commit, marked ``-dirty`` when the work tree has changes."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout

    head = git("rev-parse", "--short=12", "HEAD").strip() or "unknown"
    return head + ("-dirty" if git("status", "--porcelain", "--untracked-files=no").strip() else "")


def machine(device: str) -> str:
    return (
        f"{platform.node()}, {platform.platform()}, {os.cpu_count()} CPUs, torch "
        f"{torch.__version__}, torch threads {torch.get_num_threads()}, device {device}"
    )


def collect_rows(runner: Study, runs: list[Run], jobs: int, report_only: bool) -> list[dict]:
    """Every run's result, from the cache or trained now (``jobs`` processes at a time)."""
    todo = []
    for i, run in enumerate(runs, 1):
        if report_only and runner.cached(run) is None:
            print(f"  [{i}/{len(runs)}] {run.label}: not run yet (left out)", flush=True)
        else:
            todo.append(run)
    left = sum(runner.cached(r) is None for r in todo)
    fresh_s: list[float] = []
    rows = []

    def show(row: dict) -> None:
        nonlocal left
        if row["from_cache"]:
            source = "from cache"
        else:
            fresh_s.append(row["seconds"])
            left -= 1
            eta_min = left * np.mean(fresh_s) / jobs / 60
            source = f"{row['seconds']:.0f} s; about {eta_min:.0f} min left"
        print(
            f"  [{len(rows) + 1}/{len(todo)}] {row['label']:40s} paired avg "
            f"{row['paired_average']:.3f} min {row['paired_minimum']:.3f} test "
            f"{row['test_dice']:.3f}  ({source})",
            flush=True,
        )
        rows.append(row)

    if jobs <= 1:
        for run in todo:
            show(runner.execute(run))
        return rows
    # one single-threaded process per core beats one process with several threads
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=context) as pool:
        futures = [pool.submit(execute_run, runner.study, runner.work, run) for run in todo]
        for future in as_completed(futures):
            show(future.result())
    return rows


def run_study(args: argparse.Namespace) -> None:
    study = load_study(args.preset, args.config)
    started = time.perf_counter()
    # the commit that produced the results: taken now, before any edit made while it runs
    produced_by = commit()
    runner = Study(study, args.work)
    runs = planned_runs(study)
    if not args.report_only:
        runner.prepare_data()
    print(f"{len(runs)} runs; data {runner.data}; code version {runner.code}", flush=True)
    rows = collect_rows(runner, runs, args.jobs, args.report_only)
    if not rows:
        sys.exit("no results to report: run without --report-only first")
    images, _, n = runner.paired()
    header = {
        "preset": args.config.name if args.config else args.preset,
        "command": " ".join(shlex.quote(a) for a in ["python", *sys.argv]),
        "commit": produced_by,
        "code": runner.code,
        "machine": machine(study["train"]["device"]),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "wall_s": time.perf_counter() - started,
        "cached": sum(r["from_cache"] for r in rows),
        "paired": f"{n} samples x 5 scanners, {images[0].shape[0]} px",
        "study_json": json.dumps(study, indent=2),
    }
    write_markdown(args.out_md, rows, study, header)
    print(f"report: {args.out_md} ({header['cached']} of {len(rows)} runs from the cache)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS) + sorted(PRESET_FILES))
    parser.add_argument("--config", type=Path, help="A study YAML (keys as the presets).")
    parser.add_argument(
        "--work", type=Path, default=Path(tempfile.gettempdir()) / "scorpion_bench_simcons"
    )
    parser.add_argument("--out-md", type=Path, default=REPO / "docs" / "results" / "simcons.md")
    parser.add_argument(
        "--report-only", action="store_true", help="Report cached runs only; train nothing."
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="Runs trained at once, one process each (1 thread)."
    )
    parser.add_argument(
        "--speed",
        action="store_true",
        help="Only time training steps/s (paper model, AMP on CUDA) and exit.",
    )
    parser.add_argument("--speed-size", type=int, default=1024)
    parser.add_argument("--speed-batch", type=int, default=8)
    parser.add_argument("--speed-steps", type=int, default=300)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    if args.speed:
        time_training_steps(
            args.work, args.speed_size, args.speed_batch, args.device, args.speed_steps
        )
        return
    if args.preset is None and args.config is None:
        parser.error("choose --preset smoke|cpu|paper or --config FILE")
    run_study(args)


if __name__ == "__main__":
    main()
