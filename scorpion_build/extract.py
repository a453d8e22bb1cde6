"""Region -> one aligned patch per scanner -> ``patches.zarr``, one Dask task per slide.

Each task opens its own slides, reads every patch once at the output resolution, refines
each non-reference patch locally against the reference patch, writes its own Zarr chunks,
and returns manifest rows. Finished samples are marked in ``BUILD/.state/extract`` so an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import zarr

from scorpion_build import faults
from scorpion_build import geometry as geo
from scorpion_build.align import Correction, block_mean, estimate_correction, grey, similarity
from scorpion_build.annotations import AnnotationSet
from scorpion_build.integrity import chunk_problem, open_patch_array, patch_checksum
from scorpion_build.labels import (
    LABELS_ARRAY,
    attach_annotations,
    create_labels_array,
    roi_mask,
    write_sample_labels,
)
from scorpion_build.lock import build_lock
from scorpion_build.manifest import (
    BuildDir,
    order_columns,
    read_json,
    safe_name,
    write_json_atomic,
    write_parquet_atomic,
)
from scorpion_build.mpp import upsample_note
from scorpion_build.options import (
    OptionError,
    check_choice,
    check_number,
    check_scheduler,
    check_workers,
)
from scorpion_build.parallel import cached, run_tasks
from scorpion_build.sample import (
    MIN_TISSUE_FRACTION,
    field_too_small,
    joint_tissue_mask,
    region_tissue_fraction,
    sample_regions,
)
from scorpion_build.scan import file_changed
from scorpion_build.slide import Resampler, Slide
from scorpion_build.staging import swap_in
from scorpion_build.tissue import (
    FLUORESCENCE_NOTE,
    fluorescence_mask,
    is_fluorescence,
    od_tissue_mask,
)
from scorpion_build.zarr_jpeg import JpegCodec

# A patch whose stain-robust NCC to the reference patch stays below this after refinement
# is flagged `warn`: it is probably misregistered, out of focus, or missing tissue.
MIN_SIMILARITY = 0.5
# Local refinement never moves a patch further than this (um): larger residuals mean the
# global registration is wrong, which refinement must not paper over.
MAX_CORRECTION_UM = 30.0


# Local refinement is estimated at half the patch resolution: four times less work, and the
# sub-pixel phase-correlation peak still resolves ~0.1 um at the default 0.78 um/px.
REFINE_SCALE = 2
# The manifest columns extracted patches depend on (see _inputs_key).
INPUT_COLUMNS = {
    "slides": (
        "slide_id",
        "scanner",
        "path",
        "mpp_x",
        "mpp_y",
        "file_size",
        "file_mtime_ns",
        "status",
    ),
    "registrations": ("slide_id", "scanner", "reference", "matrix", "status"),
}
# Tissue fraction of a patch is judged at this resolution (um/px): coarse is enough.
TISSUE_MPP = 4.0
# Whether a slide is fluorescence is judged on a thumbnail at least this coarse (um/px).
FLUORESCENCE_MPP = 16.0
COMPRESSIONS = ("zstd", "jpeg", "none")
# Bump when what a finished store holds changes (2: per-patch checksums in the manifest).
STORE_VERSION = 2


def _power_of_two_at_most(x: float) -> int:
    """Largest power of two <= ``x`` (1 below 2): OpenCV's block mean is fastest at those."""
    return 2 ** max(0, int(np.log2(x)))


def patch_tissue_fraction(patch: np.ndarray, grey_view: np.ndarray, mpp: float) -> float:
    """Tissue fraction of an RGB ``patch`` at ``mpp`` um/px, judged on its optical-density
    view (``REFINE_SCALE`` times coarser), or on its pixels when it is fluorescence."""
    if is_fluorescence(patch):  # optical density is meaningless on emitted light
        f = _power_of_two_at_most(TISSUE_MPP / mpp)
        return float(fluorescence_mask(block_mean(patch, f), mpp * f).mean())
    view_mpp = mpp * REFINE_SCALE
    f = _power_of_two_at_most(TISSUE_MPP / view_mpp)
    return float(od_tissue_mask(block_mean(grey_view, f), view_mpp * f).mean())


@dataclass(frozen=True)
class ExtractConfig:
    regions: int = 10
    region_um: float = 800.0
    size: int = 1024
    seed: int = 0
    min_tissue: float = MIN_TISSUE_FRACTION
    refine: bool = True
    compression: str = "zstd"  # "zstd" (lossless Blosc/Zstd), "jpeg" (lossy, q95) or "none"

    def __post_init__(self) -> None:
        """Every value checked before anything is opened (raises ``OptionError``)."""
        check_number("regions", self.regions, minimum=1, integer=True)
        check_number("region_um", self.region_um, above=0)
        check_number("size", self.size, minimum=16, maximum=16384, integer=True)
        check_number("seed", self.seed, minimum=0, integer=True)
        check_number("min_tissue", self.min_tissue, minimum=0, maximum=1)
        if not isinstance(self.refine, bool):
            raise OptionError("refine", self.refine, "must be true or false")
        check_choice("compression", self.compression, COMPRESSIONS)

    @property
    def mpp(self) -> float:
        return self.region_um / self.size

    def key(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


# -- inputs -----------------------------------------------------------------------------------
def slide_tasks(build: BuildDir) -> tuple[list[dict], list[str], str]:
    """One task description per slide from the slides and registrations manifests."""
    slides = build.read("slides")
    regs = build.read("registrations")
    refs = slides[slides["is_reference"]]
    if refs.empty:
        raise ValueError(f"{build.manifest('slides')}: no reference scans; re-run scan")
    reference = str(refs["scanner"].iloc[0])
    scanners = [reference] + sorted(s for s in slides["scanner"].unique() if s != reference)
    reg_by = {(r.slide_id, r.scanner): r for r in regs.itertuples()}
    tasks = []
    for slide_id, group in slides.groupby("slide_id", sort=True):
        scans = {}
        for row in group.itertuples():
            reg = reg_by.get((slide_id, row.scanner))
            status, message = "ok", ""
            changed = file_changed(row._asdict())
            if row.status == "failed":
                status, message = "failed", f"scan failed: {row.message}"
            elif changed:
                status, message = "failed", changed
            elif reg is None:
                status, message = "failed", "not registered; run scorpion-build register"
            elif reg.status == "failed":
                status, message = "failed", f"registration failed: {reg.message}"
            scans[row.scanner] = {
                "path": row.path,
                "reader": row.reader,
                "mpp": (float(row.mpp_x), float(row.mpp_y)),
                "matrix": list(reg.matrix) if reg is not None else geo.to_six(geo.identity()),
                "status": status,
                "message": message,
            }
        tasks.append({"slide_id": slide_id, "reference": reference, "scans": scans})
    return tasks, scanners, reference


def _open(scan: dict) -> Slide:
    return Slide(scan["path"], reader=scan["reader"], mpp=tuple(scan["mpp"]))


def _usable(task: dict) -> list[str]:
    return [
        s for s, v in task["scans"].items() if v["status"] != "failed" and s != task["reference"]
    ]


# -- sampling ---------------------------------------------------------------------------------
def sample_slide(task: dict, config: ExtractConfig, given: list[dict] | None = None) -> list[dict]:
    """Regions rows for one slide (sampled, or the ``given`` ones checked for tissue)."""
    slide_id, ref_name = task["slide_id"], task["reference"]
    ref_scan = task["scans"].get(ref_name)
    base = {"slide_id": slide_id, "region_um": config.region_um}
    if ref_scan is None or ref_scan["status"] == "failed":
        why = ref_scan["message"] if ref_scan else f"no {ref_name} scan"
        return [
            {
                **base,
                "region_index": -1,
                "status": "failed",
                "message": f"slide skipped: reference {ref_name} unusable ({why})",
            }
        ]
    cv2.setNumThreads(1)
    mask_mpp = config.region_um / 32
    with _open(ref_scan) as ref:
        others = [
            (_open(task["scans"][s]), geo.from_six(task["scans"][s]["matrix"]))
            for s in _usable(task)
        ]
        try:
            mask = joint_tissue_mask(ref, others, mask_mpp)
            if task.get("roi"):
                mask &= roi_mask(task["annotations"], task["roi"], ref.dimensions, mask.shape)
            fluorescent = is_fluorescence(ref.thumbnail_at(max(mask_mpp, FLUORESCENCE_MPP)))
        finally:
            for slide, _ in others:
                slide.close()
    if given is not None:
        rows = []
        for i, g in enumerate(given):
            frac = region_tissue_fraction(mask, mask_mpp, g["x_um"], g["y_um"], g["region_um"])
            ok = frac >= config.min_tissue
            rows.append(
                {
                    **base,
                    "region_index": i,
                    "x_um": g["x_um"],
                    "y_um": g["y_um"],
                    "region_um": g["region_um"],
                    "tissue_fraction": frac,
                    "source": "given",
                    "status": "ok" if ok else "warn",
                    "message": ""
                    if ok
                    else f"given region holds only {frac:.0%} tissue common to all scans",
                }
            )
        return rows
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
        where = " inside the --roi-class annotations" if task.get("roi") else ""
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


# -- extraction -------------------------------------------------------------------------------
def region_to_reference(
    x_um: float, y_um: float, config: ExtractConfig, ref_mpp: tuple[float, float]
) -> geo.Affine:
    """Output-patch px -> reference level-0 px for a region whose top-left is (x_um, y_um)."""
    mx, my = ref_mpp
    return geo.compose(
        geo.translation(x_um / mx, y_um / my), geo.scaling(config.mpp / mx, config.mpp / my)
    )


class SmallGrey:
    """Stain-robust grey views of a :class:`Resampler`'s pixels at about 1/:data:`REFINE_SCALE`
    of the patch resolution: the region is block-averaged by a whole factor and turned into
    optical density once; each refinement step then only warps one small float image, which
    absorbs the fractional rest of the scale."""

    def __init__(self, source: Resampler, patch_to_slide: geo.Affine) -> None:
        _, region_px = geo.linear_scales(geo.compose(source.level0_to_region, patch_to_slide))
        k = _power_of_two_at_most(REFINE_SCALE * region_px)  # region px per small px
        self.grey = grey(block_mean(source.region, k))
        self.level0_to_small = geo.compose(geo.scaling(1.0 / k), source.level0_to_region)

    def warp(self, patch_to_slide: geo.Affine, size: int) -> np.ndarray:
        m = geo.compose(self.level0_to_small, patch_to_slide, geo.scaling(REFINE_SCALE))
        n = size // REFINE_SCALE
        return geo.warp_to(self.grey, m, (n, n))


def refine(
    ref_small: np.ndarray, source: SmallGrey, m: geo.Affine, config: ExtractConfig
) -> tuple[geo.Affine, Correction]:
    """Shift, then block affine, estimated at half resolution against the reference patch.

    Returns the refined ``patch_to_slide`` and the correction (in output px).
    """
    to_small = geo.scaling(1.0 / REFINE_SCALE)
    max_px = MAX_CORRECTION_UM / (config.mpp * REFINE_SCALE)

    def estimate(m_now: geo.Affine, stage: str) -> Correction:
        return estimate_correction(ref_small, source.warp(m_now, config.size), max_px, stage=stage)

    def to_output(c: geo.Affine) -> geo.Affine:  # small-px correction -> output-px correction
        return geo.compose(geo.invert(to_small), c, to_small)

    shift = estimate(m, "shift")
    if not shift.accepted:
        return m, shift
    total = to_output(shift.affine)
    fine = estimate(geo.compose(m, total), "affine")
    if fine.accepted:
        total = geo.compose(total, to_output(fine.affine))
    centre = geo.apply(total, [[config.size / 2, config.size / 2]])[0] - config.size / 2
    result = Correction(
        total,
        (float(centre[0]), float(centre[1])),
        shift.response,
        fine.blocks_used,
        True,
        "" if fine.accepted else fine.message,
    )
    return geo.compose(m, total), result


def extract_sample(
    item: dict,
    config: ExtractConfig,
    zarr_path: str,
    scanners: list[str],
    state_dir: str,
    store_key: str = "",
) -> list[dict]:
    """Task: write every scanner's patch of one sample; return its patch rows.

    ``item`` holds the slide's task (``slide_tasks``) and the sample (a regions row with its
    store ``index``). The slides and the store stay open in the process for its next
    samples (:func:`scorpion_build.parallel.cached`; ``store_key`` tells a new store at the
    same path from an old one). A finished sample is marked in ``state_dir`` and trusted on a
    re-run only if every patch it wrote still matches its checksum.
    """
    cv2.setNumThreads(1)
    task, sample = item["task"], item["sample"]
    # Every patch chunk is written: skipping zarr's "all fill value?" test saves ~30 ms/patch
    group = cached(("store", zarr_path, store_key), lambda: zarr.open_group(zarr_path, mode="r+"))
    arr = cached(
        ("patches", zarr_path, store_key),
        lambda: group["patches"].with_config({"write_empty_chunks": True}),
    )
    marker = Path(state_dir) / f"{safe_name(sample['sample_id'])}.json"
    done = _trusted_marker(marker, arr)
    if done is not None:  # finished by an earlier run, and its chunks check out
        return done
    scans = task["scans"]
    slides = {
        s: cached(("slide", v["path"], v["reader"], tuple(v["mpp"])), lambda v=v: _open(v))
        for s, v in scans.items()
        if v["status"] != "failed"
    }
    rows = _extract_sample(sample, scans, slides, task["reference"], scanners, config, arr)
    if task.get("annotations") is not None:  # before the marker: resume skips both
        labels = cached(
            ("labels", zarr_path, store_key),
            lambda: group[LABELS_ARRAY].with_config({"write_empty_chunks": True}),
        )
        write_sample_labels(labels, rows, task["annotations"], config.size)
    write_json_atomic(rows, marker)
    faults.reached("extract-marker")
    return rows


def _trusted_marker(marker: Path, arr: zarr.Array) -> list[dict] | None:
    """A finished sample's rows, if its marker is readable and every patch it wrote is in
    the store with its checksum; None means extract (again)."""
    rows = read_json(marker)
    if not isinstance(rows, list):
        return None
    for row in rows:
        if row.get("status") != "failed" and (
            not row.get("checksum")
            or chunk_problem(arr, row["index"], row["scanner_index"], row["checksum"])
        ):
            return None
    return rows


def _extract_sample(sample, scans, slides, ref_name, scanners, config, arr) -> list[dict]:  # noqa: ANN001
    size = (config.size, config.size)
    ref_slide = slides[ref_name]
    m_ref = region_to_reference(sample["x_um"], sample["y_um"], config, ref_slide.mpp)
    margin = MAX_CORRECTION_UM / config.mpp + 8
    ref_src = ref_slide.prepare(m_ref, size)
    ref_patch = ref_src.warp(m_ref, size)
    ref_small = SmallGrey(ref_src, m_ref).warp(m_ref, config.size)
    rows = []
    for s_idx, scanner in enumerate(scanners):
        row = {
            "index": sample["index"],
            "sample_id": sample["sample_id"],
            "slide_id": sample["slide_id"],
            "region_index": sample["region_index"],
            "scanner": scanner,
            "scanner_index": s_idx,
            "correction_x_px": 0.0,
            "correction_y_px": 0.0,
            "status": "ok",
            "message": "",
        }
        scan = scans.get(scanner)
        if scan is None or scan["status"] == "failed":
            row.update(
                status="failed",
                patch_to_slide=None,
                level=-1,
                similarity=np.nan,
                tissue_fraction=np.nan,
                message=scan["message"] if scan else f"no {scanner} scan for this slide",
            )
            rows.append(row)
            continue
        if scanner == ref_name:
            m, patch, level, sim, view = m_ref, ref_patch, ref_src.level, 1.0, ref_small
        else:
            m = geo.compose(geo.from_six(scan["matrix"]), m_ref)
            src = slides[scanner].prepare(m, size, margin_px=margin)
            src_small = SmallGrey(src, m)
            level = src.level
            if config.refine:
                m, corr = refine(ref_small, src_small, m, config)
                row["correction_x_px"], row["correction_y_px"] = corr.shift_px
                if not corr.accepted:
                    row.update(status="warn", message=f"local refinement rejected: {corr.message}")
            patch = src.warp(m, size)
            view = src_small.warp(m, config.size)
            sim = similarity(ref_small, view, config.mpp * REFINE_SCALE)
        tissue = patch_tissue_fraction(patch, view, config.mpp)
        if sim < MIN_SIMILARITY and row["status"] == "ok":
            row.update(
                status="warn",
                message=f"patch does not match the reference patch "
                f"(NCC {sim:.2f} < {MIN_SIMILARITY}); check the registration QC picture",
            )
        _warn_if_upsampled(row, m, slides[scanner], config.mpp)
        row.update(
            patch_to_slide=geo.to_six(m), level=int(level), similarity=sim, tissue_fraction=tissue
        )
        arr[sample["index"], s_idx] = patch
        # the checksum is of what readers get back: JPEG chunks decode to other pixels
        stored = arr[sample["index"], s_idx] if config.compression == "jpeg" else patch
        row["checksum"] = patch_checksum(stored)
        rows.append(row)
    return rows


def _warn_if_upsampled(row: dict, m: geo.Affine, slide: Slide, out_mpp: float) -> None:
    """`warn` a patch row whose scan is coarser than the output (``m``: patch -> level 0)."""
    _, level0_px_per_out_px = geo.linear_scales(m)
    note = upsample_note(1.0 / level0_px_per_out_px, float(np.mean(slide.mpp)), out_mpp)
    if note:
        row["message"] = f"{row['message']}; {note}" if row["message"] else note
        row["status"] = "warn"


# -- build level ------------------------------------------------------------------------------
def _create_store(
    path: Path, n: int, scanners: list[str], reference: str, config: ExtractConfig
) -> None:
    group = zarr.open_group(str(path), mode="w")
    serializer, compressors = "auto", None
    if config.compression == "zstd":
        compressors = [zarr.codecs.BloscCodec(cname="zstd", clevel=1, shuffle="noshuffle")]
    elif config.compression == "jpeg":
        serializer = JpegCodec(quality=95)
    group.create_array(
        "patches",
        shape=(n, len(scanners), config.size, config.size, 3),
        chunks=(1, 1, config.size, config.size, 3),
        dtype="uint8",
        fill_value=0,
        serializer=serializer,
        compressors=compressors,
    )
    group.attrs.update(
        {
            "scanners": scanners,
            "reference": reference,
            "mpp": config.mpp,
            "region_um": config.region_um,
            "size": config.size,
            "config_key": config.key(),
        }
    )


def read_given_regions(csv: Path, region_um: float) -> dict[str, list[dict]]:
    table = pd.read_csv(csv, dtype={"slide_id": str})
    missing = {"slide_id", "x_um", "y_um"} - set(table.columns)
    if missing:
        raise ValueError(
            f"{csv}: missing column(s) {', '.join(sorted(missing))}; "
            "--regions-from needs slide_id,x_um,y_um (optional region_um)"
        )
    if "region_um" not in table.columns:
        table["region_um"] = region_um
    for col in ("x_um", "y_um", "region_um"):
        values = pd.to_numeric(table[col], errors="coerce")
        bad = ~np.isfinite(values) | ((values <= 0) if col == "region_um" else False)
        if bad.any():
            lines = ", ".join(str(i + 2) for i in table.index[bad][:5])  # +1 header, +1 base
            raise ValueError(
                f"{csv}: '{col}' is not a {'positive ' if col == 'region_um' else ''}number "
                f"on line(s) {lines}; fix or delete those rows"
            )
        table[col] = values
    return {
        sid: g[["x_um", "y_um", "region_um"]].to_dict("records")
        for sid, g in table.groupby("slide_id")
    }


def extract_build(
    build_dir: str | Path,
    config: ExtractConfig,
    workers: int | None = None,
    scheduler: str | None = None,
    regions_from: Path | None = None,
    force: bool = False,
    progress: bool = True,
    annotations: AnnotationSet | None = None,
    roi_classes: tuple[str, ...] = (),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Sample regions and extract aligned patches for every slide of a registered build.

    ``annotations`` (:func:`scorpion_build.annotations.load_build_annotations`) adds the
    ``labels`` array; ``roi_classes`` samples only inside those annotated classes.

    A finished store is never deleted before its successor is complete: new settings or
    inputs (or ``force``) build a new store in ``BUILD/.state/extract-new`` that replaces
    ``BUILD/patches.zarr`` only once every sample is written (``docs/contracts.md`` 3-4).
    A re-run with unchanged inputs checks every finished patch against its checksum and
    re-extracts the ones that are missing or damaged.
    """
    check_workers(workers)
    check_scheduler(scheduler)
    build = BuildDir.at(build_dir)
    with build_lock(build.root):
        build.refuse_links(build.zarr, build.state / "extract", build.state / "extract-new")
        tasks, scanners, reference = slide_tasks(build)
        labels_key = attach_annotations(tasks, annotations, roi_classes, regions_from)
        given = read_given_regions(regions_from, config.region_um) if regions_from else None
        key = _inputs_key(config, build, regions_from, tasks, labels_key)
        final_state, staging = build.state / "extract", build.state / "extract-new"
        in_place = not force and _stored_key(final_state) == key and _store_opens(build)
        if in_place:
            state, store = final_state, build.zarr
        else:
            if force or _stored_key(staging) != key:
                shutil.rmtree(staging, ignore_errors=True)
            state, store = staging, staging / "patches.zarr"
        regions = _sample_all(tasks, state, config, given, workers, scheduler, progress)
        samples = regions[(regions["status"] != "failed") & (regions["region_index"] >= 0)].copy()
        samples["index"] = np.arange(len(samples), dtype=np.int64)
        if not store.exists():
            _create_store(store, len(samples), scanners, reference, config)
            if annotations is not None:
                group = zarr.open_group(str(store), mode="r+")
                create_labels_array(group, samples, len(scanners), config.size, annotations)
            given_path = str(Path(regions_from).resolve()) if regions_from else None
            meta = {
                "key": key,
                "config": asdict(config),
                "regions_from": given_path,
                "labels": annotations is not None,
            }
            write_json_atomic(meta, state / "config.json")
        patches = _extract_all(
            tasks, samples, scanners, config, store, state, workers, scheduler, progress
        )
        if not in_place:
            swap_in({staging / "patches.zarr": build.zarr, staging: final_state}, build.state)
        if annotations is not None:
            build.write("annotations", order_columns(pd.DataFrame(annotations.rows), "annotations"))
        else:  # a build extracted without annotations has no labels to report on
            build.manifest("annotations").unlink(missing_ok=True)
        build.write("regions", regions)
        build.write("patches", patches)
    return regions, patches


def _store_opens(build: BuildDir) -> bool:
    """The finished store's metadata is intact (else a new store is built beside it)."""
    try:
        open_patch_array(build.zarr, build.root)
    except (OSError, ValueError):
        return False
    return True


def _stored_key(state: Path) -> str | None:
    meta = read_json(state / "config.json")
    return meta.get("key") if isinstance(meta, dict) else None


def _sample_all(tasks, state, config, given, workers, scheduler, progress) -> pd.DataFrame:  # noqa: ANN001
    """The regions table: sampled once per store, then reused from ``state``."""
    regions_file = state / "regions.parquet"
    if regions_file.is_file():
        try:
            return pd.read_parquet(regions_file)
        except Exception:  # a damaged checkpoint is recomputed (sampling is seeded)
            regions_file.unlink()
    rows = []
    for res in run_tasks(
        _sample_task,
        tasks,
        workers=workers,
        scheduler=scheduler,
        desc="sample",
        progress=progress,
        config=config,
        given=given,
    ):
        rows += _task_rows(res, "region")
    regions = pd.DataFrame(rows).sort_values(["slide_id", "region_index"], kind="stable")
    regions = regions.reset_index(drop=True)  # the same table whatever order tasks end in
    regions["region_index"] = regions["region_index"].astype("int64")
    regions["sample_id"] = [
        f"{s}_r{i:02d}" if i >= 0 else ""
        for s, i in zip(regions["slide_id"], regions["region_index"], strict=True)
    ]
    regions = order_columns(regions, "regions")
    write_parquet_atomic(regions, regions_file)
    return regions


def _extract_all(tasks, samples, scanners, config, store, state, workers, scheduler, progress):  # noqa: ANN001, ANN202
    """Patch rows of every sample, written into ``store`` (resuming from ``state``)."""
    task_of = {t["slide_id"]: t for t in tasks}
    sample_state = state / "samples"
    sample_state.mkdir(parents=True, exist_ok=True)
    # one task per sample, in slide order: a few slides still fill every worker
    work = [{"task": task_of[s["slide_id"]], "sample": s} for s in samples.to_dict("records")]
    rows = []
    for res in run_tasks(
        extract_sample,
        work,
        workers=workers,
        scheduler=scheduler,
        desc="extract",
        progress=progress,
        config=config,
        zarr_path=str(store),
        scanners=scanners,
        state_dir=str(sample_state),
        store_key=_stored_key(state) or "",
    ):
        rows += _task_rows(res, "patch", scanners)
    # no sample at all (no region fitted anywhere) still gives a manifest with its columns
    patches = order_columns(pd.DataFrame(rows), "patches")
    patches = patches.sort_values(["index", "scanner_index"], kind="stable")
    return patches.reset_index(drop=True)  # the same table whatever order tasks end in


def _inputs_key(
    config: ExtractConfig,
    build: BuildDir,
    regions_from: Path | None,
    tasks: list[dict],
    labels_key: str = "",
) -> str:
    """Changes whenever what the patches depend on changes: the config, each scan's status
    and mpp, each registration's status and matrix, the given regions, the annotations.
    Bookkeeping columns (timings, QC paths) are left out, so re-running an unchanged
    registration keeps the finished patches. The status of every scan as this run sees it
    (a slide file changed since scan fails) is part of it too."""
    h = hashlib.sha1(f"{STORE_VERSION}:{config.key()}".encode())
    if labels_key:
        h.update(labels_key.encode())
    for name, columns in INPUT_COLUMNS.items():
        table = build.read(name)
        table = table[[c for c in columns if c in table.columns]]
        table = table.sort_values(["slide_id", "scanner"])
        h.update(table.to_json(orient="values", double_precision=15).encode())
    seen = [(t["slide_id"], s, v["status"]) for t in tasks for s, v in sorted(t["scans"].items())]
    h.update(json.dumps(seen).encode())
    if regions_from is not None:
        h.update(Path(regions_from).read_bytes())
    return h.hexdigest()[:16]


def _sample_task(task: dict, config: ExtractConfig, given: dict | None) -> list[dict]:
    regions = None if given is None else given.get(task["slide_id"], [])
    return sample_slide(task, config, regions)


def _task_rows(res, kind: str, scanners: list[str] | None = None) -> list[dict]:  # noqa: ANN001
    """A task's rows, or failed rows naming the error when the task itself crashed."""
    if res.error is None:
        return res.value
    message = f"task crashed: {res.error.__class__.__name__}: {res.error}"
    if kind == "region":
        slide_id = res.item["slide_id"]
        return [{"slide_id": slide_id, "region_index": -1, "status": "failed", "message": message}]
    s = res.item["sample"]
    return [
        {
            "index": s["index"],
            "sample_id": s["sample_id"],
            "slide_id": s["slide_id"],
            "region_index": s["region_index"],
            "scanner": sc,
            "scanner_index": i,
            "status": "failed",
            "message": message,
        }
        for i, sc in enumerate(scanners or [])
    ]
