"""End-to-end tests of ``scorpion-build register`` on real tissue with known ground truth.

Slide ``synth_000``: ``synth`` re-scans the real CMU-1 H&E region on simulated scanners
(re-styled, rotated 90/180 degrees, mirrored, other pixel sizes, non-rigid distortion).
Slide ``s2``: the failure cases and exact-geometry checks, written here: the same scan
twice (identity), an exact area-downsample (the pixel convention), a blank and an
unrelated scan.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from helpers import write_pyramid

from scorpion_build import geometry as geo
from scorpion_build.cli.register import command as register_command
from scorpion_build.manifest import BuildDir
from scorpion_build.register import RegisterConfig, Scan, pipeline, register_build, tasks
from scorpion_build.register.pair import identity_row
from scorpion_build.scan import scan
from scorpion_build.synth import Scenario, SynthConfig, load_truth, synthesize

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
CMU = REAL / "CMU-1-Small-Region.svs"
REF_MPP = 1.0  # level-0 um/px of the test reference scan (small and fast)
# fewer refinement blocks than the default keeps the suite fast; accuracy is still asserted
CONFIG = RegisterConfig(max_blocks=12)
PAD_UM = 150.0

needs_real = pytest.mark.skipif(
    not CMU.is_file(), reason=f"real test slides not found at {REAL} (../shared/data/real)"
)


def restyle(rgb: np.ndarray, od_gain=(1.3, 0.8, 1.1), blur_px: float = 0.8) -> np.ndarray:
    """Another scanner's colour (per-channel optical-density gain) and optics (blur)."""
    od = -np.log10(np.clip((rgb.astype(np.float32) + 1) / 256, 1e-3, 1)) * np.array(od_gain)
    out = np.clip(256 * 10 ** (-od) - 1, 0, 255).astype(np.uint8)
    return cv2.GaussianBlur(out, (0, 0), blur_px) if blur_px else out


SYNTH = "synth_000"
SYNTH_CASES = {  # scanner: (scenarios, level-0 um/px, dihedral orientation expected)
    "GT450": (("rot90",), 1.04, 1),
    "DP200": (("mirror", "strong-stain"), 0.96, 4),
    "Philips": (("rot180",), 1.0, 2),
}


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> dict:
    """Scan files, a slide table and ground truth for both test slides."""
    if not CMU.is_file():
        pytest.skip(f"real test slides not found at {REAL} (../shared/data/real)")
    from scorpion_build.slide import Slide

    root = tmp_path_factory.mktemp("register_scans")
    config = SynthConfig(
        n_slides=1,
        scanners=("AT2", *SYNTH_CASES),
        scanner_mpp={"AT2": REF_MPP, **{k: v[1] for k, v in SYNTH_CASES.items()}},
        no_mpp_scanners=(),
        canonical_mpp=REF_MPP,
        texture=CMU,
        scenarios=tuple(Scenario(n, k) for k, v in SYNTH_CASES.items() for n in v[0]),
    )
    synth_table = synthesize(root / "synth", config)

    with Slide(CMU) as s:
        ref = s.thumbnail_at(REF_MPP)
    pad = int(PAD_UM / REF_MPP)
    ref = cv2.copyMakeBorder(ref, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(255,) * 3)
    h, w = ref.shape[:2]
    write_pyramid(root / "AT2.tif", ref, REF_MPP)
    files = {"AT2": root / "AT2.tif"}
    # area-downsample by 1.45: the matrix must be a pure scale. OpenCV's resize aligns pixel
    # centres, which in our corner convention is exactly x' = x / 1.45; a half-pixel slip
    # would show as an offset of 0.5 * (1 - 1 / 1.45) = 0.16 px.
    sw, sh = round(w / 1.45), round(h / 1.45)
    files["small"] = root / "small.tif"
    small = cv2.resize(ref, (sw, sh), interpolation=cv2.INTER_AREA)
    write_pyramid(files["small"], small, REF_MPP * w / sw)
    files["blank"] = root / "blank.tif"
    write_pyramid(files["blank"], np.full((1200, 1000, 3), 246, np.uint8), REF_MPP)
    other = cv2.cvtColor(cv2.imread(str(REAL / "tiatoolbox_target_image.png")), cv2.COLOR_BGR2RGB)
    other = cv2.copyMakeBorder(other, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(255,) * 3)
    files["unrelated"] = root / "unrelated.tif"
    write_pyramid(files["unrelated"], restyle(other), REF_MPP)
    rows = [
        ("s2", "AT2", files["AT2"]),
        ("s2", "P1000", files["AT2"]),
        ("s2", "GT450", files["blank"]),
        ("s2", "DP200", files["unrelated"]),
        ("s2", "Philips", files["small"]),
    ]
    table = pd.concat(
        [
            synth_table[["slide_id", "scanner", "path"]],
            pd.DataFrame(rows, columns=["slide_id", "scanner", "path"]),
        ]
    )
    table.to_csv(root / "slides.csv", index=False)
    truths = {"P1000": geo.identity(), "small": geo.scaling(sw / w, sh / h)}
    return {
        "csv": root / "slides.csv",
        "truth": load_truth(root / "synth", SYNTH),
        "truths": truths,
        "size_um": (w * REF_MPP, h * REF_MPP),
    }


def make_build(scans: dict, path: Path, slides: list[str] | None = None) -> Path:
    table = scan(scans["csv"])
    if slides is not None:
        table = table[table["slide_id"].isin(slides)]
    BuildDir.at(path).write("slides", table)
    return path


@pytest.fixture(scope="module")
def built(scans, tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    build = make_build(scans, tmp_path_factory.mktemp("register_build"))
    table = register_build(build, config=CONFIG, workers=1, progress=False)
    return build, table


def _row(table: pd.DataFrame, slide_id: str, scanner: str) -> pd.Series:
    sel = table[(table["slide_id"] == slide_id) & (table["scanner"] == scanner)]
    assert len(sel) == 1
    return sel.iloc[0]


def tissue_points(scans: dict, n: int = 400) -> np.ndarray:
    """Reference level-0 points inside the s2 tissue (away from the white padding)."""
    rng = np.random.default_rng(0)
    w_um, h_um = scans["size_um"]
    lo, hi = np.array([PAD_UM + 100] * 2), np.array([w_um, h_um]) - PAD_UM - 100
    return rng.uniform(lo, hi, (n, 2)) / REF_MPP


def error_um(matrix, truth, pts, mov_mpp) -> np.ndarray:
    diff = geo.apply(geo.from_six(matrix), pts) - geo.apply(truth, pts)
    return np.linalg.norm(diff, axis=1) * mov_mpp


def synth_error_um(scans: dict, matrix, scanner: str) -> tuple[np.ndarray, np.ndarray]:
    """Error of ``matrix`` against the synthetic ground truth on tissue points (um), and
    the floor: what the best global affine (least squares on the truth) leaves."""
    truth = scans["truth"]
    pts = truth.tissue_points(500, np.random.default_rng(1))
    true = truth.ref_to_scanner(scanner, pts)
    mpp = truth.mpp(scanner)
    err = np.linalg.norm(geo.apply(geo.from_six(matrix), pts) - true, axis=1) * mpp
    floor = np.linalg.norm(geo.apply(truth.affine(scanner), pts) - true, axis=1) * mpp
    return err, floor


# -- behaviour --------------------------------------------------------------------------------
@needs_real
def test_manifest_has_one_row_per_scan_and_reference_is_identity(built) -> None:
    build, table = built
    assert len(table) == 9
    assert set(table["reference"]) == {"AT2"}
    on_disk = pd.read_parquet(build / "manifests" / "registrations.parquet")
    pd.testing.assert_frame_equal(on_disk, table)
    for slide_id in (SYNTH, "s2"):
        ref = _row(table, slide_id, "AT2")
        assert ref["status"] == "ok"
        np.testing.assert_array_equal(ref["matrix"], geo.to_six(geo.identity()))


@needs_real
def test_scan_registered_to_itself_is_identity(built, scans) -> None:
    _, table = built
    row = _row(table, "s2", "P1000")
    assert row["status"] == "ok" and row["orientation"] == 0
    err = error_um(row["matrix"], geo.identity(), tissue_points(scans), REF_MPP)
    assert np.median(err) < 0.2 and err.max() < 0.5


@needs_real
@pytest.mark.parametrize("scanner", list(SYNTH_CASES), ids=["rot90", "mirror+stain", "rot180"])
def test_real_tissue_recovered_from_synthetic_rescans(built, scans, scanner) -> None:
    """CMU-1 re-scanned by synth: rotated, mirrored, re-stained, other mpp, 3 um warps."""
    _, table = built
    row = _row(table, SYNTH, scanner)
    assert row["status"] == "ok", row["message"]
    assert row["orientation"] == SYNTH_CASES[scanner][2]
    assert row["scale"] == pytest.approx(1.0, abs=0.01)
    assert row["refine_blocks"] >= 4
    err, floor = synth_error_um(scans, row["matrix"], scanner)
    # the thumbnail alone is good to ~2 um; the refinement must reach the non-rigid floor
    assert np.median(err) < 1.5 * np.median(floor) + 0.2
    assert np.percentile(err, 90) < 4.0
    assert row["residual_um"] < 3.0


@needs_real
def test_matrix_maps_reference_points_to_the_moving_scan(built, scans) -> None:
    """DESIGN 3.2: reference level-0 px -> this scanner's level-0 px, pixel corners at 0."""
    _, table = built
    row = _row(table, "s2", "Philips")  # an exact area-downsample of the reference
    assert row["status"] == "ok", row["message"]
    m, truth = geo.from_six(row["matrix"]), scans["truths"]["small"]
    pts = tissue_points(scans)
    err_px = np.abs(geo.apply(m, pts) - geo.apply(truth, pts))
    assert np.median(err_px, axis=0).max() < 0.05, np.median(err_px, axis=0)
    np.testing.assert_allclose(m[:, :2], truth[:, :2], atol=3e-4)
    # and on the synthetic slide, one tissue point against the renderer's exact map
    synth_row = _row(table, SYNTH, "Philips")
    p = scans["truth"].tissue_points(1, np.random.default_rng(7))
    got = geo.apply(geo.from_six(synth_row["matrix"]), p)
    assert np.linalg.norm(got - scans["truth"].ref_to_scanner("Philips", p)) < 4.0  # px


@needs_real
def test_failures_are_recorded_and_the_rest_goes_on(built) -> None:
    _, table = built
    blank = _row(table, "s2", "GT450")
    assert blank["status"] == "failed" and "no tissue" in blank["message"]
    unrelated = _row(table, "s2", "DP200")
    assert unrelated["status"] == "failed"
    assert "slide table" in unrelated["message"]  # says what to check
    assert _row(table, "s2", "Philips")["status"] == "ok"
    assert (table[table["slide_id"] == SYNTH]["status"] == "ok").all()


@needs_real
def test_cli_prints_summary_and_exits_nonzero_on_failure(built) -> None:
    build, _ = built
    args = [str(build), "--workers", "1", "--max-blocks", str(CONFIG.max_blocks)]
    result = CliRunner().invoke(register_command, args)
    assert result.exit_code == 1, result.output
    assert "failed 2" in result.output
    assert "s2 / GT450" in result.output and "no tissue" in result.output


@needs_real
def test_qc_pictures_are_written(built) -> None:
    build, table = built
    pairs = table[table["scanner"] != "AT2"]
    assert len(pairs) == 7  # failed pairs too: a person should see why
    for rel in pairs["qc_image"]:
        img = cv2.imread(str(build / rel))
        assert img is not None and min(img.shape[:2]) > 100


@needs_real
def test_rerun_skips_finished_pairs(built, monkeypatch) -> None:
    build, table = built
    calls = []

    def fake(*args, **kwargs):
        calls.append(kwargs.get("label"))
        raise AssertionError("a finished pair was recomputed")

    monkeypatch.setattr(tasks, "register_pair", fake)
    again = register_build(build, config=CONFIG, workers=1, progress=False)
    # failed pairs are recorded as finished too: deterministic, recomputing cannot help
    assert not calls
    pd.testing.assert_frame_equal(again, table)


def _count_pairs(monkeypatch) -> list[str]:
    """The labels of the pairs registered from now on (in this process: workers=1)."""
    calls: list[str] = []
    real = tasks.register_pair

    def counting(*args, **kwargs):
        calls.append(kwargs.get("label"))
        return real(*args, **kwargs)

    monkeypatch.setattr(tasks, "register_pair", counting)
    return calls


@needs_real
def test_interrupted_run_recomputes_only_the_missing_pair(built, tmp_path, monkeypatch) -> None:
    build, table = built
    copy = tmp_path / "build"
    shutil.copytree(build, copy)
    (copy / "manifests" / "registrations.parquet").unlink()
    ckpt = copy / ".state" / "register" / "robust" / "s2" / "Philips.json"
    assert ckpt.is_file()
    ckpt.unlink()
    calls = _count_pairs(monkeypatch)
    again = register_build(copy, config=CONFIG, workers=1, progress=False)
    assert calls == ["s2 Philips->AT2"]
    pd.testing.assert_frame_equal(
        again.drop(columns="seconds"), table.drop(columns="seconds"), check_exact=False
    )
    # --force recomputes every registrable pair (the 7 non-reference scans)
    calls.clear()
    monkeypatch.setattr(tasks, "register_pair", lambda *a, **k: calls.append(1) or identity_row())
    forced = register_build(copy, config=CONFIG, workers=1, progress=False, force=True)
    assert len(calls) == 7
    assert (forced["scanner"] == "AT2").sum() == 2


@needs_real
def test_changed_input_invalidates_the_checkpoint(built, tmp_path) -> None:
    build, _ = built
    slides = pd.read_parquet(build / "manifests" / "slides.parquet")

    def scan_of(scanner: str) -> Scan:
        sel = slides[(slides.slide_id == SYNTH) & (slides.scanner == scanner)]
        return Scan.from_row(sel.iloc[0].to_dict())

    mov, ref = scan_of("GT450"), scan_of("AT2")
    bdir = BuildDir.at(build)
    saved = json.loads(
        (build / ".state" / "register" / "robust" / SYNTH / "GT450.json").read_text()
    )
    assert pipeline._load_checkpoint(bdir, mov, ref, CONFIG) == saved["row"]
    assert pipeline._load_checkpoint(bdir, replace(mov, file_size=1), ref, CONFIG) is None
    assert pipeline._load_checkpoint(bdir, mov, replace(ref, mpp_x=0.3), CONFIG) is None
    assert pipeline._load_checkpoint(bdir, mov, ref, RegisterConfig()) is None


@needs_real
def test_deleted_qc_overlay_recomputes_its_pair(built, tmp_path, monkeypatch) -> None:
    build, table = built
    copy = tmp_path / "build"
    shutil.copytree(build, copy)
    overlay = _row(table, SYNTH, "Philips")["qc_image"]
    (copy / overlay).unlink()
    calls = _count_pairs(monkeypatch)
    register_build(copy, config=CONFIG, workers=1, progress=False)
    assert calls == [f"{SYNTH} Philips->AT2"]
    assert (copy / overlay).is_file()


@needs_real
def test_orb_affine_baseline_runs_without_search_or_refinement(scans, tmp_path) -> None:
    build = make_build(scans, tmp_path / "b", slides=[SYNTH])
    table = register_build(
        build, config=RegisterConfig(method="orb-affine"), workers=1, progress=False
    )
    assert set(table["method"]) == {"orb-affine"}
    assert (table["refine_blocks"] == 0).all()
    rot180 = _row(table, SYNTH, "Philips")
    err, _ = synth_error_um(scans, rot180["matrix"], "Philips")
    assert np.median(err) < 8.0  # ORB is rotation-invariant: thumbnail accuracy
    # no refinement, but QC still measures the local misalignment on tissue blocks
    assert 0.0 < rot180["residual_um"] < 8.0
    # without the orientation search a mirrored scan cannot be registered
    mirror = _row(table, SYNTH, "DP200")
    if mirror["status"] != "failed":
        err, _ = synth_error_um(scans, mirror["matrix"], "DP200")
        assert np.median(err) > 20.0
    assert all("orb-affine" in p for p in table["qc_image"] if p)


@needs_real
@pytest.mark.slow  # starts a two-process LocalCluster
def test_local_cluster_gives_the_same_rows(built, scans, tmp_path) -> None:
    build = make_build(scans, tmp_path / "b")
    slides = pd.read_parquet(build / "manifests" / "slides.parquet")
    # the slide task runs in a worker process: an identity pair and a blank scan
    keep = (slides["slide_id"] == "s2") & slides["scanner"].isin(["AT2", "P1000", "GT450"])
    BuildDir.at(build).write("slides", slides[keep])
    table = register_build(build, config=CONFIG, workers=2, progress=False)
    _, serial = built
    assert len(table) == 3
    for row in table.itertuples():
        ref = _row(serial, row.slide_id, row.scanner)
        assert row.status == ref["status"]
        np.testing.assert_allclose(row.matrix, ref["matrix"], atol=1e-9, equal_nan=True)
