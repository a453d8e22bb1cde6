"""Slides of any size: streamed pyramids, chunked rendering, a bounded specimen raster."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import tifffile

from scorpion_build.synth import ScannerStyle, SynthConfig, SynthConfigError
from scorpion_build.synth import render as render_module
from scorpion_build.synth.config import MAX_SPECIMEN_PX
from scorpion_build.synth.placement import random_geometry
from scorpion_build.synth.writers import write_pyramid


def _rows(img: np.ndarray, t: int):
    h, w = img.shape[:2]
    for y in range(0, h, t):
        yield img[y : y + t].reshape(t, w // t, t, 3).transpose(1, 0, 2, 3)


@pytest.mark.parametrize("flavour", ["svs", "tiff"])
def test_streamed_levels_are_exact_block_means(tmp_path, flavour):
    """Every reduced level, written from the temporary spool, is the block mean of level 0."""
    rng = np.random.default_rng(0)
    img = cv2.resize(rng.integers(0, 256, (48, 64, 3), np.uint8), (1024, 768))
    path = tmp_path / f"s.{flavour}"
    sizes = write_pyramid(
        path, _rows(img, 64), 1024, 768, flavour=flavour, mpp=0.5, tile_px=64,
        downsample=2, compression="zlib", max_top_px=128,
    )  # fmt: skip
    assert sizes == [(1024, 768), (512, 384), (256, 192), (128, 96)]
    with tifffile.TiffFile(path) as tif:
        levels = [p.asarray() for p in tif.pages if p.is_tiled]
        if flavour == "svs":  # the stripped thumbnail sits between levels 0 and 1
            assert not tif.pages[1].is_tiled and "->" in tif.pages[1].description
    assert len(levels) == len(sizes)
    expected = img
    for (w, h), level in zip(sizes, levels, strict=True):
        np.testing.assert_array_equal(level, expected)
        expected = cv2.resize(expected, (w // 2, h // 2), interpolation=cv2.INTER_AREA)


def test_rendering_in_remap_chunks_equals_one_call(monkeypatch):
    """Wide slides are remapped a few tiles at a time (OpenCV's 32,767 px limit): same pixels."""
    rgb = cv2.resize(
        np.random.default_rng(1).integers(0, 256, (20, 30, 3), np.uint8),
        (300, 200),
        interpolation=cv2.INTER_CUBIC,
    )
    geom = random_geometry(np.random.default_rng(2), (150.0, 100.0), 0.25, 64)
    style = ScannerStyle(noise=2.0)

    def render() -> np.ndarray:
        rows = render_module.render_tile_rows(rgb, 0.5, geom, style, np.random.default_rng(3), 64)
        return render_module.assemble(rows)

    whole = render()
    monkeypatch.setattr(render_module, "_TILES_PER_REMAP", 3)
    assert geom.width_px // 64 > 3
    np.testing.assert_array_equal(render(), whole)


def test_full_slide_sizes_are_accepted_with_a_bounded_specimen():
    config = SynthConfig(width_um=20_000.0, height_um=15_000.0).validate()
    assert config.specimen_mpp() > config.canonical_mpp
    assert max(config.width_um, config.height_um) / config.specimen_mpp() <= MAX_SPECIMEN_PX
    assert SynthConfig().specimen_mpp() == SynthConfig().canonical_mpp  # small: unchanged
    with pytest.raises(SynthConfigError, match="100000 um"):
        SynthConfig(width_um=120_000.0).validate()
