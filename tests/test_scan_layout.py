"""``scan DIR`` on folders as scanners and users leave them, and on every real test file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from scorpion_build.cli.main import main
from scorpion_build.discover import discover
from scorpion_build.scan import scan


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_real_export_folder_layout(tmp_path):
    root = tmp_path / "slides"
    _touch(root / "s1" / "AT2.svs")
    _touch(root / "s1" / "GT450.ome.tif")
    _touch(root / "s1" / "Philips.OME.TIFF")
    _touch(root / "s1" / "P1000.mrxs")
    _touch(root / "s1" / "P1000" / "Slidedat.ini")  # MIRAX data folder: part of P1000.mrxs
    _touch(root / "s1" / "P1000" / "Data0000.dat")
    _touch(root / "s1" / "DP200" / "level-0.dcm")  # DICOM series folder: one scan
    _touch(root / "s1" / "DP200" / "level-1.dcm")
    _touch(root / "s1" / "AT2_label.jpg")
    _touch(root / "s1" / "macro.png")
    _touch(root / "s1" / "GT450-overview.jpeg")
    _touch(root / "s1" / "notes.txt")
    _touch(root / "s1" / "AT2.xml")
    _touch(root / "s1" / "metadata.json")
    _touch(root / "s1" / "empty")
    (root / "s1" / "empty_dir").mkdir()
    _touch(root / "s1" / "AT2_old.svs")
    _touch(root / "s1" / "S360.vms")  # Hamamatsu VMS: its images and map are part of it
    _touch(root / "s1" / "S360_x0_y0.jpg")
    _touch(root / "s1" / "S360_map2.jpg")
    _touch(root / "s1" / "S360.opt")
    _touch(root / "s1" / "VS200.vsi")  # Olympus VSI: its _VS200_ folder is part of it
    _touch(root / "s1" / "_VS200_" / "stack1" / "frame_t.ets")
    _touch(root / "s2" / "AT2.svs")
    _touch(root / "README.md")
    _touch(root / ".snapshot" / "s1" / "AT2.svs")

    found = discover(root, ignore=("*_old.svs",))
    got = {(r["slide_id"], r["scanner"]): Path(r["path"]).name for r in found.rows}
    assert got == {
        ("s1", "AT2"): "AT2.svs",
        ("s1", "GT450"): "GT450.ome.tif",
        ("s1", "Philips"): "Philips.OME.TIFF",
        ("s1", "P1000"): "P1000.mrxs",
        ("s1", "DP200"): "level-0.dcm",
        ("s1", "S360"): "S360.vms",
        ("s1", "VS200"): "VS200.vsi",
        ("s2", "AT2"): "AT2.svs",
    }
    skipped = "\n".join(found.skipped)
    for name in ("AT2_label.jpg", "macro.png", "GT450-overview.jpeg"):
        assert f"{name}: skipped, a label/overview picture" in skipped
    for name, why in (("notes.txt", ".txt"), ("AT2.xml", ".xml"), ("metadata.json", ".json")):
        assert f"{name}: skipped, not a slide file ({why})" in skipped
    assert "empty: skipped, not a slide file (no extension)" in skipped
    assert "empty_dir: skipped, a folder that is neither" in skipped
    assert "README.md: skipped, not inside a slide folder" in skipped
    assert ".snapshot: skipped, a hidden entry" in skipped
    for part in ("AT2_old.svs", "Slidedat", "S360_", "S360.opt", "_VS200_"):
        assert part not in skipped
    assert all("\n" not in note for note in found.skipped)  # one line each
    # a slide folder can be ignored as a whole, by its path under the root
    assert {r["slide_id"] for r in discover(root, ignore=("s2",)).rows} == {"s1"}


def test_scan_cli_prints_skip_notes_and_honours_ignore(tmp_path, cmu_svs):
    root = tmp_path / "slides"
    (root / "s1").mkdir(parents=True)
    shutil.copy(cmu_svs, root / "s1" / "AT2.svs")
    shutil.copy(cmu_svs, root / "s1" / "GT450.ome.tif")  # scanner name, not a real OME-TIFF
    _touch(root / "s1" / "AT2_thumbnail.png")
    _touch(root / "s1" / "broken.svs", b"\0" * 100)
    build = tmp_path / "build"
    args = ["scan", str(root), "-o", str(build), "--ignore", "broken*"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "note: " in result.output and "AT2_thumbnail.png: skipped" in result.output
    t = pd.read_parquet(build / "manifests" / "slides.parquet")
    assert sorted(t["scanner"]) == ["AT2", "GT450"] and (t["status"] == "ok").all()
    # without --ignore the broken file is a scan like any other, and fails with its name
    result = CliRunner().invoke(main, ["scan", str(root), "-o", str(build)])
    assert result.exit_code == 1 and "broken.svs" in result.output


def test_dicom_series_folder_scans(tmp_path, real_dir):
    dcm = real_dir / "ezwsi_multiframe_camelyon_challenge_image.dcm"
    if not dcm.is_file():
        pytest.skip(f"{dcm} is absent")
    root = tmp_path / "slides"
    (root / "s1" / "AT2").mkdir(parents=True)
    shutil.copy(dcm, root / "s1" / "AT2" / "image.dcm")
    t = scan(root)
    assert list(t["scanner"]) == ["AT2"] and t["status"].iloc[0] == "warn"  # 29 um/px
    assert t["vendor"].iloc[0] == "dicom" and t["width"].iloc[0] == 1152


# What each real file in ../shared/data/real must give: status and a piece of the message.
REAL_EXPECTED = {
    "CMU-1-Small-Region.svs": ("ok", ""),
    "ezwsi_multiframe_camelyon_challenge_image.dcm": ("warn", "coarser than any scanner"),
    "qupathdemo_OS-1-detail.ome.tif": ("ok", ""),
    "histolab_tcga-cr-7395-01a-01-ts1.svs": ("failed", "no microns-per-pixel"),
    "skimage_ihc.png": ("failed", "no microns-per-pixel"),
    "tiatoolbox_target_image.png": ("failed", "no microns-per-pixel"),
    "slideio_test3-DAPI-2.ndpi": ("warn", "fluorescence"),
    "slideio_test3-TRITC-2.ndpi": ("warn", "fluorescence"),
}


def test_every_real_file_scans(tmp_path, real_dir):
    """Each real file as the reference scan of its own slide: readable ones are ok (the
    fluorescence pair a warn), the ones without mpp fail with the mpp message."""
    files = sorted(p for p in real_dir.iterdir() if p.name != "SOURCES.md")
    unknown = {p.name for p in files} - set(REAL_EXPECTED)
    assert not unknown, f"new real files {unknown}: add their expected scan result here"
    csv = tmp_path / "real.csv"
    pd.DataFrame(
        {"slide_id": [p.name for p in files], "scanner": "AT2", "path": [str(p) for p in files]}
    ).to_csv(csv, index=False)
    t = scan(csv).set_index("slide_id")
    for name in t.index:
        status, fragment = REAL_EXPECTED[name]
        assert t.loc[name, "status"] == status, (name, t.loc[name, "message"])
        assert fragment in t.loc[name, "message"], (name, t.loc[name, "message"])
        if status == "failed":
            assert name in t.loc[name, "message"] and "`mpp` column" in t.loc[name, "message"]
        else:
            assert t.loc[name, "mpp_x"] > 0 and t.loc[name, "width"] > 0


def test_real_folder_scans_as_a_directory(tmp_path, real_dir):
    """The real folder in the DIR layout: SOURCES.md is skipped with a note, every scan has
    a row."""
    root = tmp_path / "slides"
    root.mkdir()
    (root / "real").symlink_to(real_dir, target_is_directory=True)
    skipped: list[str] = []
    t = scan(root, reference="CMU-1-Small-Region", skipped=skipped)
    assert any("SOURCES.md: skipped, not a slide file (.md)" in n for n in skipped)
    scanners = set(t["scanner"])
    assert "qupathdemo_OS-1-detail" in scanners  # .ome.tif removed whole
    assert len(t) == len(REAL_EXPECTED)


def test_pipeline_scan_ignore(tmp_path, cmu_svs):
    from scorpion_build.pipeline import load_config
    from scorpion_build.pipeline.stages import run_scan

    root = tmp_path / "slides"
    (root / "s1").mkdir(parents=True)
    shutil.copy(cmu_svs, root / "s1" / "AT2.svs")
    _touch(root / "s1" / "GT450_old.svs", b"\0" * 100)  # would fail if scanned
    yaml = tmp_path / "p.yaml"
    yaml.write_text(f"build: {tmp_path / 'b'}\nscan:\n  input: {root}\n  ignore: ['*_old.svs']\n")
    config = load_config(yaml)
    assert config.scan.ignore == ["*_old.svs"]
    table = run_scan(config, None, False)["scans"]
    assert list(table["scanner"]) == ["AT2"] and (table["status"] == "ok").all()
