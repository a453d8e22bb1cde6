"""Step 2 of extraction: one sample's aligned patches, written into the store.

Every scanner's patch of a region is read once at the output resolution through
``patch_to_slide`` (output px -> that scan's level-0 px, ``docs/contracts.md`` section 2):
the reference's straight from the region, every other scan's through its registration,
refined locally against the reference patch (:mod:`.refine`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import zarr

from scorpion_build import faults
from scorpion_build import geometry as geo
from scorpion_build.extract.config import ExtractConfig
from scorpion_build.extract.refine import (
    MAX_CORRECTION_UM,
    REFINE_SCALE,
    SmallGrey,
    block_mean,
    patch_similarity,
    power_of_two_at_most,
    refine_patch_offset,
)
from scorpion_build.extract.resume import mark_finished, marker_path, trusted_marker
from scorpion_build.extract.store import PATCHES_ARRAY
from scorpion_build.extract.tasks import Sample, SampleTask, ScanInput, SlideTask
from scorpion_build.integrity import patch_checksum
from scorpion_build.labels import LABELS_ARRAY, write_sample_labels
from scorpion_build.mpp import upsample_note
from scorpion_build.parallel import cached
from scorpion_build.slide import Slide
from scorpion_build.tissue import fluorescence_mask, is_fluorescence, od_tissue_mask

# A patch whose stain-robust NCC to the reference patch stays below this after refinement
# is flagged `warn`: it is probably misregistered, out of focus, or missing tissue.
MIN_SIMILARITY = 0.5
# Tissue fraction of a patch is judged at this resolution (um/px): coarse is enough.
TISSUE_MPP = 4.0


def region_to_reference(
    x_um: float, y_um: float, config: ExtractConfig, ref_mpp: tuple[float, float]
) -> geo.Affine:
    """Output-patch px -> reference level-0 px for a region whose top-left is (x_um, y_um)."""
    mx, my = ref_mpp
    return geo.compose(
        geo.translation(x_um / mx, y_um / my), geo.scaling(config.mpp / mx, config.mpp / my)
    )


def patch_tissue_fraction(patch: np.ndarray, grey_view: np.ndarray, mpp: float) -> float:
    """Tissue fraction of an RGB ``patch`` at ``mpp`` um/px, judged on its optical-density
    view (``REFINE_SCALE`` times coarser), or on its pixels when it is fluorescence."""
    if is_fluorescence(patch):  # optical density is meaningless on emitted light
        f = power_of_two_at_most(TISSUE_MPP / mpp)
        return float(fluorescence_mask(block_mean(patch, f), mpp * f).mean())
    view_mpp = mpp * REFINE_SCALE
    f = power_of_two_at_most(TISSUE_MPP / view_mpp)
    return float(od_tissue_mask(block_mean(grey_view, f), view_mpp * f).mean())


def extract_sample(
    item: SampleTask,
    config: ExtractConfig,
    zarr_path: str,
    scanners: list[str],
    state_dir: str,
    store_key: str = "",
) -> list[dict]:
    """Task: write every scanner's patch of one sample; return its patch rows.

    The slides and the store stay open in the process for its next samples
    (:func:`scorpion_build.parallel.cached`; ``store_key`` tells a new store at the same
    path from an old one). A finished sample is marked in ``state_dir`` and trusted on a
    re-run only if every patch it wrote still matches its checksum.
    """
    cv2.setNumThreads(1)
    task, sample = item.task, item.sample
    # Every patch chunk is written: skipping zarr's "all fill value?" test saves ~30 ms/patch
    group = cached(("store", zarr_path, store_key), lambda: zarr.open_group(zarr_path, mode="r+"))
    arr = cached(
        ("patches", zarr_path, store_key),
        lambda: group[PATCHES_ARRAY].with_config({"write_empty_chunks": True}),
    )
    marker = marker_path(state_dir, sample.sample_id)
    done = trusted_marker(marker, store_key, arr)
    if done is not None:  # finished by an earlier run, and its chunks check out
        return done
    slides = {
        s: cached(("slide", v.path, v.reader, v.mpp), v.open)
        for s, v in task.scans.items()
        if v.usable
    }
    rows = write_patches(sample, task, slides, scanners, config, arr)
    if task.annotations is not None:  # before the marker: resume skips both
        labels = cached(
            ("labels", zarr_path, store_key),
            lambda: group[LABELS_ARRAY].with_config({"write_empty_chunks": True}),
        )
        write_sample_labels(labels, rows, task.annotations, config.size)
    mark_finished(marker, store_key, rows)
    faults.reached("extract-marker")
    return rows


@dataclass(frozen=True)
class _Reference:
    """The reference patch of a sample, which every other scan is refined against."""

    patch_to_slide: geo.Affine
    patch: np.ndarray
    level: int
    small: np.ndarray  # its grey view at 1/REFINE_SCALE (refine.SmallGrey)


def write_patches(
    sample: Sample,
    task: SlideTask,
    slides: dict[str, Slide],
    scanners: list[str],
    config: ExtractConfig,
    arr: zarr.Array,
) -> list[dict]:
    """Write ``sample``'s patch of every scanner into ``arr`` (index, scanner_index) and
    return the patch rows (``failed`` for a scanner without a usable scan)."""
    size = (config.size, config.size)
    ref_slide = slides[task.reference]
    m_ref = region_to_reference(sample.x_um, sample.y_um, config, ref_slide.mpp)
    ref_src = ref_slide.prepare(m_ref, size)
    ref_patch = ref_src.warp(m_ref, size)
    ref_small = SmallGrey(ref_src, m_ref).warp(m_ref, config.size)
    ref = _Reference(m_ref, ref_patch, ref_src.level, ref_small)
    rows = []
    for s_idx, scanner in enumerate(scanners):
        row = {
            **sample.row(),
            "scanner": scanner,
            "scanner_index": s_idx,
            "correction_x_px": 0.0,
            "correction_y_px": 0.0,
            "status": "ok",
            "message": "",
        }
        scan = task.scans.get(scanner)
        if scan is None or not scan.usable:
            row.update(
                status="failed",
                patch_to_slide=None,
                level=-1,
                similarity=np.nan,
                tissue_fraction=np.nan,
                message=scan.message if scan else f"no {scanner} scan for this slide",
            )
        else:
            is_ref = scanner == task.reference
            patch = _scanner_patch(row, ref, None if is_ref else scan, slides[scanner], config)
            arr[sample.index, s_idx] = patch
            # the checksum is of what readers get back: JPEG chunks decode to other pixels
            stored = arr[sample.index, s_idx] if config.compression == "jpeg" else patch
            row["checksum"] = patch_checksum(stored)
        rows.append(row)
    return rows


def _scanner_patch(
    row: dict, ref: _Reference, scan: ScanInput | None, slide: Slide, config: ExtractConfig
) -> np.ndarray:
    """One scanner's patch (``scan`` None: the reference's), its figures added to ``row``."""
    if scan is None:
        m, patch, level, sim, view = ref.patch_to_slide, ref.patch, ref.level, 1.0, ref.small
    else:
        m, patch, level, view = _aligned_patch(row, ref, scan, slide, config)
        sim = patch_similarity(ref.small, view, config.mpp * REFINE_SCALE)
    tissue = patch_tissue_fraction(patch, view, config.mpp)
    if sim < MIN_SIMILARITY and row["status"] == "ok":
        row.update(
            status="warn",
            message=f"patch does not match the reference patch "
            f"(NCC {sim:.2f} < {MIN_SIMILARITY}); check the registration QC picture",
        )
    _warn_if_upsampled(row, m, slide, config.mpp)
    row.update(
        patch_to_slide=geo.to_six(m), level=int(level), similarity=sim, tissue_fraction=tissue
    )
    return patch


def _aligned_patch(
    row: dict, ref: _Reference, scan: ScanInput, slide: Slide, config: ExtractConfig
) -> tuple[geo.Affine, np.ndarray, int, np.ndarray]:
    """A non-reference scan's patch through its registration, refined against the
    reference (its correction, or why it was rejected, noted in ``row``): its
    ``patch_to_slide``, pixels, pyramid level and grey view."""
    size = (config.size, config.size)
    m = geo.compose(scan.registration, ref.patch_to_slide)
    src = slide.prepare(m, size, margin_px=MAX_CORRECTION_UM / config.mpp + 8)
    src_small = SmallGrey(src, m)
    if config.refine:
        m, corr = refine_patch_offset(ref.small, src_small, m, config.size, config.mpp)
        row["correction_x_px"], row["correction_y_px"] = corr.shift_px
        if not corr.accepted:
            row.update(status="warn", message=f"local refinement rejected: {corr.message}")
    return m, src.warp(m, size), src.level, src_small.warp(m, config.size)


def _warn_if_upsampled(row: dict, m: geo.Affine, slide: Slide, out_mpp: float) -> None:
    """`warn` a patch row whose scan is coarser than the output (``m``: patch -> level 0)."""
    _, level0_px_per_out_px = geo.linear_scales(m)
    note = upsample_note(1.0 / level0_px_per_out_px, float(np.mean(slide.mpp)), out_mpp)
    if note:
        row["message"] = f"{row['message']}; {note}" if row["message"] else note
        row["status"] = "warn"
