"""Step 1 of extraction: the regions of one slide, sampled on the tissue every scan shows
(or given in a CSV and checked), in reference um (``docs/contracts.md`` section 3)."""

from __future__ import annotations

import cv2
import numpy as np

from scorpion_build.extract.config import ExtractConfig
from scorpion_build.extract.tasks import SlideTask
from scorpion_build.labels import roi_mask
from scorpion_build.sample import (
    field_too_small,
    joint_tissue_mask,
    region_tissue_fraction,
    sample_regions,
)
from scorpion_build.tissue import FLUORESCENCE_NOTE, is_fluorescence

# Whether a slide is fluorescence is judged on a thumbnail at least this coarse (um/px).
FLUORESCENCE_MPP = 16.0
# The joint tissue mask has this many px per region side: coarse, and enough to place them.
MASK_PX_PER_REGION = 32


def sample_task(task: SlideTask, config: ExtractConfig, given: dict | None) -> list[dict]:
    """Task: regions rows of one slide (``given``: the CSV's regions by slide, or None)."""
    regions = None if given is None else given.get(task.slide_id, [])
    return sample_slide(task, config, regions)


def sample_slide(
    task: SlideTask, config: ExtractConfig, given: list[dict] | None = None
) -> list[dict]:
    """Regions rows for one slide (sampled, or the ``given`` ones checked for tissue).

    A slide whose reference scan is unusable gets one ``failed`` row (region_index -1).
    """
    base = {"slide_id": task.slide_id, "region_um": config.region_um}
    ref_scan = task.scans.get(task.reference)
    if ref_scan is None or not ref_scan.usable:
        why = ref_scan.message if ref_scan else f"no {task.reference} scan"
        message = f"slide skipped: reference {task.reference} unusable ({why})"
        return [{**base, "region_index": -1, "status": "failed", "message": message}]
    cv2.setNumThreads(1)
    mask_mpp = config.region_um / MASK_PX_PER_REGION
    mask, fluorescent = _joint_mask(task, mask_mpp)
    if given is not None:
        return [_given_row(base, i, g, mask, mask_mpp, config) for i, g in enumerate(given)]
    return _sampled_rows(base, task, mask, mask_mpp, fluorescent, config)


def _joint_mask(task: SlideTask, mask_mpp: float) -> tuple[np.ndarray, bool]:
    """The tissue every usable scan shows (within the ROI classes, if any) on the reference
    grid at ``mask_mpp`` um/px, and whether the reference scan is fluorescence."""
    with task.scans[task.reference].open() as ref:
        others = [(task.scans[s].open(), task.scans[s].registration) for s in task.others()]
        try:
            mask = joint_tissue_mask(ref, others, mask_mpp)
            if task.roi:
                mask &= roi_mask(task.annotations, task.roi, ref.dimensions, mask.shape)
            fluorescent = is_fluorescence(ref.thumbnail_at(max(mask_mpp, FLUORESCENCE_MPP)))
        finally:
            for slide, _ in others:
                slide.close()
    return mask, fluorescent


def _given_row(
    base: dict, i: int, given: dict, mask: np.ndarray, mask_mpp: float, config: ExtractConfig
) -> dict:
    """A regions row for a given region, ``warn`` when it holds too little tissue."""
    frac = region_tissue_fraction(mask, mask_mpp, given["x_um"], given["y_um"], given["region_um"])
    ok = frac >= config.min_tissue
    return {
        **base,
        "region_index": i,
        "x_um": given["x_um"],
        "y_um": given["y_um"],
        "region_um": given["region_um"],
        "tissue_fraction": frac,
        "source": "given",
        "status": "ok" if ok else "warn",
        "message": "" if ok else f"given region holds only {frac:.0%} tissue common to all scans",
    }


def _sampled_rows(
    base: dict,
    task: SlideTask,
    mask: np.ndarray,
    mask_mpp: float,
    fluorescent: bool,
    config: ExtractConfig,
) -> list[dict]:
    """Regions rows sampled on ``mask``; fewer regions than asked ``warn`` why (``failed``
    when none fits)."""
    regions = sample_regions(
        mask, mask_mpp, config.region_um, config.regions, config.seed, config.min_tissue
    )
    notes = [FLUORESCENCE_NOTE] if fluorescent else []
    rows = [
        {
            **base,
            "region_index": i,
            "x_um": r.x_um,
            "y_um": r.y_um,
            "tissue_fraction": r.tissue_fraction,
            "source": "sampled",
            "status": "ok",
            "message": "",
        }
        for i, r in enumerate(regions)
    ]
    if len(regions) < config.regions:
        where = " inside the --roi-class annotations" if task.roi else ""
        notes.append(
            f"only {len(regions)} of {config.regions} non-overlapping {config.region_um:g} um "
            f"regions with >= {config.min_tissue:.0%} tissue common to all scans{where}"
            + field_too_small(mask, mask_mpp, config.region_um)
        )
        if not rows:
            return [{**base, "region_index": -1, "status": "failed", "message": "; ".join(notes)}]
    if notes:
        for r in rows:
            r.update(status="warn", message="; ".join(notes))
    return rows
