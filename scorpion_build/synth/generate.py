"""Write a synthetic scanner-paired slide set: slides, slide table and ground truth.

Layout::

    OUT_DIR/slides.csv                      slide_id,scanner,path,mpp
    OUT_DIR/{slide_id}/{scanner}.svs|.tif   one scan per scanner (with ``native``: .svs,
                                            .bif, .mrxs + folder, .tiff: each scanner's
                                            own container)
    OUT_DIR/truth/{slide_id}.json           exact geometry (see truth.py)
    OUT_DIR/annotations/{slide_id}.geojson  true tissue classes as QuPath-style GeoJSON
    OUT_DIR/train/, OUT_DIR/paired/         labelled sets, with ``labelled=True``
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from scorpion_build.files import write_atomic
from scorpion_build.parallel import single_threaded
from scorpion_build.synth.annotations import write_truth_geojson
from scorpion_build.synth.config import CAMERA_CONTAINERS, CONTAINER_SUFFIX, SynthConfig
from scorpion_build.synth.mirax import write_mirax
from scorpion_build.synth.native import (
    CameraGrid,
    camera_grid,
    tissue_tiles,
    write_bif,
    write_philips,
)
from scorpion_build.synth.placement import (
    ScanGeometry,
    random_geometry,
    reference_geometry,
)
from scorpion_build.synth.render import render_tile_rows
from scorpion_build.synth.seeds import rng_for
from scorpion_build.synth.styles import GLASS_CODES, ScannerStyle, style_for
from scorpion_build.synth.texture import specimen_from_texture
from scorpion_build.synth.tissue import Specimen, generate_specimen
from scorpion_build.synth.truth import SlideTruth
from scorpion_build.synth.writers import write_pyramid

SLIDE_TABLE = "slides.csv"


def slide_id_for(index: int) -> str:
    return f"synth_{index:03d}"


def scan_path(config: SynthConfig, slide_id: str, scanner: str) -> str:
    """Path of a scan relative to OUT_DIR, its suffix the container's (``.svs``, ``.tif``,
    ``.bif``, ``.tiff``, ``.mrxs``)."""
    return f"{slide_id}/{scanner}.{CONTAINER_SUFFIX[config.container_of(scanner)]}"


def specimen_for(config: SynthConfig, index: int) -> Specimen:
    """The procedural specimen behind slide ``index`` (what the reference scan shows).

    With ``config.texture`` set, every slide shows the texture instead.
    """
    if config.texture is not None:
        return specimen_from_texture(config.texture, config.canonical_mpp, config.texture_mpp)
    return generate_specimen(
        config.width_um,
        config.height_um,
        config.specimen_mpp(),
        rng_for(config.seed, "specimen", index),
    )


def synthesize(
    out_dir: str | Path,
    config: SynthConfig | None = None,
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Generate the slides of ``config`` into ``out_dir``; return the slide table.

    Returns
    -------
    DataFrame with columns ``slide_id, scanner, path, mpp`` as in ``OUT_DIR/slides.csv``,
    except that ``path`` is absolute here (relative to the CSV in the file). ``mpp`` is
    set only for scans whose file carries no mpp metadata, NaN otherwise.
    """
    # one BLAS/OpenCV thread: byte-identical files whatever the machine's thread count
    with single_threaded():
        return _synthesize(out_dir, config, progress)


def _synthesize(
    out_dir: str | Path, config: SynthConfig | None, progress: Callable[[str], None] | None
) -> pd.DataFrame:
    config = (config or SynthConfig()).validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda _msg: None)
    texture = None
    if config.texture is not None:
        texture = specimen_from_texture(config.texture, config.canonical_mpp, config.texture_mpp)
    rows = []
    for k in range(config.n_slides):
        slide_id = slide_id_for(k)
        specimen = texture if texture is not None else specimen_for(config, k)
        truth = _write_slide(out, k, slide_id, specimen, config, say)
        truth.save(out)
        write_truth_geojson(out, truth)
        for scanner in config.scanners:
            mpp = math.nan if config.writes_mpp(scanner) else truth.mpp(scanner)
            rows.append((slide_id, scanner, scan_path(config, slide_id, scanner), mpp))
    table = pd.DataFrame(rows, columns=["slide_id", "scanner", "path", "mpp"])
    write_atomic(out / SLIDE_TABLE, lambda tmp: table.to_csv(tmp, index=False, float_format="%.6g"))
    if config.labelled:
        from scorpion_build.synth.labelled import write_labelled_sets

        say("labelled sets")
        write_labelled_sets(out, config)
    table["path"] = [str((out / p).resolve()) for p in table["path"]]
    return table


def _write_slide(
    out: Path,
    index: int,
    slide_id: str,
    specimen: Specimen,
    config: SynthConfig,
    say: Callable[[str], None],
) -> SlideTruth:
    """Render and write every scan of one slide; return its ground truth."""
    (out / slide_id).mkdir(parents=True, exist_ok=True)
    multiple = math.lcm(config.tile_px, config.downsample**4)
    size_um = (specimen.width_um, specimen.height_um)
    geometries: dict[str, ScanGeometry] = {}
    scenarios: dict[str, tuple[str, ...]] = {}
    styles: dict[str, dict] = {}
    for scanner in config.scanners:
        names = config.scenarios_for(index, scanner)
        mpp = config.mpp_of(scanner)
        if scanner == config.reference:
            geom = reference_geometry(*size_um, mpp, multiple)
        else:
            geom = random_geometry(
                rng_for(config.seed, "geometry", index, scanner),
                size_um,
                mpp,
                multiple,
                scenarios=names,
                max_rotation_deg=config.max_rotation_deg,
                max_margin_um=config.max_margin_um,
                distortion_um=config.distortion_um,
                stitch_tile_um=config.stitch_tile_um,
                stitch_shift_um=config.stitch_shift_um,
            )
        style = style_for(scanner, names)
        source = _scene(specimen, names, config, index, scanner)
        path = scan_path(config, slide_id, scanner)
        layout = None
        if config.container_of(scanner) in CAMERA_CONTAINERS:
            # camera tiles fix the level-0 size: the field of view grows to whole tiles
            layout = camera_grid(geom.width_px, geom.height_px)
            geom = replace(geom, width_px=layout.width, height_px=layout.height)
        say(f"{slide_id} {scanner}: {geom.width_px}x{geom.height_px} px at {mpp} um/px")
        noise = rng_for(config.seed, "noise", index, scanner)
        _write_scan(out / path, config, scanner, geom, source, style, noise, layout)
        geometries[scanner], scenarios[scanner], styles[scanner] = geom, names, style.to_dict()
    return SlideTruth(
        slide_id=slide_id,
        reference=config.reference,
        geometries=geometries,
        scenarios=scenarios,
        labels=specimen.labels,
        labels_mpp=specimen.mpp,
        styles=styles,
    )


def _write_scan(
    path: Path,
    config: SynthConfig,
    scanner: str,
    geom: ScanGeometry,
    source: Specimen,
    style: ScannerStyle,
    noise: np.random.Generator,
    layout: CameraGrid | None = None,
) -> None:
    """Render one scan through ``geom`` and write it in the scanner's container (camera
    containers in ``layout``, the grid that sized ``geom``: grown to whole tiles, a size
    need not give back the same grid)."""
    mpp, tile = config.mpp_of(scanner), config.tile_px
    colours = style.colourize(source.stains, source.mpp)

    def rows(geometry: ScanGeometry) -> Iterator[np.ndarray]:
        return render_tile_rows(colours, source.mpp, geometry, style, noise, tile_px=tile)

    codec = dict(compression=config.compression, jpeg_quality=style.jpeg_quality)
    container = config.container_of(scanner)
    size = (geom.width_px, geom.height_px)
    if container in CAMERA_CONTAINERS:
        _write_camera_scan(path, container, geom, layout, rows, source, mpp, tile, codec)
    elif container == "philips":
        keep = tissue_tiles(source.labels, source.mpp, geom.px_to_specimen, size, mpp, tile)
        write_philips(
            path,
            rows(geom),
            *size,
            mpp=mpp,
            keep=lambda ty, tx: bool(keep[ty, tx]),
            tile_px=tile,
            **codec,
        )
    else:
        write_pyramid(
            path,
            rows(geom),
            *size,
            flavour=container,
            mpp=mpp if config.writes_mpp(scanner) else None,
            tile_px=tile,
            downsample=config.downsample,
            **codec,
        )


def _write_camera_scan(
    path: Path,
    container: str,
    geom: ScanGeometry,
    layout: CameraGrid,
    rows: Callable[[ScanGeometry], Iterator[np.ndarray]],
    source: Specimen,
    mpp: float,
    tile: int,
    codec: dict,
) -> None:
    """A Ventana BIF or a MIRAX: overlapping camera images cut from one rendered scene."""
    size = (geom.width_px, geom.height_px)
    # render whole tiles past the camera grid's edge; the writers crop the camera images
    padded = replace(
        geom, width_px=-(-size[0] // tile) * tile, height_px=-(-size[1] // tile) * tile
    )
    if container == "bif":
        write_bif(path, rows(padded), layout, mpp=mpp, render_tile_px=tile, **codec)
        return
    # a P1000 scans only the camera fields with tissue
    fields = tissue_tiles(
        source.labels, source.mpp, geom.px_to_specimen, size, mpp, layout.tile_px,
        pitch_px=layout.advance_px,
    )  # fmt: skip
    write_mirax(
        path, rows(padded), layout, mpp=mpp, scanned=fields, render_tile_px=tile,
        jpeg_quality=codec["jpeg_quality"],
    )  # fmt: skip


def _scene(
    specimen: Specimen, scenarios: tuple[str, ...], config: SynthConfig, index: int, scanner: str
) -> Specimen:
    """What this scanner actually sees: the specimen, bare glass, or another specimen."""
    if "blank" in scenarios:
        glass = np.empty((2, 2, 2), np.uint8)
        glass[...] = GLASS_CODES
        return Specimen(glass, np.zeros((2, 2), np.uint8), specimen.mpp)
    if "unrelated" in scenarios:
        return generate_specimen(
            specimen.width_um,
            specimen.height_um,
            specimen.mpp,
            rng_for(config.seed, "unrelated", index, scanner),
        )
    return specimen
