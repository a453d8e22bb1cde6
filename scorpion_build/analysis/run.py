"""``analyze_build``: every analysis of a build, its figures, and the HTML report.

Each part runs only when its inputs exist (a stage that has not run is named in the
report instead); expensive arrays (channel statistics, features, UMAP) are cached in
``BUILD/analysis/`` keyed by the patches and settings they came from.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import scorpion_build
from scorpion_build import palette
from scorpion_build.analysis import cache
from scorpion_build.analysis import features as feat
from scorpion_build.analysis.data import PatchStore, PatchStoreError, open_patches
from scorpion_build.analysis.embed import umap_embedding
from scorpion_build.analysis.figures import (
    plot_channel_density,
    plot_embedding,
    plot_montage,
    plot_similarity,
    write_pair_image,
)
from scorpion_build.analysis.label_figure import label_section
from scorpion_build.analysis.stats import (
    STAT_NAMES,
    collect_stats,
    paired_deviations,
    stats_table,
    summary_table,
)
from scorpion_build.files import file_sha256
from scorpion_build.manifest import BuildDir
from scorpion_build.report import summary
from scorpion_build.report.check import check_pictures
from scorpion_build.report.html import render_report
from scorpion_build.report.scans import scan_rows
from scorpion_build.report.slidemaps import write_slide_maps

MONTAGE_SAMPLES = 4
MAX_FLAGGED_IMAGES = 60  # every flagged patch is listed; only this many get a picture
UNTRAINED_NOTE = (
    "Features come from an untrained (randomly initialised, seeded) ResNet50, because no "
    "--weights file was given. Such features still separate gross colour and texture shifts "
    "between scanners, but closeness in this space does not mean semantic similarity. Pass "
    "--weights with a local torchvision ResNet50 ImageNet state dict for meaningful features."
)

Log = Callable[[str], None]


def analyze_build(
    build: str | Path,
    features: str = "resnet50",
    weights: str | Path | None = None,
    benchmark_dir: str | Path | None = None,
    device: str = "auto",
    input_px: int = feat.INPUT_PX,
    force: bool = False,
    log: Log | None = None,
) -> Path:
    """Analyse a build and write ``BUILD/report/index.html``.

    Parameters
    ----------
    build : path
        Build directory (docs/contracts.md section 3). Any manifest, and the patch store,
        may be missing.
    features : {"resnet50", "none"}
        Feature-level analysis with a torchvision ResNet50, or skip it.
    weights : path, optional
        Local ResNet50 weights (ImageNet); without them features come from an untrained
        network and the report says so.
    benchmark_dir : path, optional
        Folder holding the benchmark's ``report.json`` and figures; ``BUILD/benchmark`` is
        used when omitted and present.
    device : str
        Torch device for features: ``auto``, ``cpu`` or ``cuda``.
    input_px : int
        Side the patches are area-downsampled to before the network (224 px by default).
    force : bool
        Recompute cached statistics, features and embeddings.
    log : callable, optional
        Receives one-line progress messages (default: this module's logger, INFO).

    Returns
    -------
    Path
        The report's ``index.html``.
    """
    if features not in feat.FEATURE_CHOICES:
        raise ValueError(f"features must be one of {feat.FEATURE_CHOICES}, got {features!r}")
    say = log or logging.getLogger(__name__).info
    bd, bench = _checked_inputs(build, benchmark_dir)
    if features != "none" and weights is not None:
        feat.load_state_dict(Path(weights))
    figures = bd.report / "figures"
    shutil.rmtree(figures, ignore_errors=True)  # no stale pictures from an earlier run
    figures.mkdir(parents=True)
    tables = summary.load_manifests(bd)
    context = _build_context(bd, tables, say)
    store, patch_sections = _patch_sections(bd, tables["patches"], figures, force, say)
    context.update(patch_sections)
    if features == "none":
        context["features"] = {"skipped": True}
    elif store is not None:
        context["features"] = _feature_level(
            bd, store, figures, weights, device, input_px, force, say
        )
    context["benchmark"] = summary.load_benchmark(bench, figures / "benchmark")
    return _render(context, bd.report / "index.html")


def _render(context: dict[str, Any], page: Path) -> Path:
    """Write the HTML page and warn about any picture it names that cannot be shown."""
    page = render_report(context, page)
    for problem in check_pictures(page):
        logging.getLogger(__name__).warning("report picture %s", problem)
    return page


def _patch_sections(
    bd: BuildDir, patches: pd.DataFrame | None, figures: Path, force: bool, say: Log
) -> tuple[PatchStore | None, dict[str, Any]]:
    """The store (None when it cannot be opened) and the report sections drawn from it."""
    sections: dict[str, Any] = {}
    store = None
    try:
        store = open_patches(bd, patches)
    except PatchStoreError as exc:
        sections["store_error"] = str(exc)
    sections["alignment"] = _alignment(patches, store, figures)
    if store is not None:
        say(f"channel statistics of {int(store.valid.sum())} patches")
        sections["input"] = _input_level(bd, store, figures, force)
        sections["montage"] = _montage(store, figures)
        sections["labels"] = label_section(store, figures)
    return store, sections


def _checked_inputs(build: str | Path, benchmark_dir: str | Path | None) -> tuple[BuildDir, Path]:
    """The build and the benchmark folder, checked before minutes go into the analysis."""
    bd = BuildDir.at(build)
    if not bd.root.is_dir():
        raise FileNotFoundError(f"{bd.root} is not a build directory; run `scorpion-build scan`")
    bench = Path(benchmark_dir) if benchmark_dir else bd.root / "benchmark"
    if benchmark_dir and not (bench / "report.json").is_file():
        raise FileNotFoundError(
            f"{bench}/report.json not found; pass --benchmark the folder given to "
            "`scorpion-build benchmark --out`"
        )
    return bd, bench


def _build_context(bd: BuildDir, tables: dict, say: Log) -> dict[str, Any]:
    """The report's manifest-level sections; the patch-level ones start as None."""
    return {
        "title": f"scorpion-build report: {bd.root.resolve().name}",
        "build_path": str(bd.root.resolve()),
        "version": scorpion_build.__version__,
        "overview": summary.overview(tables),
        "stages": summary.stage_counts(tables),
        "problems": [
            p
            for n in ("slides", "registrations", "regions", "annotations")
            for p in summary.problems(tables[n], n)
        ],
        "matrix": summary.slide_matrix(tables),
        "scans": scan_rows(tables["slides"]),
        "palette": {
            "status": {k: palette.hex_colour(v) for k, v in palette.STATUS_RGB.items()},
            "outline": palette.hex_colour(palette.TISSUE_OUTLINE_RGB),
        },
        "slide_maps": _slide_maps(bd, tables, say),
        "registrations": summary.registration_rows(tables["registrations"], bd),
        "store_error": None,
        "alignment": None,
        "input": None,
        "features": None,
        "montage": None,
        "labels": None,
        "benchmark": None,
    }


def _slide_maps(bd: BuildDir, tables: dict, say: Log) -> list[dict[str, Any]]:
    """The slide maps in ``BUILD/qc/slides/``, with paths relative to the report."""
    if tables["regions"] is not None:
        say(f"slide maps of {tables['regions']['slide_id'].nunique()} slides")
    maps = write_slide_maps(bd.root, tables)
    for entry in maps:
        path = entry.pop("path")
        entry["src"] = summary.report_src(path, bd) if path else None
    return maps


def _rel(path: Path, report: Path) -> str:
    return path.relative_to(report).as_posix()


def _alignment(
    patches: pd.DataFrame | None, store: PatchStore | None, figures: Path
) -> dict[str, Any] | None:
    if patches is None:
        return None
    reference = store.reference if store is not None else _reference_of(patches)
    scanners = store.scanners if store is not None else sorted(patches["scanner"].unique())
    flagged = summary.flagged_patches(patches)
    rows = []
    pairs = figures / "flagged"
    for k, (_, r) in enumerate(flagged.iterrows()):
        row = {
            "sample_id": r["sample_id"],
            "scanner": r["scanner"],
            "status": r["status"],
            "message": summary.text(r["message"]),
            "similarity": summary.clean_value(r.get("similarity")),
            "image": None,
        }
        n, s = int(r["index"]), int(r.get("scanner_index", -1))
        if (
            store is not None
            and k < MAX_FLAGGED_IMAGES
            and 0 <= n < store.n_samples
            and 0 <= s < len(store.scanners)
        ):
            pairs.mkdir(exist_ok=True)
            out = write_pair_image(store, n, s, pairs / f"{n:05d}_{s}.png")
            row["image"] = _rel(out, figures.parent)
        rows.append(row)
    figure = None
    if "similarity" in patches and np.isfinite(patches["similarity"].astype(float)).any():
        figure = _rel(
            plot_similarity(patches, scanners, reference, figures / "alignment.png"), figures.parent
        )
    return {
        "table": summary.similarity_table(patches, reference),
        "figure": figure,
        "flagged": rows,
        "images_shown": min(len(rows), MAX_FLAGGED_IMAGES) if store is not None else 0,
        "reference": reference,
    }


def _reference_of(patches: pd.DataFrame) -> str | None:
    # the reference patch is compared with itself, so its similarity is exactly 1
    ones = patches[patches["similarity"] == 1.0]["scanner"]
    return ones.mode().iloc[0] if len(ones) else None


def _cached(
    bd: BuildDir, name: str, key: str, force: bool, compute: Callable[[], np.ndarray], **info: Any
) -> tuple[np.ndarray, bool]:
    """(array, came_from_cache)."""
    directory = bd.root / "analysis"
    hit = None if force else cache.load(directory, name, key)
    if hit is not None:
        return hit, True
    array = compute()
    cache.save(directory, name, key, array, **info)
    return array, False


def _input_level(bd: BuildDir, store: PatchStore, figures: Path, force: bool) -> dict[str, Any]:
    key = cache.make_key(what="channel_stats", patches=cache.patches_digest(bd))
    stats, _ = _cached(bd, "channel_stats", key, force, lambda: collect_stats(store))
    paired = paired_deviations(stats, store.ref_index)
    out_dir = bd.root / "analysis"
    stats_table(stats, store).to_csv(out_dir / "channel_stats.csv", index=False)
    unpaired_rows = summary_table(stats, store.scanners).to_dict("records")
    paired_rows = summary_table(paired, store.scanners).to_dict("records")
    figure = plot_channel_density(
        stats, paired, store.scanners, store.reference, figures / "channel_density.png"
    )
    return {
        "figure": _rel(figure, figures.parent),
        "unpaired": unpaired_rows,
        "paired": paired_rows,
        "names": STAT_NAMES,
        "reference": store.reference,
        "csv": "../analysis/channel_stats.csv",
    }


def _feature_level(
    bd: BuildDir,
    store: PatchStore,
    figures: Path,
    weights: str | Path | None,
    device: str,
    input_px: int,
    force: bool,
    say: Log,
) -> dict[str, Any]:
    weights_id = None
    if weights is not None:
        weights = Path(weights)
        weights_id = {"name": weights.name, "sha256": file_sha256(weights)}
    key = cache.make_key(
        what="features",
        model="resnet50",
        weights=weights_id,
        input_px=input_px,
        patches=cache.patches_digest(bd),
    )

    def compute() -> np.ndarray:
        say(f"ResNet50 features of {int(store.valid.sum())} patches at {input_px} px")
        model = feat.build_resnet50(weights)
        return feat.extract_features(store, model, input_px=input_px, device=device)

    features, features_cached = _cached(
        bd, "features", key, force, compute, weights=weights_id, input_px=input_px
    )
    emb_key = cache.make_key(what="umap", features=key, seed=0)

    def embed() -> np.ndarray:
        say(f"UMAP of {int(np.isfinite(features).all(-1).sum())} feature vectors")
        return umap_embedding(features)

    emb, emb_cached = _cached(bd, "umap", emb_key, force, embed)
    distance = feat.cosine_distance_to_reference(features, store.ref_index)
    trained = weights is not None
    title = "ResNet50 features, " + (
        f"weights {weights.name}" if trained else "UNTRAINED network (random init)"
    )
    return {
        "skipped": False,
        "trained": trained,
        "weights": weights.name if trained else None,
        "note": None if trained else UNTRAINED_NOTE,
        "figure": _umap_figure(emb, store, figures, title),
        "cached": features_cached and emb_cached,
        "input_px": input_px,
        "distance": summary_table(distance[..., None], store.scanners, ["cosine"]).to_dict(
            "records"
        ),
        "reference": store.reference,
    }


def _umap_figure(emb: np.ndarray, store: PatchStore, figures: Path, title: str) -> str | None:
    """The UMAP plot's path relative to the report, or None when no patch was embedded."""
    if not np.isfinite(emb).any():
        return None
    paired = paired_deviations(emb, store.ref_index)
    plot = plot_embedding(emb, paired, store.scanners, store.reference, figures / "umap.png", title)
    return _rel(plot, figures.parent)


def _montage(store: PatchStore, figures: Path) -> dict[str, Any] | None:
    complete = np.flatnonzero(store.valid.all(axis=1))
    pool = complete if len(complete) else np.flatnonzero(store.valid.any(axis=1))
    if not len(pool):
        return None
    # evenly spread over the build (deterministic), not the first slide's regions only
    picks = pool[
        np.unique(
            np.linspace(0, len(pool) - 1, min(MONTAGE_SAMPLES, len(pool))).round().astype(int)
        )
    ]
    path = plot_montage(store, [int(n) for n in picks], figures / "montage.png")
    return {
        "figure": _rel(path, figures.parent),
        "samples": [store.sample_ids[int(n)] for n in picks],
    }
