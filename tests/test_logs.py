"""Logs: one file per command run in BUILD/logs/ with a line per item that warned or failed,
-v/-q on the terminal, identical problems grouped, and plain progress lines off a terminal."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from helpers import write_pyramid

from scorpion_build import logs
from scorpion_build.cli.common import group_line
from scorpion_build.cli.main import main
from scorpion_build.report.summary import group_messages


@pytest.fixture
def slide_table(tmp_path):
    """A reference scan, one scan with an mpp override and two missing files."""
    image = np.full((256, 320, 3), 235, np.uint8)
    image[60:200, 80:260] = (150, 80, 160)
    good = write_pyramid(tmp_path / "AT2.tif", image, 0.5, levels=2)
    csv = tmp_path / "slides.csv"
    pd.DataFrame(
        {
            "slide_id": ["s1", "s1", "s1", "s1"],
            "scanner": ["AT2", "GT450", "P1000", "DP200"],
            "path": [
                str(good),
                str(good),
                str(tmp_path / "gone1.svs"),
                str(tmp_path / "gone2.svs"),
            ],
            "mpp": [np.nan, 0.5, np.nan, np.nan],
        }
    ).to_csv(csv, index=False)
    return csv


def _log_lines(build):
    files = list((build / "logs").glob("scan-*.log"))
    assert len(files) == 1, files
    return files[0].read_text().splitlines()


def test_a_log_per_command_with_a_line_per_failed_item(slide_table, tmp_path):
    build = tmp_path / "build"
    result = CliRunner().invoke(main, ["scan", str(slide_table), "-o", str(build)])
    assert result.exit_code == 1, result.output
    lines = _log_lines(build)
    assert f"source={slide_table}" in lines[0] and f"build={build}" in lines[0]  # given
    failed = [line for line in lines if " ERROR " in line and "failed" in line]
    assert len(failed) == 2 and any("s1 P1000" in f and "gone1.svs" in f for f in failed)
    assert any(
        " INFO " in line and "scan: 4 rows - ok 2, warn 0, failed 2" in line for line in lines
    )
    assert "finished after" in lines[-1]


def test_terminal_groups_and_quiet_hides_information(slide_table, tmp_path):
    result = CliRunner().invoke(main, ["scan", str(slide_table), "-o", str(tmp_path / "b")])
    assert "scan: 4 rows - ok 2, warn 0, failed 2" in result.output
    # two missing files are two messages (each names its file): two error lines
    assert result.output.count("error: ") == 2
    quiet = CliRunner().invoke(main, ["scan", str(slide_table), "-o", str(tmp_path / "q"), "-q"])
    assert quiet.exit_code == 1
    assert "rows - ok" not in quiet.output and "slides x scanners" not in quiet.output
    assert quiet.output.count("error: ") == 2
    both = CliRunner().invoke(
        main, ["scan", str(slide_table), "-o", str(tmp_path / "x"), "-q", "-v"]
    )
    assert both.exit_code == 2 and "exclude each other" in both.output


def test_every_command_has_verbose_and_quiet():
    runner = CliRunner()
    for name in main.list_commands(None):
        text = runner.invoke(main, [name, "--help"]).output
        assert "-v, --verbose" in text and "-q, --quiet" in text, name


def test_no_log_folder_for_a_command_stopped_before_its_output(tmp_path):
    build = tmp_path / "not_yet"
    with logs.session("scan", build, console=False):
        logging.getLogger("scorpion_build.test").warning("held until the folder exists")
    assert not build.exists()
    # a folder created during the command receives everything logged before it
    with logs.session("scan", build, console=False):
        logging.getLogger("scorpion_build.test").warning("first")
        build.mkdir()
        logging.getLogger("scorpion_build.test").info("second")
    text = next((build / "logs").glob("scan-*.log")).read_text()
    assert text.index("WARNING") < text.index("first") < text.index("second")


def test_identical_messages_are_grouped():
    table = pd.DataFrame(
        {
            "slide_id": ["a", "b", "c", "d", "e", "f", "g", "h"],
            "status": ["warn"] * 7 + ["failed"],
            "message": ["low tissue"] * 7 + ["truncated file"],
        }
    )
    groups = group_messages(table, ["slide_id"])
    assert [(g["status"], g["count"]) for g in groups] == [("failed", 1), ("warn", 7)]
    assert groups[1]["items"] == list("abcdefg")
    assert group_line(groups[1]) == (
        "low tissue (7 items: a, b, c, d, e, f and 1 more, all in the log)"
    )
    assert group_line(groups[0]) == "h: truncated file"


def test_progress_off_a_terminal_is_plain_lines(tmp_path, capsys):
    with logs.session("demo", tmp_path, verbosity=logs.NORMAL):
        bar = logs.progress(25, "extract", "tasks")
        assert isinstance(bar, logs.PlainProgress)  # pytest's stderr is not a terminal
        for _ in range(25):
            bar.update()
        bar.close()
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = [line for line in err.splitlines() if line.startswith("extract:")]
    # one line per tenth of the work, the last at 100%
    assert len(lines) == 10 and lines[-1].startswith("extract: 25/25 tasks (100%)")
    assert lines[0].startswith("extract: 3/25 tasks (12%)")
    log_text = next((tmp_path / "logs").glob("demo-*.log")).read_text()
    assert log_text.count("scorpion_build.progress") == 10


def test_quiet_shows_no_progress(tmp_path, capsys):
    with logs.session("demo", tmp_path, verbosity=logs.QUIET):
        assert not logs.show_progress()
        for _ in logs.track(range(20), 20, "register"):
            pass
        logging.getLogger("scorpion_build.x").warning("still shown")
    err = capsys.readouterr().err
    assert "register" not in err and "warning: still shown" in err


def test_progress_on_a_terminal_is_a_bar(monkeypatch, tmp_path):
    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
    with logs.session("demo", tmp_path, console=False):
        bar = logs.progress(5, "register", "tasks")
        assert not isinstance(bar, logs.PlainProgress) and hasattr(bar, "update")
        bar.close()
