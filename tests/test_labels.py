"""Annotations carried to every scanner: GeoJSON checks, label maps against the exact truth in
rotated and mirrored scans, --roi-class, export of the label maps, and PairedPatches."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely
import zarr
from click.testing import CliRunner
from helpers import extract_args
from shapely.geometry import shape

from scorpion_build import geometry as geo
from scorpion_build.annotations import AnnotationError, check_feature, load_annotations
from scorpion_build.cli.main import main
from scorpion_build.labels import rasterize
from scorpion_build.synth import load_truth
from scorpion_build.synth.annotations import read_features, truth_label_map

MIN_IOU = 0.97
CLASSES = ["background", "tumour", "stroma"]


def feature(geometry: dict, name: str | None = "tumour", key: str = "classification") -> dict:
    props = {} if name is None else {key: {"name": name} if key == "classification" else name}
    return {"type": "Feature", "geometry": geometry, "properties": props}


def square(x0: float, y0: float, side: float) -> list[list[float]]:
    return [[x0, y0], [x0 + side, y0], [x0 + side, y0 + side], [x0, y0 + side], [x0, y0]]


def centres_inside(geom: shapely.Geometry, size: int) -> np.ndarray:
    """Pixel centres inside ``geom`` (patch px), by shapely: independent of the rasteriser."""
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    return shapely.contains_xy(geom, xx, yy)


# -- GeoJSON in -------------------------------------------------------------------------------
def test_multipolygon_with_holes_rasterises_exactly_under_a_rotation():
    outer = square(10, 10, 60)
    hole = square(30, 30, 20)
    island = square(80, 15, 12)
    geom = {"type": "MultiPolygon", "coordinates": [[outer, hole], [island]]}
    ann, row = check_feature(feature(geom), 0, CLASSES, (200, 200))
    assert row["status"] == "ok" and len(ann.polygons) == 2 and len(ann.polygons[0]) == 2
    # reference px -> output px: a 30 degree turn, scale 0.9 and a shift, as a patch sees it
    c, s = 0.9 * np.cos(np.pi / 6), 0.9 * np.sin(np.pi / 6)
    ref_to_out = np.array([[c, -s, 40.0], [s, c, -10.0]])
    got = rasterize([ann], ref_to_out, (128, 128))
    want = centres_inside(shapely.transform(shape(geom), lambda p: geo.apply(ref_to_out, p)), 128)
    assert np.array_equal(got == 1, want)
    assert got[tuple(np.rint(geo.apply(ref_to_out, [[40, 40]])[0, ::-1]).astype(int))] == 0


@pytest.mark.parametrize("mirror", [False, True])
def test_many_vertex_polygon_matches_shapely_at_every_pixel_centre(mirror):
    rng = np.random.default_rng(4)
    angles = np.sort(rng.uniform(0, 2 * np.pi, 400))
    radii = rng.uniform(20, 60, 400)  # a ragged, non-convex outline
    ring = np.c_[64 + radii * np.cos(angles), 64 + radii * np.sin(angles)]
    ring = np.vstack([ring, ring[:1]]).tolist()
    ann, row = check_feature(
        feature({"type": "Polygon", "coordinates": [ring]}), 0, CLASSES, (200, 200)
    )
    assert row["status"] == "ok"
    flip = np.array([[-1.0, 0.0, 128.0], [0.0, 1.0, 0.0]]) if mirror else geo.identity()
    ref_to_out = geo.compose(geo.translation(0.3, -0.7), flip)
    got = rasterize([ann], ref_to_out, (128, 128))
    want = centres_inside(
        shapely.transform(shapely.Polygon(ring), lambda p: geo.apply(ref_to_out, p)), 128
    )
    assert np.array_equal(got == 1, want)


def test_class_from_classification_or_name_and_later_features_on_top():
    a, _ = check_feature(
        feature({"type": "Polygon", "coordinates": [square(0, 0, 10)]}), 0, CLASSES, (50, 50)
    )
    b, _ = check_feature(
        feature({"type": "Polygon", "coordinates": [square(5, 5, 10)]}, "stroma", key="name"),
        1,
        CLASSES,
        (50, 50),
    )
    cut, _ = check_feature(
        feature({"type": "Polygon", "coordinates": [square(0, 0, 2)]}, "background"),
        2,
        CLASSES,
        (50, 50),
    )
    got = rasterize([a, b, cut], geo.identity(), (20, 20))
    assert got[2, 2] == 1 and got[7, 7] == 2 and got[12, 12] == 2 and got[17, 17] == 0
    assert got[1, 1] == 0, "a background feature cuts out what was painted before"


@pytest.mark.parametrize(
    ("geometry", "name", "status", "words"),
    [
        (
            {"type": "Polygon", "coordinates": [square(0, 0, 5)]},
            "necrosis",
            "failed",
            "not in the class list",
        ),
        (
            {"type": "Polygon", "coordinates": [[[0, 0], [9, 9], [9, 0], [0, 9], [0, 0]]]},
            "tumour",
            "warn",
            "self-intersecting",
        ),
        (
            {"type": "Polygon", "coordinates": [[[1, 1], [5, 5], [9, 9], [1, 1]]]},
            "tumour",
            "failed",
            "empty polygon",
        ),
        ({"type": "Polygon", "coordinates": []}, "tumour", "failed", "empty polygon"),
        (
            {"type": "Polygon", "coordinates": [square(500, 500, 10)]},
            "tumour",
            "failed",
            "outside the 100x80 px",
        ),
        (
            {"type": "Polygon", "coordinates": [square(90, 10, 20)]},
            "tumour",
            "warn",
            "50% of it outside the slide, clipped",
        ),
        ({"type": "Point", "coordinates": [3, 3]}, "tumour", "failed", "Point geometry"),
        (
            {"type": "Polygon", "coordinates": [square(0, 0, 5)]},
            None,
            "failed",
            "no classification or name",
        ),
    ],
)
def test_bad_features_are_reported_one_by_one(geometry, name, status, words):
    ann, row = check_feature(feature(geometry, name), 7, CLASSES, (100, 80))
    assert row["status"] == status and words in row["message"] and "feature 7" in row["message"]
    assert (ann is None) == (status == "failed")
    if ann is not None:  # a repaired feature keeps only area inside the slide
        assert all(
            (rings[0] >= 0).all() and (rings[0][:, 0] <= 100).all() for rings in ann.polygons
        )


def test_folder_classes_and_missing_files(tmp_path):
    folder = tmp_path / "ann"
    folder.mkdir()
    feats = [
        feature({"type": "Polygon", "coordinates": [square(0, 0, 5)]}, "zeta"),
        feature({"type": "Polygon", "coordinates": [square(5, 5, 5)]}, "alpha", key="name"),
    ]
    (folder / "s1.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    (folder / "s_1.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    found = load_annotations(folder, {"s1": (50, 50), "s2": (50, 50)})
    stray = [r for r in found.rows if r["slide_id"] == "s_1"]
    assert stray[0]["status"] == "warn" and "no slide 's_1' in the build" in stray[0]["message"]
    assert found.classes == ["background", "alpha", "zeta"]
    assert [a.class_index for a in found.by_slide["s1"]] == [2, 1]
    missing = [r for r in found.rows if r["slide_id"] == "s2"]
    assert missing[0]["status"] == "warn" and "s2.geojson" in missing[0]["message"]
    with pytest.raises(AnnotationError, match="none of the build's slides"):
        load_annotations(folder, {"other": (50, 50)})


# -- labels in every scanner ------------------------------------------------------------------
def test_labels_match_the_truth_warped_polygons_in_every_scanner(labelled):
    group = zarr.open_group(str(labelled["build"] / "patches.zarr"), mode="r")
    classes, size = group["labels"].attrs["classes"], group.attrs["size"]
    scanners = group.attrs["scanners"]
    patches = pd.read_parquet(labelled["build"] / "manifests" / "patches.parquet")
    inter = np.zeros((len(scanners), len(classes)))
    union = np.zeros_like(inter)
    for row in patches[patches["status"] != "failed"].itertuples():
        truth = load_truth(labelled["synth"], row.slide_id)
        features = read_features(labelled["synth"], row.slide_id)
        p2s = geo.from_six(row.patch_to_slide)
        want = truth_label_map(truth, features, classes, row.scanner, p2s, size)
        got = group["labels"][row.index, row.scanner_index]
        for c in range(1, len(classes)):
            inter[row.scanner_index, c] += np.sum((got == c) & (want == c))
            union[row.scanner_index, c] += np.sum((got == c) | (want == c))
    assert (union[:, 1:] > 1000).all(), "every class should be in the samples"
    iou = inter[:, 1:] / union[:, 1:]
    assert (iou >= MIN_IOU).all(), dict(zip(scanners, iou.round(4).tolist(), strict=True))
    for scanner, turn in labelled["turns"].items():
        assert turn in truth.scenarios[scanner]


def test_labels_array_and_annotations_manifest(labelled):
    group = zarr.open_group(str(labelled["build"] / "patches.zarr"), mode="r")
    patches, labels = group["patches"], group["labels"]
    assert labels.shape == patches.shape[:4] and labels.dtype == np.uint8
    assert labels.attrs["classes"] == ["background", "cancer_area", "cancer_stroma"]
    assert labels.chunks == (1, 1, *patches.shape[2:4])
    table = pd.read_parquet(labelled["build"] / "manifests" / "annotations.parquet")
    assert set(table["status"]) == {"ok"} and len(table) == 2
    doc = json.loads(next((labelled["synth"] / "annotations").glob("*.geojson")).read_text())
    geoms = [shape(f["geometry"]) for f in doc["features"]]
    parts = [p for g in geoms for p in shapely.get_parts(g)]
    assert any(g.geom_type == "MultiPolygon" for g in geoms), "truth should have islands"
    assert sum(len(p.interiors) for p in parts) > 10, "truth should have holes (lumens)"


def _copy_build(labelled: dict, tmp_path: Path) -> Path:
    build = tmp_path / "build"
    shutil.copytree(labelled["build"], build)
    return build


def test_bad_features_are_reported_by_extract_and_the_build_completes(labelled, tmp_path):
    build = _copy_build(labelled, tmp_path)
    folder = tmp_path / "ann"
    shutil.copytree(labelled["synth"] / "annotations", folder)
    path = next(folder.glob("*.geojson"))
    doc = json.loads(path.read_text())
    doc["features"].append(
        feature({"type": "Polygon", "coordinates": [square(0, 0, 50)]}, "necrosis")
    )
    path.write_text(json.dumps(doc))
    classes = tmp_path / "classes.json"
    classes.write_text(json.dumps(["background", "cancer_area", "cancer_stroma"]))
    args = [*extract_args(build, folder), "--classes", str(classes)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert "annotations: 3 rows - ok 2, warn 0, failed 1" in result.output
    assert "synth_000 / 2: feature 2: class 'necrosis' is not in the class list" in result.output
    assert "patches: 15 rows - ok 15" in result.output
    # and the report lists the feature among the failures
    assert CliRunner().invoke(main, ["analyze", str(build), "--features", "none"]).exit_code == 0
    html = (build / "report" / "index.html").read_text()
    assert "synth_000 / 2" in html and "class &#39;necrosis&#39; is not in the class list" in html


def test_roi_class_samples_only_inside_that_class(labelled, tmp_path):
    build = _copy_build(labelled, tmp_path)
    args = extract_args(build, labelled["synth"] / "annotations")
    result = CliRunner().invoke(main, [*args, "--roi-class", "cancer_stroma"])
    assert result.exit_code == 0, result.output
    labels = zarr.open_group(str(build / "patches.zarr"), mode="r")["labels"][:, 0]
    stroma = (labels == 2).mean(axis=(1, 2))
    before = zarr.open_group(str(labelled["build"] / "patches.zarr"), mode="r")["labels"][:, 0]
    assert len(stroma) >= 1 and stroma.min() >= 0.4, stroma
    assert stroma.mean() > (before == 2).mean(), "ROI sampling should favour the class"
    bad = CliRunner().invoke(main, [*args, "--roi-class", "nerve"])
    assert bad.exit_code != 0 and "--roi-class nerve: not an annotated class" in bad.output
    alone = CliRunner().invoke(main, ["extract", str(build), "--roi-class", "cancer_stroma"])
    assert alone.exit_code != 0
    assert "--roi-class ['cancer_stroma']: needs 'annotations' as well" in alone.output


# -- export and the paired dataset ------------------------------------------------------------
@pytest.fixture(scope="module")
def release(labelled, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("release") / "release"
    result = CliRunner().invoke(
        main, ["export", str(labelled["build"]), str(out), "--format", "png"]
    )
    assert result.exit_code == 0, result.output
    return out


def test_export_writes_label_maps_per_sample_and_scanner(labelled, release):
    from scorpion_build.bench.layout import read_label_map

    group = zarr.open_group(str(labelled["build"] / "patches.zarr"), mode="r")
    scanners = group.attrs["scanners"]
    sample = release / "slide_1" / "sample_2"
    assert np.array_equal(read_label_map(sample / "label.png"), group["labels"][1, 0])
    for k, scanner in enumerate(scanners):
        assert np.array_equal(
            read_label_map(sample / "labels" / f"{scanner}.png"), group["labels"][1, k]
        )
    assert json.loads((release / "classes.json").read_text()) == group["labels"].attrs["classes"]
    assert json.loads((release / "attrs.json").read_text())["mpp"] == group.attrs["mpp"]


def test_paired_patches_are_identical_over_build_store_and_release(labelled, release):
    import torch

    from scorpion_build.data import PairedPatches, iter_paired

    sources = [labelled["build"], labelled["build"] / "patches.zarr", release]
    sets = [PairedPatches(p, scanners=["P1000", "AT2"]) for p in sources]
    assert [len(s) for s in sets] == [3, 3, 3]
    assert (
        sets[0].sample_ids
        == sets[2].sample_ids
        == ["synth_000_r00", "synth_000_r01", "synth_000_r02"]
    )
    for i in range(3):
        first = sets[0][i]
        assert first["images"]["P1000"].shape == (3, 128, 128)
        assert first["labels"]["AT2"].dtype == torch.int64
        for other in sets[1:]:
            item = other[i]
            for key in ("images", "labels"):
                for scanner in ("P1000", "AT2"):
                    assert torch.equal(first[key][scanner], item[key][scanner])
    flipped = PairedPatches(release, transform=lambda item: {**item, "flipped": True})[0]
    assert flipped["flipped"] and torch.equal(flipped["images"]["AT2"], sets[0][0]["images"]["AT2"])
    plain = next(iter_paired(release, scanners=["GT450"]))
    assert isinstance(plain["images"]["GT450"], np.ndarray)
    assert np.array_equal(plain["labels"]["GT450"], sets[0].source.read_labels(0, 2))
    # a worker process gets the dataset pickled
    batch = next(iter(torch.utils.data.DataLoader(sets[2], batch_size=2, num_workers=1)))
    assert batch["images"]["AT2"].shape == (2, 3, 128, 128)


def test_paired_patches_errors_name_the_fix(labelled, tmp_path):
    from scorpion_build.bench.layout import DataError
    from scorpion_build.data import PairedData

    with pytest.raises(DataError, match=r"no scanner\(s\) \['NDP'\]"):
        PairedData(labelled["build"], scanners=["NDP"])
    bare = tmp_path / "bare.zarr"
    group = zarr.open_group(str(bare), mode="w")
    group.create_array("patches", shape=(1, 2, 8, 8, 3), dtype="uint8")
    with pytest.raises(DataError, match="extract --annotations"):
        PairedData(bare)
    assert len(PairedData(bare, with_labels=False)) == 1
    broken = tmp_path / "release"
    (broken / "slide_1" / "sample_1").mkdir(parents=True)
    (broken / "slide_1" / "sample_1" / "AT2.png").write_bytes(b"")
    (broken / "classes.json").write_text("[background")
    with pytest.raises(DataError, match=r"classes.json: not readable JSON"):
        PairedData(broken)


def test_benchmark_labels_use_each_scanners_label_map(labelled, tmp_path):
    from scorpion_build.benchmark import run_benchmark

    labels = zarr.open_group(str(labelled["build"] / "patches.zarr"), mode="r")["labels"][:]
    labels[:, 1] = 0  # the second scanner predicts background everywhere
    preds = zarr.create_array(
        str(tmp_path / "p.zarr"),
        shape=labels.shape,
        dtype="uint8",
        chunks=(1, 1, *labels.shape[2:]),
    )
    preds[:] = labels
    result = run_benchmark(
        labelled["build"],
        tmp_path / "out",
        predictions=tmp_path / "p.zarr",
        labels=True,
        n_bootstrap=0,
        progress=False,
    )
    per = result.report["task_dice"]["per_scanner"]
    scanners = result.report["scanners"]
    assert per[scanners[0]]["dice"] == 1.0 and per[scanners[2]]["dice"] == 1.0
    assert per[scanners[1]]["dice"] < 0.5 and per[scanners[1]]["n"] == 3
    # the HTML report shows task Dice per scanner beside the consistency
    build = _copy_build(labelled, tmp_path)
    args = ["analyze", str(build), "--features", "none", "--benchmark", str(tmp_path / "out")]
    assert CliRunner().invoke(main, args).exit_code == 0
    html = (build / "report" / "index.html").read_text()
    assert 'id="benchmark-task"' in html
    assert f'<tr><td>{scanners[0]}</td><td class="num">1.000</td>' in html


def test_report_shows_the_label_overlay_across_scanners(labelled, tmp_path):
    build = _copy_build(labelled, tmp_path)
    result = CliRunner().invoke(main, ["analyze", str(build), "--features", "none"])
    assert result.exit_code == 0, result.output
    html = (build / "report" / "index.html").read_text()
    assert 'id="labels"' in html and 'src="figures/labels.png"' in html
    assert (build / "report" / "figures" / "labels.png").stat().st_size > 10_000


def test_the_iterator_needs_no_torch(labelled):
    import subprocess
    import sys

    code = (
        "import sys; from scorpion_build.data import iter_paired; "
        f"items = list(iter_paired({str(labelled['build'])!r})); "
        "assert len(items) == 3 and 'torch' not in sys.modules, sorted(sys.modules)[:5]"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_samples_of_unannotated_slides_are_not_labelled(labelled, tmp_path):
    from scorpion_build.annotations import AnnotationSet
    from scorpion_build.data import PairedData
    from scorpion_build.labels import UNANNOTATED, create_labels_array

    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="w")
    samples = pd.DataFrame({"slide_id": ["a", "b", "a"], "index": [0, 1, 2]})
    labels = create_labels_array(group, samples, 2, 8, AnnotationSet(CLASSES, {"a": []}))
    assert labels.attrs[UNANNOTATED] == [1] and labels.attrs["classes"] == CLASSES
    # the fixture build with its second sample's slide marked unannotated
    build = _copy_build(labelled, tmp_path)
    store = zarr.open_group(str(build / "patches.zarr"), mode="r+")
    store["labels"].attrs[UNANNOTATED] = [1]
    assert PairedData(build).sample_ids == ["synth_000_r00", "synth_000_r02"]
    assert len(PairedData(build, with_labels=False)) == 3
    out = tmp_path / "release"
    assert CliRunner().invoke(main, ["export", str(build), str(out)]).exit_code == 0
    assert (out / "slide_1" / "sample_1" / "label.png").is_file()
    assert not (out / "slide_1" / "sample_2" / "label.png").exists()
    assert not (out / "slide_1" / "sample_2" / "labels").exists()
    assert PairedData(out).sample_ids == ["synth_000_r00", "synth_000_r02"]
