"""``scorpion-build train``: SimCons training (style augmentation + consistency loss)."""

from __future__ import annotations

import sys

import click

from scorpion_build import logs
from scorpion_build.cli.common import GuardedCommand, device_option, log_options
from scorpion_build.settings import defaults_for_help, settings_of
from scorpion_build.train.config import RandStainNAConfig, TrainConfig
from scorpion_build.train.style import FDA

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


def option(name: str, **extra: object):  # noqa: ANN201 - a Click decorator
    """The option of TrainConfig setting ``name``; None unless given (the config file wins)."""
    return defaults_for_help(TrainConfig, name, **extra)


def _help(name: str) -> str:
    """A required setting's help, without the docs' "[default: required]" (a file may set it)."""
    return settings_of(TrainConfig)[name].spec.help


@click.command("train", cls=GuardedCommand)
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False),
    help="YAML config (keys as below, top level or under 'train:'); options given here win.",
)
@option("data", type=click.Path(file_okay=False), help=_help("data"))
@option(
    "train_scanners",
    type=str,
    multiple=False,
    default=None,
    callback=lambda ctx, param, value: (
        [v.strip() for v in value.split(",") if v.strip()] if value else None
    ),
)
@option("out", type=click.Path(file_okay=False), help=_help("out"))
@option("sa")
@option("consistency_weight")
@option("consistency_gradient")
@option("loss")
@option("epochs")
@option("batch_size")
@option("lr")
@option("size")
@option("encoder")
@option("encoder_weights", type=click.Path(exists=True, dir_okay=False))
@option("arch")
@option("seed")
@device_option
@option("num_workers")
@option("amp")
@defaults_for_help(RandStainNAConfig, "color_space")
@defaults_for_help(
    RandStainNAConfig,
    "stats",
    "randstainna_stats",
    flag="--randstainna-stats",
    type=click.Path(exists=True, dir_okay=False),
)
@defaults_for_help(FDA, "beta", "fda_beta", flag="--fda-beta")
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
    from scorpion_build.train import ConfigError, DataError, RunError, train
    from scorpion_build.train.config import read_yaml_lines, saved_settings

    try:
        raw, lines = read_yaml_lines(config_file) if config_file else ({}, {})
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
        config = TrainConfig.from_dict(raw, source=config_file or "options", lines=lines)
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
