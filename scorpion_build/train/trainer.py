"""The SimCons training loop: data -> task augmentation -> style augmentation -> loss -> Adam.

A run folder holds::

    config.json        the resolved TrainConfig
    randstainna.json   fitted RandStainNA statistics (when sa = randstainna)
    metrics.csv        one row per finished epoch
    best.pt/.json      best epoch by validation Dice (state dict + model config)
    state.pt           model, optimizer and scaler after the last finished epoch (for --resume)
    summary.json       best epoch, its validation and test Dice

Reproducibility: every random draw of epoch e (data order, crops, augmentations, dropout)
is seeded from ``(seed, e)``, so on CPU a run is deterministic and a run resumed after
epoch e continues exactly as if it had never stopped. On CUDA, AMP and cuDNN kernel choice
make runs close but not bit-identical.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from scorpion_build import logs
from scorpion_build.files import write_atomic, write_text_atomic
from scorpion_build.models import build_model, resolve_device, save_checkpoint
from scorpion_build.train.config import TrainConfig, resume_mismatches
from scorpion_build.train.data import (
    EpochSampler,
    LabelledData,
    SegmentationDataset,
)
from scorpion_build.train.evaluate import mean_dice, normalize, predict_labels
from scorpion_build.train.losses import simcons_loss
from scorpion_build.train.paired import SPLIT_FILE, load_training_data
from scorpion_build.train.randstainna import StainStatistics, fit_stain_statistics
from scorpion_build.train.style import StyleAugmentation, build_style_augmentation

log = logging.getLogger(__name__)

METRIC_COLUMNS = [
    "epoch",
    "loss",
    "supervised",
    "consistency",
    "val_dice",
    "val_style_consistency",
    "best",
    "seconds",
]


class RunError(RuntimeError):
    """A run folder that cannot be started or resumed as asked; names the folder and fix."""


@dataclass(frozen=True)
class TrainResult:
    """What a run produced; ``best_epoch`` counts from 1, as in metrics.csv."""

    run_dir: Path
    checkpoint: Path
    best_epoch: int
    best_val_dice: float
    test_dice: float | None
    history: pd.DataFrame


def epoch_seed(seed: int, epoch: int) -> int:
    """One 63-bit seed per (run seed, epoch), for torch generators and the global RNG."""
    return int(np.random.default_rng([seed, epoch]).integers(0, 2**63 - 1))


class Trainer:
    """One training run; :func:`train` is the usual entry point."""

    def __init__(self, config: TrainConfig, progress: bool = True) -> None:
        self.config = config
        self.progress = progress
        self.run_dir = Path(config.out)
        self.device = resolve_device(config.device)
        # AMP only where it pays and is safe: half precision on CUDA; CPU stays float32
        self.amp = bool(config.amp and self.device.type == "cuda")
        if self.device.type == "cuda":
            # fixed crop size: autotuned kernels pay off; CUDA runs are not bit-exact anyway
            torch.backends.cudnn.benchmark = True
        self.source = load_training_data(
            config.data, config.classes, config.train_scanners, config.seed, self.run_dir
        )
        self.data: LabelledData = self.source.data
        self.classes = list(self.data.classes)
        torch.manual_seed(config.seed)  # model initialisation
        self.model: nn.Module = build_model(
            config.encoder, len(self.classes), config.arch, config.encoder_weights
        ).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.style: StyleAugmentation | None = None
        self.history: list[dict] = []
        self.start_epoch = 0
        self.best_val_dice = -1.0
        self.best_epoch = -1

    # -- run folder ---------------------------------------------------------------------------

    @property
    def state_path(self) -> Path:
        return self.run_dir / "state.pt"

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "best.pt"

    def prepare(self, resume: bool) -> None:
        """Create or reopen the run folder; load the state to resume from."""
        cfg_path = self.run_dir / "config.json"
        if self.state_path.exists() and not resume:
            raise RunError(
                f"{self.run_dir}: already holds a run (state.pt); pass --resume to continue it "
                "or choose a new --out"
            )
        if resume and self.state_path.exists():
            saved = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
            changed = resume_mismatches(saved, self.config)
            if changed:
                raise RunError(
                    f"{cfg_path}: --resume with different settings for {changed}; resume with "
                    "the original settings (only epochs, device, data/out paths and workers may "
                    "change) or start a new --out"
                )
            self._load_state()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(cfg_path, json.dumps(self.config.to_dict(), indent=2))
        if self.source.split_table is not None:  # the by-slide split, kept for --resume
            write_text_atomic(
                self.run_dir / SPLIT_FILE, self.source.split_table.to_csv(index=False)
            )
        self.style = self._build_style(resuming=self.start_epoch > 0)

    def _build_style(self, resuming: bool) -> StyleAugmentation | None:
        cfg = self.config
        stats = None
        if cfg.sa == "randstainna":
            saved = self.run_dir / "randstainna.json"
            source = cfg.randstainna.stats or (saved if resuming and saved.is_file() else None)
            if source:
                stats = StainStatistics.load(source)
                if stats.color_space != cfg.randstainna.color_space:
                    raise RunError(
                        f"{source}: RandStainNA statistics are in {stats.color_space} but "
                        f"color_space is {cfg.randstainna.color_space}; make them agree"
                    )
            else:
                images = (item.read()[0] for item in self.data.split("train"))
                stats = fit_stain_statistics(images, cfg.randstainna.color_space)
            stats.save(saved)
        return build_style_augmentation(
            cfg.sa,
            colorjitter=cfg.colorjitter,
            stats=stats,
            randstainna_spread=cfg.randstainna.spread,
            fda_beta=cfg.fda.beta,
        )

    def _load_state(self) -> None:
        try:
            state = torch.load(self.state_path, map_location=self.device, weights_only=True)
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scaler.load_state_dict(state["scaler"])
        except Exception as exc:
            raise RunError(
                f"{self.state_path}: cannot resume from it ({exc.__class__.__name__}: {exc}); "
                "delete the run folder to start over"
            ) from exc
        self.start_epoch = int(state["epoch"]) + 1
        self.best_val_dice = float(state["best_val_dice"])
        self.best_epoch = int(state["best_epoch"])
        self.history = [dict(row) for row in state["history"]]

    def _save_state(self, epoch: int) -> None:
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": epoch,
            "best_val_dice": self.best_val_dice,
            "best_epoch": self.best_epoch,
            "history": self.history,
        }
        write_atomic(self.state_path, lambda tmp: torch.save(state, tmp))

    def _checkpoint_config(self, epoch: int, val_dice: float) -> dict:
        cfg = self.config
        return {
            "classes": self.classes,
            "encoder": cfg.encoder,
            "arch": cfg.arch,
            "input": "RGB float in [0, 1], ImageNet mean/std normalised, NCHW",
            "epoch": epoch + 1,
            "val_dice": val_dice,
            "sa": cfg.sa,
            "consistency_weight": cfg.consistency_weight,
            "seed": cfg.seed,
            # what the model was trained on: benchmark warns when its data differ
            "mpp": self.source.mpp,
            "patch_px": cfg.size,
            "train_scanners": self.source.scanners,
            "train_config": cfg.to_dict(),
        }

    # -- one epoch ----------------------------------------------------------------------------

    def train_epoch(self, epoch: int) -> dict[str, float]:
        cfg = self.config
        seed = epoch_seed(cfg.seed, epoch)
        torch.manual_seed(seed)  # dropout in the decoder
        generator = torch.Generator(device=self.device).manual_seed(seed)
        items = self.data.split("train")
        loader = DataLoader(
            SegmentationDataset(items, crop_px=cfg.size),
            batch_size=cfg.batch_size,
            sampler=EpochSampler(len(items), cfg.seed, epoch),
            num_workers=cfg.num_workers,
            # a batch of one breaks batch norm; keep every image when the set is tiny
            drop_last=len(items) % cfg.batch_size == 1,
            pin_memory=self.device.type == "cuda",
        )
        self.model.train()
        sums = {"loss": 0.0, "supervised": 0.0, "consistency": 0.0}
        steps = 0
        bar = logs.progress(
            len(loader), f"epoch {epoch + 1}/{cfg.epochs}", "batches", enabled=self.progress
        )
        for batch in loader:
            parts = self.train_step(batch, generator)
            for key, value in zip(sums, parts, strict=True):
                sums[key] += value
            steps += 1
            bar.set_postfix(loss=f"{sums['loss'] / steps:.4f}")
            bar.update()
        bar.close()
        return {k: v / max(steps, 1) for k, v in sums.items()}

    def train_step(self, batch: dict, generator: torch.Generator) -> tuple[float, float, float]:
        """One optimiser step; returns (total, supervised, consistency) loss values."""
        cfg = self.config
        image = batch["image"].to(self.device, non_blocking=True).float() / 255.0
        mask = batch["mask"].to(self.device, non_blocking=True)
        image, mask = cfg.augment(image, mask, generator)
        styled = self.style(image, generator) if self.style is not None else None
        if cfg.two_branch:
            # one forward pass for both branches: batch-norm statistics see both styles
            inputs = torch.cat([image, styled])
        else:
            # plain style augmentation (lambda = 0) trains on the styled image alone
            inputs = styled if styled is not None else image
        with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.amp):
            logits = self.model(normalize(inputs))
        if cfg.two_branch:
            clean, style = logits.chunk(2)
        else:
            clean, style = logits, None
        parts = simcons_loss(
            clean, mask, style, cfg.consistency_weight, cfg.consistency_gradient, cfg.loss
        )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(parts.total).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return float(parts.total.detach()), float(parts.supervised), float(parts.consistency)

    # -- evaluation ---------------------------------------------------------------------------

    def evaluate(self, split: str, style_consistency: bool = False) -> tuple[float, float]:
        """Task Dice on a split, and (optionally) Dice between predictions of each tile and of
        its style-augmented copy, drawn with a fixed seed so epochs are comparable."""
        dataset = SegmentationDataset(self.data.split(split))
        images, labels = [], []
        for i in range(len(dataset)):
            image, mask = dataset.load(i)
            images.append(image)
            labels.append(mask)
        if not images:
            return float("nan"), float("nan")
        kwargs = {"device": self.device, "batch_size": self.config.batch_size, "amp": self.amp}
        preds = predict_labels(self.model, images, **kwargs)
        dice = mean_dice(preds, labels, len(self.classes))
        consistency = float("nan")
        if style_consistency and self.style is not None and len(images) >= 2:
            generator = torch.Generator(device=self.device).manual_seed(self.config.seed)

            def restyle(x: torch.Tensor) -> torch.Tensor:
                # FDA needs a second image; a tile alone in its size group stays as it is
                return self.style(x, generator) if x.shape[0] > 1 else x

            styled = predict_labels(self.model, images, transform=restyle, **kwargs)
            consistency = mean_dice(styled, preds, len(self.classes))
        return dice, consistency

    # -- the loop -----------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        cfg = self.config
        for epoch in range(self.start_epoch, cfg.epochs):
            started = time.perf_counter()
            losses = self.train_epoch(epoch)
            val_dice, val_consistency = self.evaluate(
                "val", style_consistency=cfg.val_style_consistency
            )
            improved = val_dice > self.best_val_dice
            if improved:
                self.best_val_dice, self.best_epoch = val_dice, epoch
                save_checkpoint(
                    self.model, self._checkpoint_config(epoch, val_dice), self.checkpoint_path
                )
            row = {
                "epoch": epoch + 1,  # 1-based in files and messages
                **losses,
                "val_dice": val_dice,
                "val_style_consistency": val_consistency,
                "best": improved,
                "seconds": round(time.perf_counter() - started, 3),
            }
            self.history.append(row)
            self._write_metrics()
            # the state goes last: a crash before it redoes this epoch, identically
            self._save_state(epoch)
            if self.progress:
                log.info(
                    "epoch %d/%d  loss %.4f  val Dice %.4f%s",
                    epoch + 1,
                    cfg.epochs,
                    losses["loss"],
                    val_dice,
                    "  (best)" if improved else "",
                )
        return self._finish()

    def _write_metrics(self) -> None:
        table = pd.DataFrame(self.history, columns=METRIC_COLUMNS)
        write_text_atomic(self.run_dir / "metrics.csv", table.to_csv(index=False))

    def _finish(self) -> TrainResult:
        if self.best_epoch < 0:
            raise RunError(f"{self.run_dir}: no epoch finished; nothing to report")
        state = torch.load(self.checkpoint_path, map_location=self.device, weights_only=True)
        self.model.load_state_dict(state)
        test_dice = None
        if self.data.split("test"):
            test_dice, _ = self.evaluate("test")
        summary = {
            "checkpoint": self.checkpoint_path.name,
            "best_epoch": self.best_epoch + 1,
            "best_val_dice": self.best_val_dice,
            "test_dice": test_dice,
            "epochs": len(self.history),
            "classes": self.classes,
            "metrics": "task Dice per sample and class (absent from both = 1), "
            "class mean, sample mean (scorpion_build.metrics.dice_per_class)",
        }
        write_text_atomic(self.run_dir / "summary.json", json.dumps(summary, indent=2))
        return TrainResult(
            run_dir=self.run_dir,
            checkpoint=self.checkpoint_path,
            best_epoch=self.best_epoch + 1,
            best_val_dice=self.best_val_dice,
            test_dice=test_dice,
            history=pd.DataFrame(self.history, columns=METRIC_COLUMNS),
        )


def train(config: TrainConfig, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train (or, with ``resume``, continue) a SimCons run as configured.

    Returns the best checkpoint and the metrics; see the module docstring for the files.
    """
    trainer = Trainer(config, progress=progress)
    trainer.prepare(resume)
    return trainer.fit()
