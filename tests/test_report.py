"""HTML report: names every failure and flagged patch, survives missing stages, shows the
benchmark, and is self-contained (relative images that exist, nothing from the network)."""

from __future__ import annotations

import shutil
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from test_analysis import FAILED_PATCH, REGION_WARNING, WARN_MESSAGE, WARN_PATCH, make_build

from scorpion_build.analysis import analyze_build
from scorpion_build.cli.main import main
from scorpion_build.manifest import BuildDir
from scorpion_build.report.check import check_pictures
from scorpion_build.report.summary import load_benchmark


class Page(HTMLParser):
    """Images, links, scripts and table rows (as lists of cell texts) of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.scripts = 0
        self.rows: list[tuple[str, list[str]]] = []  # (table id, cell texts)
        self._table = ""
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            self.images.append(a.get("src") or "")
        elif tag in ("a", "link"):
            self.links.append(a.get("href") or "")
        elif tag == "script":
            self.scripts += 1
        elif tag == "table":
            self._table = a.get("id") or ""
        elif tag == "tr":
            self.rows.append((self._table, []))
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self.rows:
            self.rows[-1][1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def row_with(page: Page, table: str, *cells: str) -> list[str]:
    """The first row of table ``table`` (its id) holding every given text as a whole cell."""
    for table_id, row in page.rows:
        if table_id == table and all(c in row for c in cells):
            return row
    raise AssertionError(f"no row with cells {cells} in table #{table}")


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    root = make_build(tmp_path_factory.mktemp("report") / "build")
    return analyze_build(root, features="none")


def test_report_is_written_in_the_build(report):
    assert report.name == "index.html" and report.parent.name == "report"
    assert report.parent.parent.joinpath("manifests").is_dir()


def test_report_names_every_failed_slide_with_its_message(report):
    page = parse(report)
    row = row_with(page, "problems", "slides", "s2 / P1000")
    assert "failed" in row and "truncated file: re-copy s2/P1000.svs" in row
    row = row_with(page, "problems", "registrations", "s2 / P1000")
    assert "slide scan failed, not registered" in row
    row = row_with(page, "problems", "registrations", "s1 / GT450")
    assert "warn" in row and "residual 1.5 um above 1 um" in row


def test_identical_warnings_are_one_row_with_count_and_items(report):
    page = parse(report)
    rows = [r for t, r in page.rows if t == "problems" and REGION_WARNING in r]
    assert len(rows) == 1
    assert rows[0][3] == "3" and rows[0][4] == "s1 / 0, s1 / 1, s1 / 2"


def test_scan_table_flags_an_override(report):
    page = parse(report)
    row = row_with(page, "scans-table", "s1", "GT450")
    assert "override" in row and "mpp override" in row
    assert "aperio" in row and "SVS (TIFF)" in row and "0.2500 / 0.2500" in row
    assert "1.00 x 0.75" in row  # 4000 x 3000 px at 0.25 um/px, in mm
    plain = row_with(page, "scans-table", "s1", "P1000")
    assert "metadata" in plain and plain[-1] == ""
    failed = row_with(page, "scans-table", "s2", "P1000")
    assert failed[-1] == "failed: truncated file: re-copy s2/P1000.svs"
    text = report.read_text()
    assert '<tr class="flag">' in text and '<td class="override">override</td>' in text


def test_every_picture_exists_and_is_not_blank(report, tmp_path):
    assert check_pictures(report) == []
    # and the check sees a blank and a missing picture (on a copy of the report folder)
    copy = tmp_path / "build"
    shutil.copytree(report.parent.parent, copy)
    page = copy / "report" / "index.html"
    cv2.imwrite(
        str(copy / "report" / "figures" / "montage.png"), np.full((30, 30, 3), 255, np.uint8)
    )
    (copy / "report" / "figures" / "alignment.png").unlink()
    assert sorted(check_pictures(page)) == [
        "figures/alignment.png: missing",
        "figures/montage.png: blank (a single colour)",
    ]


def test_report_names_every_flagged_patch(report):
    page = parse(report)
    warn = row_with(page, "flagged-patches", *WARN_PATCH)
    assert "warn" in warn and WARN_MESSAGE in warn and "0.210" in warn
    failed = row_with(page, "flagged-patches", *FAILED_PATCH)
    assert "failed" in failed and "truncated file: re-copy s2/P1000.svs" in failed
    # each flagged patch is shown beside its reference patch
    assert sum(src.startswith("figures/flagged/") for src in page.images) == 2


def test_report_shows_registration_overlays_and_analysis_figures(report):
    page = parse(report)
    overlays = [s for s in page.images if s.startswith("../qc/")]
    assert len(overlays) == 5  # every registered pair; the failed one has none
    for name in ("alignment.png", "channel_density.png", "montage.png"):
        assert f"figures/{name}" in page.images
    assert "Feature analysis skipped" in report.read_text()


def test_paired_deviation_table_in_report(report):
    page = parse(report)
    # the reference row is exactly zero, the others carry the scanner's colour shift
    assert row_with(page, "paired-deviation", "AT2 (reference)", "5")[2].startswith("+0.00 ")
    assert row_with(page, "paired-deviation", "GT450", "5")[2].startswith("+10.00 ")
    assert row_with(page, "paired-deviation", "P1000", "4")[4].startswith("+12.00 ")


def test_report_is_self_contained(report):
    page = parse(report)
    assert page.images and page.scripts == 0
    for src in page.images + page.links:
        assert "://" not in src and not src.startswith("//"), src
    for src in page.images:
        assert (report.parent / src).is_file(), f"image {src} missing"


def test_report_shows_the_benchmark_from_the_build(report):
    page = parse(report)
    assert row_with(page, "benchmark-pairs", "AT2-GT450", "GT450-P1000")
    row = row_with(page, "benchmark-pairs", "Dice")
    assert row[1:4] == ["0.900", "0.890", "0.880"] and row[-2:] == ["0.890", "0.880"]
    assert "figures/benchmark/pairwise_heatmap.png" in page.images
    # the bootstrap interval beside every figure that has one
    row = row_with(page, "benchmark-pairs", "interval")
    assert row[1] == "[0.850, 0.950]" and row[-2:] == ["[0.860, 0.920]", "[0.840, 0.910]"]
    text = report.read_text()
    assert "<b>0.890</b> [0.860, 0.920]" in text and "0.200 [0.000, 0.600]" in text
    assert "95% bootstrap intervals" in text
    assert row_with(page, "benchmark-classes", "tumour", "0.910", "0.870")


def test_benchmark_from_another_folder(tmp_path):
    root = make_build(tmp_path / "build")
    elsewhere = tmp_path / "bench_out"
    shutil.move(root / "benchmark", elsewhere)
    path = analyze_build(root, features="none", benchmark_dir=elsewhere)
    assert (path.parent / "figures/benchmark/pairwise_heatmap.png").is_file()
    assert "0.890" in path.read_text()
    with pytest.raises(FileNotFoundError, match=r"report\.json not found"):
        analyze_build(root, features="none", benchmark_dir=tmp_path)


def test_missing_stages_are_reported_not_raised(tmp_path):
    root = make_build(tmp_path / "build", with_benchmark=False)
    build = BuildDir.at(root)
    for name in ("registrations", "regions", "patches"):
        build.manifest(name).unlink()
    shutil.rmtree(build.zarr)
    text = analyze_build(root, features="resnet50").read_text()
    assert "not run yet: <code>scorpion-build register BUILD</code>" in text
    assert "No patch store" in text and "No benchmark results" in text
    # the slide failure is still reported from the one manifest there is
    assert "truncated file: re-copy s2/P1000.svs" in text


def test_empty_build_directory(tmp_path):
    text = analyze_build(tmp_path, features="none").read_text()
    assert text.count("not run yet") == 4


def test_cli_writes_the_report_and_prints_its_path(tmp_path):
    root = make_build(tmp_path / "build", with_benchmark=False)
    result = CliRunner().invoke(main, ["analyze", str(root), "--features", "none"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith(str(root / "report" / "index.html"))


def test_cli_bad_weights_name_the_file(tmp_path):
    root = make_build(tmp_path / "build", with_benchmark=False)
    weights = tmp_path / "weights.pth"
    weights.write_bytes(b"\x00garbage")
    result = CliRunner().invoke(main, ["analyze", str(root), "--weights", str(weights)])
    assert result.exit_code != 0
    assert "weights.pth: cannot load as weights" in result.output


def test_corrupt_benchmark_json_is_reported(tmp_path):
    (tmp_path / "report.json").write_text("{not json")
    result = load_benchmark(tmp_path, tmp_path / "copy")
    assert "report.json is not readable JSON" in result["error"]
