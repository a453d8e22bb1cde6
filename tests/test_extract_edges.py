"""extract on awkward slides: no region fits, a scan coarser than the output, fluorescence."""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner
from helpers import paired_build, write_pyramid

from scorpion_build import geometry as geo
from scorpion_build.cli.main import main
from scorpion_build.extract import ExtractConfig, extract_build
from scorpion_build.manifest import BuildDir, order_columns
from scorpion_build.scan import scan
from scorpion_build.slide import Slide

CONFIG = ExtractConfig(regions=3, region_um=200.0, size=256, seed=1)


@pytest.fixture(scope="module")
def texture(cmu_svs):
    with Slide(cmu_svs) as s:
        return s.read(0, (0, 0, 1400, 1600))  # real H&E at 0.499 um/px


def _add_slide(build: str, slide_id: str, image, mpp: float = 0.5) -> None:
    """Add a two-scanner slide (the same pixels for AT2 and B, identity registration)."""
    bdir = BuildDir.at(build)
    folder = bdir.root.parent / slide_id
    folder.mkdir()
    rows = [
        (slide_id, s, str(write_pyramid(folder / f"{s}.tif", image, mpp))) for s in ("AT2", "B")
    ]
    csv = folder / "slides.csv"
    pd.DataFrame(rows, columns=["slide_id", "scanner", "path"]).to_csv(csv, index=False)
    bdir.write("slides", pd.concat([bdir.read("slides"), scan(csv)], ignore_index=True))
    regs = bdir.read("registrations")
    new = regs[regs["slide_id"] == regs["slide_id"].iloc[0]].assign(
        slide_id=slide_id, matrix=[geo.to_six(geo.identity())] * 2, status="ok", message=""
    )
    bdir.write("registrations", order_columns(pd.concat([regs, new]), "registrations"))


def test_slide_where_no_region_fits_fails_with_message_and_build_goes_on(tmp_path, texture):
    build, _ = paired_build(tmp_path, texture, geo.translation(5.0, -3.0))
    _add_slide(build, "small", texture[:240, :300])  # 150 x 120 um: no 200 um region fits
    regions, patches = extract_build(build, CONFIG, workers=1, progress=False)
    small = regions[regions["slide_id"] == "small"]
    assert len(small) == 1 and small["status"].iloc[0] == "failed"
    message = small["message"].iloc[0]
    assert "only 0 of 3 non-overlapping 200 um regions" in message
    assert "smaller than --region-um" in message
    # the other slide is extracted as usual
    assert (regions[regions["slide_id"] == "s1"]["status"] == "ok").all()
    assert set(patches["slide_id"]) == {"s1"} and (patches["status"] == "ok").all()


def test_no_region_anywhere_is_a_message_not_a_traceback(tmp_path, texture):
    build, _ = paired_build(tmp_path, texture, geo.translation(5.0, -3.0))
    args = ["extract", str(build), "--regions", "10", "--region-um", "5000", "--size", "64"]
    result = CliRunner().invoke(main, [*args, "--workers", "1"])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "only 0 of 10 non-overlapping 5000 um regions" in result.output
    patches = pd.read_parquet(build / "manifests" / "patches.parquet")
    assert len(patches) == 0 and "index" in patches.columns


def test_scan_coarser_than_the_output_warns_with_the_factor(tmp_path, texture):
    build, _ = paired_build(tmp_path, texture, geo.translation(5.0, -3.0))
    fine = ExtractConfig(regions=2, region_um=100.0, size=256, seed=1)  # 0.39 um/px < 0.5
    _, patches = extract_build(build, fine, workers=1, progress=False)
    assert (patches["status"] == "warn").all()
    assert patches["message"].str.contains("patch upsampled 1.28x").all()
    _, patches = extract_build(build, CONFIG, workers=1, progress=False)  # 0.78 um/px
    assert not patches["message"].str.contains("upsampled").any()


def test_fluorescence_slide_regions_warn_and_are_not_all_tissue(tmp_path, real_dir):
    """The DAPI/TRITC pair (same field, two channels) as a two-scanner slide."""
    files = [real_dir / f"slideio_test3-{c}-2.ndpi" for c in ("DAPI", "TRITC")]
    if not all(f.is_file() for f in files):
        pytest.skip(f"{files} are absent")
    csv = tmp_path / "slides.csv"
    frame = {"slide_id": "f", "scanner": ["AT2", "B"], "path": [str(f) for f in files]}
    pd.DataFrame(frame).to_csv(csv, index=False)
    bdir = BuildDir.at(tmp_path / "build")
    slides = scan(csv)
    assert (slides["status"] == "warn").all()
    assert slides["message"].str.contains("looks like a fluorescence scan").all()
    bdir.write("slides", slides)
    regs = [
        {"slide_id": "f", "scanner": s, "reference": "AT2", "matrix": geo.to_six(geo.identity())}
        for s in ("AT2", "B")
    ]
    regs = pd.DataFrame(regs).assign(status="ok", message="")
    bdir.write("registrations", order_columns(regs, "registrations"))
    config = ExtractConfig(regions=3, region_um=200.0, size=128, seed=0)
    regions, patches = extract_build(bdir.root, config, workers=1, progress=False)
    assert len(regions) == 3 and (regions["status"] == "warn").all()
    assert regions["message"].str.contains("fluorescence").all()
    # the dark background is not tissue: regions sit on signal, not on a mask of 1.0
    assert regions["tissue_fraction"].mean() < 0.95
    assert (patches["tissue_fraction"] < 1.0).any()
