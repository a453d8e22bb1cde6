"""``scorpion-build export``: patches.zarr -> release layout slide_i/sample_j/<scanner>.jpg."""

from __future__ import annotations

from pathlib import Path

import click

from scorpion_build.cli.common import GuardedCommand, log_options
from scorpion_build.export import ExportOptions, export_release
from scorpion_build.settings import click_option


@click.command("export", cls=GuardedCommand)
@click.argument("build", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click_option(ExportOptions, "format", "fmt")
@click_option(ExportOptions, "quality")
@log_options("build")
def command(build: Path, out_dir: Path, fmt: str, quality: int) -> None:
    """Write BUILD's patches in the SCORPION release layout under OUT_DIR, with index.csv
    and attrs.json; a build with labels (extract --annotations) also gets label.png and
    labels/<scanner>.png per sample, and classes.json.

    OUT_DIR must be new, empty, or an earlier export, which is replaced once the new one is
    complete."""
    index = export_release(build, out_dir, fmt=fmt, quality=quality)
    click.echo(
        f"{len(index)} samples from {index['slide_id'].nunique()} slides -> {out_dir} "
        f"(mapping in {out_dir / 'index.csv'})"
    )
