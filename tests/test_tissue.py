"""Tissue detection beyond H&E: IHC (DAB brown) is tissue, fluorescence is never all tissue."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage.color import rgb2hed

from scorpion_build.slide import Slide
from scorpion_build.tissue import is_fluorescence, tissue_mask

IHC_MPP = 0.5  # assumed: the scikit-image IHC crop carries no resolution


@pytest.fixture(scope="module")
def ihc(real_dir):
    path = real_dir / "skimage_ihc.png"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


@pytest.mark.parametrize("factor", [1, 4, 8])
def test_dab_brown_tissue_is_tissue_and_glass_is_not(ihc, factor):
    """The IHC crop on glass: every clearly DAB-stained pixel is tissue, the glass is not."""
    pad = 256
    slide = cv2.copyMakeBorder(ihc, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(244,) * 3)
    small = cv2.resize(slide, None, fx=1 / factor, fy=1 / factor, interpolation=cv2.INTER_AREA)
    assert not is_fluorescence(small)
    mask = tissue_mask(small, IHC_MPP * factor)
    full = cv2.resize(mask.astype(np.uint8), slide.shape[1::-1], interpolation=cv2.INTER_NEAREST)
    crop = full[pad:-pad, pad:-pad].astype(bool)
    dab = rgb2hed(ihc)[..., 2] > 0.04  # colour deconvolution (Ruifrok & Johnston 2001)
    assert dab.mean() > 0.3  # the crop is mostly DAB-positive epithelium
    assert crop[dab].mean() > 0.99
    assert crop.mean() > 0.75  # glands and stroma alike; only the lumina are empty
    glass = np.ones(full.shape, bool)
    glass[pad - 64 : -pad + 64, pad - 64 : -pad + 64] = False  # beyond the closing's reach
    assert full[glass].mean() < 0.005


def test_he_and_brightfield_slides_are_not_fluorescence(cmu_svs):
    with Slide(cmu_svs) as s:
        thumb = s.thumbnail_at(4.0)
    assert not is_fluorescence(thumb)
    assert 0.2 < tissue_mask(thumb, 4.0).mean() < 0.6  # CMU-1 region: tissue and glass


@pytest.mark.parametrize("channel", ["DAPI", "TRITC"])
def test_fluorescence_is_detected_and_never_all_tissue(real_dir, channel):
    path = real_dir / f"slideio_test3-{channel}-2.ndpi"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    with Slide(path) as s:
        thumb = s.thumbnail_at(4.0)
    assert is_fluorescence(thumb)
    frac = tissue_mask(thumb, 4.0).mean()
    assert 0.2 < frac < 0.8, frac  # bright signal on a dark background, not the dark itself
    # a black field (fluorescence background only) holds no tissue at all
    assert not tissue_mask(np.full((200, 200, 3), 3, np.uint8), 4.0).any()
