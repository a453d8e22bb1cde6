"""What lets an interrupted or repeated extraction keep finished work, by the build's one
resume rule (:mod:`scorpion_build.resume`, ``docs/contracts.md`` section 3).

A store is reused while the fingerprint of its inputs (:func:`inputs_key`) matches the one
recorded in its state folder (``BUILD/.state/extract``) and the store opens; otherwise a new
store grows beside it and replaces it only once complete (:func:`choose_target`). Within a
store, a sample is skipped when its marker was recorded for the same store and every patch
it lists still matches its checksum (:func:`trusted_marker`).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import zarr

from scorpion_build import resume
from scorpion_build.extract.config import ExtractConfig
from scorpion_build.extract.store import store_opens
from scorpion_build.extract.tasks import SlideTask
from scorpion_build.files import file_sha256
from scorpion_build.integrity import chunk_problem
from scorpion_build.manifest import BuildDir, read_json, safe_name
from scorpion_build.staging import swap_in

# Bump when what a finished store holds changes (2: per-patch checksums in the manifest).
STORE_VERSION = 2
# The manifest columns extracted patches depend on (see inputs_key).
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
STORE_RECORD = "config.json"


def extract_states(build: BuildDir) -> tuple[Path, Path]:
    """The finished store's state folder and the staging folder a new store grows in."""
    return build.state / "extract", build.state / "extract-new"


@dataclass(frozen=True)
class Target:
    """Where a run writes: a ``store`` and the ``state`` folder recording it; ``staged``
    when it is a new store that replaces the finished one once complete."""

    store: Path
    state: Path
    staged: bool

    def finish(self, build: BuildDir) -> None:
        """Swap a complete staged store (and its state) in for the finished one."""
        if self.staged:
            final_state = extract_states(build)[0]
            swap_in({self.store: build.zarr, self.state: final_state}, build.state)


def choose_target(build: BuildDir, key: str, force: bool) -> Target:
    """The finished store itself when its recorded inputs key is ``key`` and it opens
    (unless ``force``); else a staging store, kept from an interrupted run with the same
    key (it resumes), started afresh otherwise."""
    final_state, staging = extract_states(build)
    record = None if force else resume.load(final_state / STORE_RECORD, key)
    if record is not None and store_opens(build):
        return Target(build.zarr, final_state, staged=False)
    if force or resume.load(staging / STORE_RECORD, key) is None:
        shutil.rmtree(staging, ignore_errors=True)
    return Target(staging / "patches.zarr", staging, staged=True)


def inputs_key(
    config: ExtractConfig,
    build: BuildDir,
    regions_from: Path | None,
    tasks: Sequence[SlideTask],
    labels_key: str = "",
) -> str:
    """Changes whenever what the patches depend on changes: the config, each scan's status
    and mpp, each registration's status and matrix, the given regions, the annotations.
    Bookkeeping columns (timings, QC paths) are left out, so re-running an unchanged
    registration keeps the finished patches. The status of every scan as this run sees it
    (a slide file changed since scan fails) is part of it too."""
    tables = []
    for name, columns in INPUT_COLUMNS.items():
        table = build.read(name)
        table = table[[c for c in columns if c in table.columns]]
        table = table.sort_values(["slide_id", "scanner"])
        tables.append(table.to_json(orient="values", double_precision=15))
    seen = [(t.slide_id, s, t.scans[s].status) for t in tasks for s in sorted(t.scans)]
    given = file_sha256(regions_from) if regions_from is not None else None
    return resume.fingerprint(STORE_VERSION, config.key(), labels_key, tables, seen, given)


def record_store(
    state: Path, key: str, config: ExtractConfig, regions_from: Path | None, labels: bool
) -> None:
    """Note in ``state`` which inputs (fingerprint ``key``) and settings its store is built
    from (:func:`scorpion_build.resume.save`; ``verify --repair`` reads the settings)."""
    resume.save(
        state / STORE_RECORD,
        key,
        config=asdict(config),
        regions_from=str(Path(regions_from).resolve()) if regions_from else None,
        labels=labels,
    )


def stored_key(state: Path) -> str | None:
    """The inputs key recorded in ``state`` (None when there is no readable record)."""
    meta = read_json(state / STORE_RECORD)
    return meta.get("fingerprint") if isinstance(meta, dict) else None


def marker_path(state_dir: str | Path, sample_id: str) -> Path:
    """Where a finished sample's rows are kept."""
    return Path(state_dir) / f"{safe_name(sample_id)}.json"


def mark_finished(marker: Path, store_key: str, rows: list[dict]) -> None:
    """Record a finished sample's rows for the store whose inputs key is ``store_key``."""
    resume.save(marker, store_key, rows=rows)


def trusted_marker(marker: Path, store_key: str, arr: zarr.Array) -> list[dict] | None:
    """A finished sample's rows, if its marker was recorded for this store (``store_key``)
    and every patch it wrote is in the store with its checksum; None means extract (again)."""
    record = resume.load(marker, store_key, check=lambda body: _intact(body.get("rows"), arr))
    return record["rows"] if record is not None else None


def _intact(rows: object, arr: zarr.Array) -> bool:
    """Every written patch of ``rows`` is in ``arr`` with the checksum it was written with."""
    if not isinstance(rows, list):
        return False
    return not any(
        row.get("status") != "failed"
        and (
            not row.get("checksum")
            or chunk_problem(arr, row["index"], row["scanner_index"], row["checksum"])
        )
        for row in rows
    )
