"""Pipeline YAML: typed options, errors naming key and line, stage selection."""

from __future__ import annotations

from pathlib import Path

import pytest

from scorpion_build.manifest import schemas_markdown
from scorpion_build.pipeline import ConfigError, load_config
from scorpion_build.pipeline.runner import select_stages

REPO = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return path


def test_shipped_pipelines_are_valid():
    demo = load_config(REPO / "pipelines" / "demo.yaml")
    assert demo.stages() == ["synth", "scan", "register", "extract", "export", "analyze"]
    assert demo.extract.region_um == 400.0 and demo.extract.size == 512
    assert demo.path(demo.extract.annotations) == demo.build_dir / "synth" / "annotations"
    assert demo.build_dir == (REPO / "demo_build").resolve()
    sc = load_config(REPO / "pipelines" / "scorpion.yaml")
    assert (sc.extract.regions, sc.extract.region_um, sc.extract.size) == (10, 800.0, 1024)
    assert sc.scan.reference == "AT2" and sc.export.format == "jpg"


def test_unknown_key_names_key_and_line(tmp_path):
    path = _write(tmp_path, "build: b\nextract:\n  regions: 3\n  regoins: 4\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert f"{path}:4" in str(err.value) and "extract.regoins" in str(err.value)
    assert "region-um" in str(err.value)  # lists the valid keys


def test_wrong_type_names_key_and_line(tmp_path):
    path = _write(tmp_path, "build: b\nscan:\n  reference: AT2\nextract:\n  size: big\n")
    with pytest.raises(ConfigError, match=r"p.yaml:5: 'extract.size' must be int, got 'big'"):
        load_config(path)
    path = _write(tmp_path, "build: b\nextract:\n  refine: 3\n")
    with pytest.raises(ConfigError, match="must be bool"):
        load_config(path)


def test_missing_build_and_bad_sections(tmp_path):
    with pytest.raises(ConfigError, match="needs 'build'"):
        load_config(_write(tmp_path, "scan: {}\n"))
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(_write(tmp_path, "build: b\nscan: [1, 2]\n"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_write(tmp_path, "build: [\n"))


def test_dashes_and_underscores_and_int_as_float(tmp_path):
    cfg = load_config(_write(tmp_path, "build: b\nextract:\n  region_um: 500\n  min-tissue: 1\n"))
    assert cfg.extract.region_um == 500.0 and isinstance(cfg.extract.min_tissue, float)


def test_stage_selection(tmp_path):
    cfg = load_config(REPO / "pipelines" / "demo.yaml")
    assert select_stages(cfg, "register", "export") == ["register", "extract", "export"]
    assert select_stages(cfg, None, "scan") == ["synth", "scan"]
    with pytest.raises(ValueError, match="not a stage"):
        select_stages(cfg, "bogus", None)


def test_schema_doc_is_current():
    assert (REPO / "manifests" / "SCHEMAS.md").read_text() == schemas_markdown()


def test_a_new_benchmark_report_reruns_analyze(tmp_path):
    from scorpion_build.pipeline.runner import fingerprint

    yaml = tmp_path / "p.yaml"
    yaml.write_text(
        f"build: {tmp_path / 'b'}\nbenchmark:\n  predictions: preds.zarr\nanalyze:\n"
        "  features: none\n"
    )
    config = load_config(yaml)
    before = fingerprint(config, "analyze", "prev")
    report = tmp_path / "b" / "benchmark" / "report.json"
    report.parent.mkdir(parents=True)
    report.write_text("{}")
    assert fingerprint(config, "analyze", "prev") != before


def test_extract_annotation_keys_and_their_files_in_the_fingerprint(tmp_path):
    from scorpion_build.pipeline.runner import fingerprint

    ann = tmp_path / "ann"
    ann.mkdir()
    (ann / "s1.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    text = "build: b\nextract:\n  annotations: ann\n  roi-class: tumour\n"
    config = load_config(_write(tmp_path, text))
    assert config.extract.annotations == "ann" and config.extract.roi_class == ["tumour"]
    before = fingerprint(config, "extract", "")
    (ann / "s2.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    assert fingerprint(config, "extract", "") != before


def test_a_new_analyze_weights_file_reruns_analyze(tmp_path):
    from scorpion_build.pipeline.runner import fingerprint

    weights = tmp_path / "resnet50.pth"
    weights.write_bytes(b"v1")
    text = "build: b\nanalyze:\n  features: resnet50\n  weights: resnet50.pth\n"
    config = load_config(_write(tmp_path, text))
    before = fingerprint(config, "analyze", "prev")
    weights.write_bytes(b"v2 with other numbers")
    assert fingerprint(config, "analyze", "prev") != before
