"""Extraction's steps alone, on small arrays: local refinement, NCC, task payloads, and a
crashed task's rows."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from scorpion_build import geometry as geo
from scorpion_build.annotations import AnnotationSet
from scorpion_build.correlation import ncc
from scorpion_build.extract import (
    MAX_CORRECTION_UM,
    ScanInput,
    SlideTask,
    estimate_correction,
    refine_patch_offset,
)
from scorpion_build.extract.refine import SmallGrey
from scorpion_build.extract.tasks import with_annotations
from scorpion_build.slide import Resampler

SIZE = 256  # output px per patch side


def _stained_texture(side: int = 640, seed: int = 0) -> np.ndarray:
    """Smooth random 'tissue' as RGB uint8: haematoxylin-like purple on white."""
    rng = np.random.default_rng(seed)
    od = cv2.GaussianBlur(rng.random((side, side)).astype(np.float32), (0, 0), 3)
    od = (od - od.min()) / (od.max() - od.min())
    rgb = 255 * np.exp(-od[..., None] * np.array([0.65, 1.4, 0.6], np.float32))
    return rgb.astype(np.uint8)


def _refine(offset_px: tuple[float, float], mpp: float) -> tuple[geo.Affine, geo.Affine, object]:
    """Refine a patch whose patch_to_slide is off by ``offset_px`` (level-0 px) against the
    same region's reference patch; return (truth, refined, correction)."""
    source = Resampler(_stained_texture(), geo.identity(), level=0)
    truth = geo.translation(180.0, 200.0)  # output px -> level-0 px, 1:1
    small = SmallGrey(source, truth)
    ref_small = small.warp(truth, SIZE)
    given = geo.compose(geo.translation(*offset_px), truth)
    refined, corr = refine_patch_offset(ref_small, small, given, SIZE, mpp)
    return truth, refined, corr


def test_refinement_recovers_a_sub_pixel_offset():
    truth, refined, corr = _refine((1.3, -0.8), mpp=0.5)
    assert corr.accepted, corr.message
    grid = np.stack(np.meshgrid(np.linspace(0, SIZE, 5), np.linspace(0, SIZE, 5)), -1)
    err = np.hypot(
        *(geo.apply(refined, grid.reshape(-1, 2)) - geo.apply(truth, grid.reshape(-1, 2))).T
    )
    assert err.max() < 0.15, err
    assert corr.shift_px == pytest.approx((-1.3, 0.8), abs=0.15)


def test_refinement_never_moves_a_patch_beyond_its_limit():
    # at 1 um/px the limit is MAX_CORRECTION_UM px; the given error is 40% larger
    offset = 1.4 * MAX_CORRECTION_UM
    _, refined, corr = _refine((offset, 0.0), mpp=1.0)
    assert not corr.accepted and "exceeds" in corr.message
    assert corr.shift_px == (0.0, 0.0)
    np.testing.assert_array_equal(
        refined, geo.compose(geo.translation(offset, 0), geo.translation(180.0, 200.0))
    )


def test_affine_step_recovers_a_small_scale_and_shift():
    grey = cv2.GaussianBlur(
        np.random.default_rng(1).random((256, 256)).astype(np.float32), (0, 0), 2
    )
    m = geo.compose(geo.translation(0.7, -0.4), geo.scaling(1.006))  # ref px -> mov px
    # mov(m(p)) = ref(p): sampling mov through the correction gives back the reference
    mov = cv2.warpAffine(
        grey,
        geo.to_opencv(geo.invert(m)),
        (256, 256),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
    )
    corr = estimate_correction(grey, mov, max_shift_px=10, stage="affine")
    assert corr.accepted, corr.message
    pts = np.array([[64.0, 64.0], [192.0, 64.0], [128.0, 192.0]])
    np.testing.assert_allclose(geo.apply(corr.affine, pts), geo.apply(m, pts), atol=0.1)


def test_ncc_is_the_same_figure_in_either_precision():
    rng = np.random.default_rng(2)
    a = rng.random((64, 64)).astype(np.float32)
    b = (0.6 * a + 0.4 * rng.random((64, 64))).astype(np.float32)
    single, double = ncc(a, b, dtype=np.float32), ncc(a, b)
    assert 0.5 < double < 0.99 and single == pytest.approx(double, abs=1e-5)
    assert ncc(a, np.full_like(a, 3.0)) == 0.0  # a flat image correlates with nothing
    assert ncc(a[:3, :3], b[:3, :3]) == 0.0  # 9 px say nothing


def _task(slide_id: str) -> SlideTask:
    scan = ScanInput("x.svs", "openslide", (0.5, 0.5), geo.to_six(geo.identity()))
    failed = dataclasses.replace(scan, status="failed", message="registration failed: x")
    return SlideTask(slide_id, "AT2", {"AT2": scan, "GT450": scan, "P1000": failed})


def test_task_payloads_are_frozen_and_annotations_make_new_ones():
    tasks = [_task("s1"), _task("s2")]
    assert tasks[0].others() == ["GT450"]  # the failed scan takes no part
    with pytest.raises(dataclasses.FrozenInstanceError):
        tasks[0].reference = "GT450"
    annotations = AnnotationSet(["background", "tumour"], by_slide={"s1": []}, digest="abc")
    annotated, key = with_annotations(tasks, annotations, ("tumour",), None)
    assert key == "abc:[1]" and [t.roi for t in annotated] == [(1,), (1,)]
    assert annotated[0].annotations == () and tasks[0].annotations is None
    assert with_annotations(tasks, None, (), None) == (tasks, "")
    with pytest.raises(ValueError, match="--roi-class needs --annotations"):
        with_annotations(tasks, None, ("tumour",), None)
