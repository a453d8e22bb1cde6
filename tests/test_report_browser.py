"""The report in a real browser: headless Chromium opens index.html from disk, every image
loads, and a screenshot is taken. Skips when Chromium is not installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import cv2
import pytest
from test_analysis import make_build

from scorpion_build.analysis import analyze_build
from scorpion_build.report.check import check_pictures

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Written into a copy of the page beside it (same relative paths): after the load event,
# records how many <img> there are and which did not decode (naturalWidth 0).
CHECK = """<script>
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (i) { return !i.complete || i.naturalWidth === 0; });
  var marker = document.createElement("div");
  marker.id = "image-check";
  marker.setAttribute("data-total", images.length);
  marker.setAttribute("data-broken", broken.map(function (i) { return i.getAttribute("src"); })
    .join("|"));
  document.body.appendChild(marker);
});
</script>"""
MARKER = re.compile(r'id="image-check" data-total="(\d+)" data-broken="([^"]*)"')

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium)"
)


def chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"chromium did not finish within 120 s: {args}")


def image_check(page: Path, profile: Path) -> tuple[int, list[str]]:
    """(number of <img>, srcs of those that failed to load) as Chromium saw them."""
    checked = page.with_name("_browser_check.html")
    checked.write_text(page.read_text().replace("</body>", CHECK + "</body>"))
    try:
        result = chromium(["--virtual-time-budget=10000", "--dump-dom", checked.as_uri()], profile)
    finally:
        checked.unlink()
    found = MARKER.search(result.stdout)
    assert found, f"no load marker in the DOM; chromium stderr:\n{result.stderr[-2000:]}"
    return int(found[1]), [s for s in found[2].split("|") if s]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    root = make_build(tmp_path_factory.mktemp("browser") / "build")
    return analyze_build(root, features="resnet50", input_px=32, device="cpu")


def test_every_image_loads_in_chromium(report, tmp_path):
    n_img = report.read_text().count("<img ")
    # 5 QC overlays, alignment, 2 flagged pairs, colour density, UMAP, montage, heatmap
    assert n_img == 12
    total, broken = image_check(report, tmp_path / "profile")
    assert total == n_img and broken == []
    assert check_pictures(report) == []  # and none of them is blank
    # and the check does see a missing picture
    (report.parent / "figures" / "montage.png").unlink()
    total, broken = image_check(report, tmp_path / "profile")
    assert broken == ["figures/montage.png"]


def test_screenshot_of_the_report(report, tmp_path):
    shot = tmp_path / "report.png"
    result = chromium(
        ["--window-size=1280,2000", f"--screenshot={shot}", report.as_uri()], tmp_path / "p"
    )
    assert shot.is_file(), f"no screenshot; chromium stderr:\n{result.stderr[-2000:]}"
    image = cv2.imread(str(shot))
    assert image.shape[:2] == (2000, 1280)
    # a page, not a blank or error screen: the dark header band and varied content below
    assert image[:40].mean() < 90 and image[100:].std() > 20
