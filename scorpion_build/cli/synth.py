"""``scorpion-build synth``: synthetic scanner-paired slides with exact ground truth."""

from __future__ import annotations

from pathlib import Path

import click

from scorpion_build.cli.common import (
    GuardedCommand,
    log,
    log_options,
    reference_option,
    seed_option,
)
from scorpion_build.pipeline.config import SynthStage
from scorpion_build.settings import click_option


def _scanner_list(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    if not names:
        raise click.BadParameter("give at least one scanner name, e.g. AT2,GT450")
    return names


def _mpp_overrides(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> dict:
    out = {}
    for item in value:
        name, _, number = item.partition("=")
        try:
            out[name] = float(number)
        except ValueError:
            raise click.BadParameter(f"{item!r}: write SCANNER=MPP, e.g. AT2=0.5") from None
    return out


@click.command("synth", cls=GuardedCommand)
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click_option(SynthStage, "slides", "n_slides")
@click_option(SynthStage, "scanners", callback=_scanner_list)
@reference_option
@click_option(SynthStage, "width_um")
@click_option(SynthStage, "height_um")
@seed_option
@click.option(
    "--mpp",
    "mpp_overrides",
    multiple=True,
    callback=_mpp_overrides,
    metavar="SCANNER=MPP",
    help="Level-0 um/px of a scanner (repeatable); defaults to its real resolution.",
)
@click_option(SynthStage, "texture", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--texture-mpp", type=float, default=None, help="um/px of --texture if unstated.")
@click_option(SynthStage, "scenario", "scenarios")
@click.option("--distortion-um", type=float, default=3.0, show_default=True)
@click.option(
    "--native",
    is_flag=True,
    help="Write each scanner's own container: AT2/GT450 Aperio .svs, DP200 Ventana .bif "
    "(overlapping camera tiles), P1000 MIRAX .mrxs + folder, Philips .tiff (sparse); other "
    "names keep .svs/.tif.",
)
@click.option("--labelled", is_flag=True, help="Also write train/ and paired/ patch sets.")
@click.option("--n-train", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--n-paired-slides", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--paired-samples", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--patch-px", type=click.IntRange(min=32), default=256, show_default=True)
@click.option("--patch-mpp", type=float, default=0.78125, show_default=True)
@log_options("out_dir")
def command(
    out_dir: Path, n_slides: int, scanners: tuple[str, ...], reference: str, **opts
) -> None:
    """Write synthetic multi-scanner slides, their slide table and ground truth to OUT_DIR.

    OUT_DIR/slides.csv lists the scans (OUT_DIR/{slide_id}/{scanner}.svs|.tif, or with
    --native .svs|.bif|.mrxs|.tiff);
    OUT_DIR/truth/{slide_id}.json holds the exact reference -> scanner pixel maps;
    OUT_DIR/annotations/{slide_id}.geojson the true tissue classes (for --annotations).
    """
    from scorpion_build.synth import Scenario, SynthConfig, SynthConfigError, synthesize
    from scorpion_build.synth.texture import TextureError

    try:
        config = SynthConfig(
            n_slides=n_slides,
            scanners=scanners,
            reference=reference,
            seed=opts["seed"],
            **{k: opts[k] for k in ("width_um", "height_um") if opts[k] is not None},
            scanner_mpp=opts["mpp_overrides"],
            texture=opts["texture"],
            texture_mpp=opts["texture_mpp"],
            scenarios=tuple(Scenario.parse(s) for s in opts["scenarios"]),
            distortion_um=opts["distortion_um"],
            native=opts["native"],
            labelled=opts["labelled"],
            n_train=opts["n_train"],
            n_paired_slides=opts["n_paired_slides"],
            paired_samples=opts["paired_samples"],
            patch_px=opts["patch_px"],
            patch_mpp=opts["patch_mpp"],
        )
        table = synthesize(out_dir, config, progress=lambda msg: log.info("  %s", msg))
    except (SynthConfigError, TextureError) as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo(
        f"synth: {table['slide_id'].nunique()} slides x {len(scanners)} scanners -> "
        f"{out_dir / 'slides.csv'}"
    )
