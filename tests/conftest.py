"""Shared fixtures: the real slide folder (skip when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

REAL_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


@pytest.fixture(scope="session")
def real_dir() -> Path:
    if not REAL_DIR.is_dir():
        pytest.skip(
            f"real slide folder {REAL_DIR} is absent (it ships beside the repo as ../shared)"
        )
    return REAL_DIR


@pytest.fixture(scope="session")
def cmu_svs(real_dir: Path) -> Path:
    path = real_dir / "CMU-1-Small-Region.svs"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture(scope="session")
def labelled(tmp_path_factory) -> dict:
    """A small synthetic build with labels from synth's true classes (see helpers)."""
    from helpers import labelled_build

    built = labelled_build(tmp_path_factory.mktemp("labelled"))
    assert built["result"].exit_code == 0, built["result"].output
    return built
