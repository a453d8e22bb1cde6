"""Check a build's patch store against the checksums in ``patches.parquet``, and repair it.

Every patch that is not ``failed`` must have its chunk in ``patches.zarr`` and decode to the
recorded checksum (``docs/contracts.md`` section 4). Repair re-runs extract with the
settings of the finished store: extract trusts a finished sample only when all its chunks
check out, so exactly the damaged samples are extracted again.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from scorpion_build.integrity import chunk_problem, open_patch_array
from scorpion_build.lock import build_lock
from scorpion_build.manifest import BuildDir, read_json

PROBLEM_COLUMNS = ["sample_id", "scanner", "index", "scanner_index", "problem"]


def find_problems(build: BuildDir) -> tuple[int, pd.DataFrame]:
    """(number of patches checked, one row per patch that does not check out)."""
    patches = build.read("patches")
    arr, _ = open_patch_array(build.zarr, build.root)
    if "checksum" not in patches.columns:
        raise ValueError(
            f"{build.manifest('patches')} has no checksum column (written by an older version); "
            f"run `scorpion-build extract {build.root}` once to add it"
        )
    written = patches[patches["status"] != "failed"]
    problems = []
    for row in written.itertuples():
        problem = chunk_problem(arr, int(row.index), int(row.scanner_index), row.checksum)
        if not row.checksum or not isinstance(row.checksum, str):
            problem = "no checksum recorded for a written patch"
        if problem:
            problems.append(
                [row.sample_id, row.scanner, int(row.index), int(row.scanner_index), problem]
            )
    return len(written), pd.DataFrame(problems, columns=PROBLEM_COLUMNS)


def verify_build(
    build_dir: str | os.PathLike,
    repair: bool = False,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
) -> tuple[int, pd.DataFrame]:
    """Check every written patch; with ``repair``, re-extract the damaged ones.

    Returns
    -------
    (int, pandas.DataFrame)
        Patches checked, and the problems left (all of them without ``repair``).
    """
    build = BuildDir.at(build_dir)
    with build_lock(build.root, readonly_ok=not repair):
        checked, problems = find_problems(build)
        if not repair or problems.empty:
            return checked, problems
        from scorpion_build.extract import ExtractConfig, extract_build

        meta = read_json(build.state / "extract" / "config.json")
        if not isinstance(meta, dict) or "config" not in meta:
            raise ValueError(
                f"{build.state / 'extract'}: the settings of this store are unknown; rebuild it "
                f"with `scorpion-build extract {build.root} --force` and your options"
            )
        if meta.get("labels"):  # the annotations are an input verify does not know
            raise ValueError(
                f"{build.zarr} has labels from annotations: repair it by running the same "
                f"`scorpion-build extract {build.root} --annotations ...` again (it re-extracts "
                "only the damaged samples)"
            )
        regions_from = meta.get("regions_from")
        extract_build(
            build.root,
            ExtractConfig(**meta["config"]),
            workers=workers,
            scheduler=scheduler,
            regions_from=Path(regions_from) if regions_from else None,
            progress=progress,
        )
        return find_problems(build)
