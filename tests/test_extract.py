"""extract/export: sampling rules, patch geometry against a known map, resume, export layout."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import zarr
from click.testing import CliRunner
from helpers import paired_build

from scorpion_build import geometry as geo
from scorpion_build.cli.main import main
from scorpion_build.extract import ExtractConfig, extract_build, extract_sample, region_to_reference
from scorpion_build.extract import build as extract_module
from scorpion_build.manifest import BuildDir
from scorpion_build.sample import sample_regions
from scorpion_build.slide import Slide

CONFIG = ExtractConfig(regions=3, region_um=200.0, size=256, seed=1)


@pytest.fixture(scope="module")
def texture(cmu_svs):
    with Slide(cmu_svs) as s:
        return s.read(0, (0, 0, 1400, 1600))  # real H&E at 0.499 um/px


def _truth(texture):
    h, w = texture.shape[:2]
    return geo.compose(geo.translation(7.0, -4.0), geo.rotation_deg(181.0, w / 2, h / 2))


def _error_um(row, regions, truth, mpp=0.5):
    region = regions.set_index("sample_id").loc[row["sample_id"]]
    m_ref = region_to_reference(region["x_um"], region["y_um"], CONFIG, (mpp, mpp))
    grid = np.stack(np.meshgrid(np.linspace(0, 256, 9), np.linspace(0, 256, 9)), -1).reshape(-1, 2)
    got = geo.apply(geo.from_six(row["patch_to_slide"]), grid)
    want = geo.apply(geo.compose(truth, m_ref), grid)
    return np.hypot(*(got - want).T) * mpp


def test_sampling_tissue_bounds_overlap_and_determinism():
    mask = np.zeros((200, 300), bool)
    mask[20:180, 30:270] = True
    regions = sample_regions(mask, 10.0, 320.0, 60, seed=3, min_tissue=0.9)
    assert 15 <= len(regions) < 60  # at most 5 x 7 squares of 32 px fit the 160 x 240 tissue
    boxes = [(r.x_um / 10, r.y_um / 10) for r in regions]
    for i, (x, y) in enumerate(boxes):
        assert mask[int(y) : int(y) + 32, int(x) : int(x) + 32].mean() >= 0.9
        for x2, y2 in boxes[i + 1 :]:
            assert abs(x - x2) >= 32 or abs(y - y2) >= 32
    assert regions == sample_regions(mask, 10.0, 320.0, 60, seed=3, min_tissue=0.9)
    assert sample_regions(mask, 10.0, 320.0, 4, seed=3) != sample_regions(
        mask, 10.0, 320.0, 4, seed=4
    )
    assert sample_regions(np.zeros((50, 50), bool), 10.0, 200.0, 5) == []


def test_patches_follow_known_transform_with_subpixel_error(tmp_path, texture):
    truth = _truth(texture)
    build, _ = paired_build(tmp_path, texture, truth, error_px=4.0)
    regions, patches = extract_build(build, CONFIG, workers=1, progress=False)
    assert (regions["status"] == "ok").all() and len(regions) == 3
    group = zarr.open_group(str(build / "patches.zarr"), mode="r")
    assert group.attrs["scanners"] == ["AT2", "B"] and group.attrs["reference"] == "AT2"
    assert group.attrs["mpp"] == pytest.approx(200 / 256) and group["patches"].shape == (
        3,
        2,
        256,
        256,
        3,
    )
    assert group["patches"].chunks == (1, 1, 256, 256, 3)
    b_rows = patches[patches["scanner"] == "B"]
    assert (b_rows["status"] == "ok").all(), b_rows["message"].tolist()
    for _, row in b_rows.iterrows():
        err = _error_um(row, regions, truth)
        assert np.median(err) < 0.5 and err.max() < 1.0, err
        assert row["similarity"] > 0.7
        # the 4 px (2 um) registration error was corrected: ~2.6 output px along each axis
        assert abs(abs(row["correction_x_px"]) - 2.56) < 0.5
    ref_rows = patches[patches["scanner"] == "AT2"]
    for _, row in ref_rows.iterrows():
        assert _error_um(row, regions, geo.identity()).max() < 1e-9


def test_without_refinement_the_registration_error_remains(tmp_path, texture):
    truth = _truth(texture)
    build, _ = paired_build(tmp_path, texture, truth, error_px=4.0)
    config = ExtractConfig(**{**CONFIG.__dict__, "refine": False})
    regions, patches = extract_build(build, config, workers=1, progress=False)
    row = patches[patches["scanner"] == "B"].iloc[0]
    assert np.median(_error_um(row, regions, truth)) == pytest.approx(
        4 * np.sqrt(2) * 0.5, rel=0.01
    )


def test_failed_registration_is_skipped_with_message(tmp_path, texture):
    build, _ = paired_build(tmp_path, texture, _truth(texture), fail_scanner=True)
    result = CliRunner().invoke(
        main,
        [
            "extract",
            str(build),
            "--regions",
            "2",
            "--region-um",
            "200",
            "--size",
            "128",
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 1
    patches = pd.read_parquet(build / "manifests" / "patches.parquet")
    b = patches[patches["scanner"] == "B"]
    assert (b["status"] == "failed").all()
    assert b["message"].str.contains("registration failed: too few inliers").all()
    assert (patches[patches["scanner"] == "AT2"]["status"] == "ok").all()
    assert "registration failed" in result.output
    # the slide map shows the reference's regions; the unregistered scan is named, not drawn
    assert (build / "qc" / "slides" / "s1.png").is_file()


def test_resume_skips_finished_samples_and_gives_identical_store(tmp_path, texture):
    build, _ = paired_build(tmp_path, texture, _truth(texture))
    _, first = extract_build(build, CONFIG, workers=1, progress=False)
    store = zarr.open_group(str(build / "patches.zarr"), mode="r")["patches"]
    reference = store[:]
    # simulate an interruption: one sample's marker and chunks lost, manifest gone
    markers = sorted((build / ".state" / "extract" / "samples").glob("*.json"))
    assert len(markers) == 3
    markers[1].unlink()
    zarr.open_group(str(build / "patches.zarr"), mode="r+")["patches"][1] = 0
    (build / "manifests" / "patches.parquet").unlink()
    _, second = extract_build(build, CONFIG, workers=1, progress=False)
    np.testing.assert_array_equal(store[:], reference)
    pd.testing.assert_frame_equal(first, second)
    # untouched markers were reused, not recomputed
    assert json.loads(markers[0].read_text())["rows"][0]["sample_id"] == first["sample_id"].iloc[0]


def test_rerun_registration_keeps_patches_unless_a_matrix_changes(tmp_path, texture):
    build, _ = paired_build(tmp_path, texture, _truth(texture))
    extract_build(build, CONFIG, workers=1, progress=False)
    chunk = next(p for p in (build / "patches.zarr" / "patches").rglob("*") if p.is_file())
    written = chunk.stat().st_mtime_ns
    bdir = BuildDir.at(build)
    regs = bdir.read("registrations")
    # the same registration run again: only timings and bookkeeping differ
    bdir.write("registrations", regs.assign(seconds=regs["seconds"] + 1.5))
    extract_build(build, CONFIG, workers=1, progress=False)
    assert chunk.stat().st_mtime_ns == written
    # a changed transform invalidates the patches
    moved = [
        geo.to_six(geo.compose(geo.translation(2.0, 0.0), geo.from_six(m))) for m in regs["matrix"]
    ]
    bdir.write("registrations", regs.assign(matrix=moved))
    extract_build(build, CONFIG, workers=1, progress=False)
    assert chunk.stat().st_mtime_ns != written


def test_a_crashed_sample_fails_alone_and_is_extracted_on_rerun(tmp_path, texture, monkeypatch):
    build, _ = paired_build(tmp_path, texture, _truth(texture))

    def crash_on_second(item, **kwargs):  # noqa: ANN001, ANN003, ANN202
        if item.sample.index == 1:
            raise RuntimeError("disk on fire")
        return extract_sample(item, **kwargs)

    monkeypatch.setattr(extract_module, "extract_sample", crash_on_second)
    _, patches = extract_build(build, CONFIG, workers=1, progress=False)
    crashed = patches[patches["index"] == 1]
    assert len(crashed) == 2 and (crashed["status"] == "failed").all()
    assert (crashed["message"] == "task crashed: RuntimeError: disk on fire").all()
    assert (patches[patches["index"] != 1]["status"] == "ok").all()
    monkeypatch.undo()
    _, again = extract_build(build, CONFIG, workers=1, progress=False)
    assert (again["status"] == "ok").all() and len(again) == 6


def test_given_regions_are_used_exactly(tmp_path, texture):
    build, _ = paired_build(tmp_path, texture, _truth(texture))
    csv = tmp_path / "given.csv"
    pd.DataFrame({"slide_id": ["s1", "s1"], "x_um": [100.0, 300.0], "y_um": [150.0, 400.0]}).to_csv(
        csv, index=False
    )
    regions, _ = extract_build(build, CONFIG, workers=1, progress=False, regions_from=csv)
    assert regions["x_um"].tolist() == [100.0, 300.0] and (regions["source"] == "given").all()


def test_export_release_layout(tmp_path, texture):
    build, _ = paired_build(tmp_path, texture, _truth(texture))
    extract_build(build, CONFIG, workers=1, progress=False)
    out = tmp_path / "release"
    result = CliRunner().invoke(main, ["export", str(build), str(out)])
    assert result.exit_code == 0, result.output
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg"))
    assert files == [f"slide_1/sample_{j}/{s}.jpg" for j in (1, 2, 3) for s in ("AT2", "B")]
    index = pd.read_csv(out / "index.csv")
    assert index["slide_id"].tolist() == ["s1"] * 3 and index["sample_id"].is_unique


def test_jpeg_compression_option(tmp_path, texture):
    build, _ = paired_build(tmp_path, texture, _truth(texture))
    config = ExtractConfig(**{**CONFIG.__dict__, "compression": "jpeg", "regions": 1})
    extract_build(build, config, workers=1, progress=False)
    arr = zarr.open_group(str(build / "patches.zarr"), mode="r")["patches"]
    with Slide(build.parent / "slides" / "AT2.tif") as s:
        assert arr[0, 0].std() > 10 and arr[0, 0].shape == (256, 256, 3)
        assert s.mpp == (0.5, 0.5)


def test_patch_to_slide_reproduces_every_patch(tmp_path, texture):
    build, _ = paired_build(tmp_path, texture, _truth(texture), error_px=3.0)
    _, patches = extract_build(build, CONFIG, workers=1, progress=False)
    arr = zarr.open_group(str(build / "patches.zarr"), mode="r")["patches"]
    slides = pd.read_parquet(build / "manifests" / "slides.parquet").set_index("scanner")["path"]
    for row in patches.itertuples():
        with Slide(slides[row.scanner]) as s:
            again = s.read_warped(geo.from_six(row.patch_to_slide), (256, 256))
        diff = np.abs(again.astype(int) - arr[row.index, row.scanner_index].astype(int))
        # OpenCV's fixed-point warp may round a rare pixel differently for another window
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
