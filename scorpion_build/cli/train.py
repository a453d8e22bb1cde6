"""``scorpion-build train``: SimCons training (style augmentation + consistency loss)."""

from __future__ import annotations

import sys

import click

from scorpion_build import logs
from scorpion_build.cli.common import GuardedCommand, device_option, log_options

# CLI option -> TrainConfig key (or section.key); None means "not given", the config's value wins
_OPTION_KEYS = {
    "data": "data",
    "out": "out",
    "train_scanners": "train_scanners",
    "sa": "sa",
    "consistency_weight": "consistency_weight",
    "consistency_gradient": "consistency_gradient",
    "loss": "loss",
    "epochs": "epochs",
    "batch_size": "batch_size",
    "lr": "lr",
    "size": "size",
    "encoder": "encoder",
    "encoder_weights": "encoder_weights",
    "arch": "arch",
    "seed": "seed",
    "device": "device",
    "num_workers": "num_workers",
    "amp": "amp",
    "color_space": "randstainna.color_space",
    "randstainna_stats": "randstainna.stats",
    "fda_beta": "fda.beta",
}


@click.command("train", cls=GuardedCommand)
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False),
    help="YAML config (keys as below, top level or under 'train:'); options given here win.",
)
@click.option(
    "--data",
    type=click.Path(file_okay=False),
    help="A build (or its patches.zarr, or its export) with label maps from `extract "
    "--annotations`, split by slide; or a folder with images/, masks/, split.csv "
    "[, classes.json].",
)
@click.option(
    "--train-scanners",
    callback=lambda ctx, param, value: (
        [v.strip() for v in value.split(",") if v.strip()] if value else None
    ),
    help="With a build: scanners whose patches are training images, e.g. AT2,P1000.  "
    "[default: the reference]",
)
@click.option("--out", type=click.Path(file_okay=False), help="Run folder to write.")
@click.option(
    "--sa",
    type=click.Choice(["none", "colorjitter", "randstainna", "fda"]),
    help="Style augmentation.  [default: none]",
)
@click.option(
    "--consistency-weight",
    type=float,
    help="SimCons lambda; 0 trains on style-augmented images alone.  [default: 0.3]",
)
@click.option(
    "--consistency-gradient",
    type=click.Choice(["both", "stop-clean"]),
    help="Consistency gradient through both branches, or the clean one detached.  [default: both]",
)
@click.option(
    "--loss",
    type=click.Choice(["gdl", "l1-mean"]),
    help="Dice form of both terms: generalised Dice (Sudre 2017, per batch) or the per-tile "
    "class mean with an L1 consistency Dice.  [default: gdl]",
)
@click.option("--epochs", type=int, help="Epochs.  [default: 50]")
@click.option("--batch-size", type=int, help="Images per batch.  [default: 8]")
@click.option("--lr", type=float, help="Adam learning rate.  [default: 1e-4]")
@click.option(
    "--size", type=int, help="Training crop side in px, a multiple of 32.  [default: 512]"
)
@click.option("--encoder", help="segmentation-models-pytorch encoder.  [default: resnet34]")
@click.option(
    "--encoder-weights",
    type=click.Path(exists=True, dir_okay=False),
    help="Local encoder weights file (.pth/.safetensors); never downloaded.",
)
@click.option(
    "--arch",
    type=click.Choice(["deeplabv3plus", "unet", "fpn"]),
    help="Decoder.  [default: deeplabv3plus]",
)
@click.option("--seed", type=int, help="Random seed.  [default: 0]")
@device_option
@click.option("--num-workers", type=int, help="DataLoader worker processes.  [default: 0]")
@click.option("--amp/--no-amp", default=None, help="Mixed precision on CUDA.  [default: on]")
@click.option(
    "--color-space",
    type=click.Choice(["lab", "hsv", "hed"]),
    help="RandStainNA colour space.  [default: lab]",
)
@click.option(
    "--randstainna-stats",
    type=click.Path(exists=True, dir_okay=False),
    help="Saved RandStainNA statistics; fitted on the training split when omitted.",
)
@click.option("--fda-beta", type=float, help="FDA low-frequency band size.  [default: 0.05]")
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the interrupted run in --out exactly, with its saved settings (give only "
    "--out; --epochs, --device and --num-workers may change).",
)
@log_options()
@click.pass_context
def command(ctx: click.Context, config_file: str | None, resume: bool, **options):
    """Train a segmentation model with SimCons (SCORPION paper).

    Loss: supervised Dice(F(x), y) + lambda * consistency Dice(F(x), F(SA(x))), both
    generalised Dice by default (--loss). Writes
    best.pt/.json (checkpoint), metrics.csv, state.pt (for --resume) and summary.json to
    --out.
    """
    from scorpion_build.train import ConfigError, DataError, RunError, TrainConfig, train
    from scorpion_build.train.config import read_yaml, saved_settings

    try:
        raw = read_yaml(config_file) if config_file else {}
        if resume:
            raw = {**saved_settings(options.get("out") or raw.get("out")), **raw}
        for option, key in _OPTION_KEYS.items():
            given = options.get(option)
            source = ctx.get_parameter_source(option)
            if option == "device" and source == click.core.ParameterSource.DEFAULT:
                given = None  # the shared option has a default; the config file's value wins
            if given is None:
                continue
            if "." in key:
                section, sub = key.split(".")
                raw[section] = {**(raw.get(section) or {}), sub: given}
            else:
                raw[key] = given
        config = TrainConfig.from_dict(raw, source=config_file or "options")
        logs.use_folder(config.out)  # written once the run folder exists
        result = train(config, resume=resume, progress=logs.show_progress())
    except (ConfigError, DataError, RunError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    test = "n/a (no test split)" if result.test_dice is None else f"{result.test_dice:.4f}"
    click.echo(
        f"best epoch {result.best_epoch}: val Dice {result.best_val_dice:.4f}, "
        f"test Dice {test}; checkpoint {result.checkpoint}"
    )
