"""Nothing lost, nothing silent: bad options, a second writer, damaged chunks, odd names,
changed inputs and faults leave a finished build as it was and say what to do in one line."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr
from click.testing import CliRunner
from helpers import paired_build

from scorpion_build import geometry as geo
from scorpion_build.cli.main import main
from scorpion_build.manifest import BuildDir, safe_name
from scorpion_build.slide import Slide

EXTRACT = ["--regions", "3", "--region-um", "150", "--size", "64", "--seed", "1", "--workers", "1"]


def _invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (but the lock file and the logs) and a hash of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".lock" and p.relative_to(root).parts[0] != "logs"
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory, cmu_svs):
    """A finished two-scanner build: extracted and exported, never modified by tests."""
    with Slide(cmu_svs) as s:
        texture = s.read(0, (0, 0, 1200, 1400))
    h, w = texture.shape[:2]
    truth = geo.compose(geo.translation(3.0, -2.0), geo.rotation_deg(1.0, w / 2, h / 2))
    root, _ = paired_build(tmp_path_factory.mktemp("safe"), texture, truth)
    result = _invoke("extract", root, *EXTRACT)
    assert result.exit_code == 0, result.output
    result = _invoke("export", root, root / "release")
    assert result.exit_code == 0, result.output
    return root


@pytest.fixture()
def build(finished, tmp_path):
    """A private copy of the finished build (with its slides) for tests that change it."""
    shutil.copytree(finished.parent, tmp_path / "copy", symlinks=True)
    root = tmp_path / "copy" / "build"
    slides = BuildDir.at(root).read("slides")
    slides["path"] = [p.replace(str(finished.parent), str(tmp_path / "copy")) for p in slides.path]
    BuildDir.at(root).write("slides", slides)
    csv = tmp_path / "copy" / "slides.csv"
    csv.write_text(csv.read_text().replace(str(finished.parent), str(tmp_path / "copy")))
    return root


def _chunk(root: Path, n: int, s: int) -> Path:
    return root / "patches.zarr" / "patches" / "c" / str(n) / str(s) / "0" / "0" / "0"


# -- bad options ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ["extract", "--size", "0"],
        ["extract", "--size", "-5"],
        ["extract", "--regions", "0"],
        ["extract", "--region-um", "0"],
        ["extract", "--min-tissue", "-1"],
        ["extract", "--workers", "-1"],
        ["extract", "--workers", "0"],
        ["extract", "--force", "--scheduler", "notanaddress"],
        ["extract", "--force", "--roi-class", "tumour"],  # needs --annotations
        ["register", "--fine-mpp", "0"],
        ["register", "--max-blocks", "0"],
        ["register", "--workers", "0"],
        ["export", "--quality", "500"],
    ],
    ids=lambda a: " ".join(a),
)
def test_bad_option_leaves_finished_build_byte_identical(finished, args):
    before = _snapshot(finished)
    extra = [finished / "release"] if args[0] == "export" else []
    result = _invoke(args[0], finished, *extra, *args[1:])
    assert result.exit_code == 2, result.output
    assert "invalid value for --" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert _snapshot(finished) == before


def test_bad_regions_from_table_names_its_line(finished, tmp_path):
    before = _snapshot(finished)
    csv = tmp_path / "regions.csv"
    csv.write_text("slide_id,x_um,y_um\ns1,10,20\ns1,abc,20\n")
    result = _invoke("extract", finished, *EXTRACT, "--regions-from", csv)
    _one_line_error(result, f"{csv}: 'x_um' is not a number on line(s) 3")
    assert _snapshot(finished) == before


def test_run_refuses_a_bad_scheduler_before_touching_the_build(tmp_path):
    yaml = tmp_path / "p.yaml"
    yaml.write_text(f"build: {tmp_path / 'b'}\nscan:\n  input: {tmp_path}\n")
    result = _invoke("run", yaml, "--scheduler", "notanaddress")
    assert result.exit_code == 2 and "invalid value for --scheduler" in result.output
    assert not (tmp_path / "b").exists()


def test_unreachable_scheduler_keeps_the_finished_store(build):
    before = _snapshot(build)
    result = _invoke("extract", build, *EXTRACT, "--force", "--scheduler", "tcp://127.0.0.1:9")
    assert result.exit_code == 1
    assert "cannot reach the dask scheduler at tcp://127.0.0.1:9" in result.output
    assert _snapshot(build) == before  # the old store is replaced only by a complete new one


def test_pipeline_yaml_uses_the_same_validators(tmp_path):
    from scorpion_build.pipeline import ConfigError, load_config

    for stage, text, key in [
        ("extract", "regions: 0", "extract.regions"),
        ("extract", "compression: lzma", "extract.compression"),
        ("export", "quality: 500", "export.quality"),
    ]:
        path = tmp_path / "p.yaml"
        path.write_text(f"build: b\nworkers: 1\n{stage}:\n  {text}\n")
        with pytest.raises(ConfigError, match=rf"p.yaml:4: '{key}'"):
            load_config(path)
    path.write_text("build: b\nworkers: -1\n")
    with pytest.raises(ConfigError, match=r"p.yaml:2: 'workers' -1: must be >= 1"):
        load_config(path)


def test_new_settings_swap_in_a_complete_store_only(build):
    """A changed option builds the new store beside the old; a kill mid-way keeps the old."""
    from helpers import kill_during_extract

    before = _snapshot(build)
    args = ["extract", str(build), *EXTRACT[:-4], "--seed", "2", "--workers", "1"]
    kill_during_extract(args, build, after_samples=1)
    after = _snapshot(build)
    staged = {k for k in after if k.startswith(".state/extract-new/")}
    assert staged and {k: v for k, v in after.items() if k not in staged} == before
    result = _invoke(*args)
    assert result.exit_code == 0, result.output
    assert not (build / ".state" / "extract-new").exists()
    assert zarr.open_group(str(build / "patches.zarr"), mode="r")["patches"].shape[0] == 3


# -- one writer -----------------------------------------------------------------------------
HOLD = """
import sys
from scorpion_build.lock import build_lock
with build_lock(sys.argv[1]):
    print("locked", flush=True)
    sys.stdin.read()
"""


def test_second_writer_is_refused_and_a_killed_holder_leaves_no_stale_lock(build):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(build)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = _invoke("extract", build, *EXTRACT)
        assert result.exit_code == 1
        assert f"another scorpion-build run is using {build} (pid {holder.pid})" in result.output
    finally:
        holder.kill()  # SIGKILL: the kernel drops its lock
        holder.wait()
    result = _invoke("extract", build, *EXTRACT)
    assert result.exit_code == 0, result.output


# -- trust the store ------------------------------------------------------------------------
def test_missing_and_corrupt_chunks_are_found_refused_and_repaired(build, tmp_path):
    good = zarr.open_group(str(build / "patches.zarr"), mode="r")["patches"][:]
    _chunk(build, 0, 1).unlink()
    _chunk(build, 1, 0).write_bytes(b"not a zstd chunk")
    result = _invoke("verify", build)
    assert result.exit_code == 1
    sample0, sample1 = (f"s1_r{i:02d}" for i in (0, 1))
    assert f"{sample0} B: chunk is missing" in result.output
    assert f"{sample1} AT2: chunk cannot be decoded" in result.output
    result = _invoke("export", build, tmp_path / "out")
    assert result.exit_code == 1 and "verify" in result.output and "--repair" in result.output
    assert not (tmp_path / "out").exists()
    result = _invoke("verify", build, "--repair", "--workers", "1")
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(
        zarr.open_group(str(build / "patches.zarr"), mode="r")["patches"][:], good
    )


def test_rerun_reextracts_a_damaged_patch(build):
    good = _chunk(build, 2, 1).read_bytes()
    _chunk(build, 2, 1).unlink()
    result = _invoke("extract", build, *EXTRACT)
    assert result.exit_code == 0, result.output
    assert _chunk(build, 2, 1).read_bytes() == good


def test_analyze_refuses_a_bad_chunk(build):
    from scorpion_build.analysis.data import open_patches
    from scorpion_build.integrity import CorruptPatchError

    _chunk(build, 0, 0).unlink()
    store = open_patches(BuildDir.at(build))
    with pytest.raises(CorruptPatchError, match="s1_r00 AT2"):
        store.read(0)


def test_benchmark_source_refuses_a_bad_chunk(build):
    from scorpion_build.bench.sources import open_patch_source
    from scorpion_build.integrity import CorruptPatchError

    _chunk(build, 1, 1).write_bytes(b"garbage")
    source = open_patch_source(build)
    with pytest.raises(CorruptPatchError, match="s1_r01 B: chunk cannot be decoded"):
        source.read(1, 1)


# -- names are data -------------------------------------------------------------------------
def test_unsafe_names_fail_at_scan_and_never_become_paths(tmp_path, finished):
    tif = next((finished.parent / "slides").glob("AT2.tif"))
    csv = tmp_path / "slides.csv"
    pd.DataFrame(
        {
            "slide_id": ["../../X", "ok"],
            "scanner": ["AT2", "../../../X"],
            "path": [str(tif), str(tif)],
        }
    ).to_csv(csv, index=False)
    result = _invoke("scan", csv, "-o", tmp_path / "b")
    assert result.exit_code == 1
    slides = pd.read_parquet(tmp_path / "b" / "manifests" / "slides.parquet")
    assert (slides["status"] == "failed").all()
    assert slides["message"].str.contains("is not a safe name").all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "slides.csv"]
    assert safe_name("../../X") == "_._.._X" and safe_name(".hidden") == "_hidden"


def test_extract_does_not_write_through_a_linked_store(build, tmp_path):
    outside = tmp_path / "elsewhere"
    shutil.move(build / "patches.zarr", outside)
    (build / "patches.zarr").symlink_to(outside, target_is_directory=True)
    before = _snapshot(outside)
    result = _invoke("extract", build, *EXTRACT)
    assert result.exit_code == 1 and "is a symbolic link" in result.output
    assert _snapshot(outside) == before


def test_temp_files_of_killed_writes_are_removed(build):
    tmp = build / "manifests" / ".patches.parquet.x1y2.tmp"
    tmp.write_bytes(b"half a file")
    assert _invoke("extract", build, *EXTRACT).exit_code == 0
    assert not tmp.exists()


def test_no_write_through_a_symlink_inside_build(build, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.rmtree(build / "manifests")
    (build / "manifests").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError, match="symbolic link"):
        BuildDir.at(build).write("slides", pd.DataFrame({"a": [1]}))
    assert not any(outside.iterdir())


def test_export_does_not_follow_a_linked_release_folder(finished, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = tmp_path / "release"
    link.symlink_to(elsewhere, target_is_directory=True)
    result = _invoke("export", finished, link)
    assert result.exit_code == 2 and "is a symbolic link" in result.output
    assert not any(elsewhere.iterdir())


def test_export_refuses_a_foreign_folder_and_replaces_its_own(finished, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    result = _invoke("export", finished, foreign)
    assert result.exit_code == 2 and "not a scorpion-build export" in result.output
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    out = tmp_path / "release"
    assert _invoke("export", finished, out).exit_code == 0
    (out / "slide_1" / "stale.txt").write_text("from an older export")
    assert _invoke("export", finished, out).exit_code == 0
    assert not (out / "slide_1" / "stale.txt").exists()
    assert not list(tmp_path.glob(".*"))  # no temporary folders left


# -- inputs are tracked ---------------------------------------------------------------------
def _touch(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


def test_changed_slide_file_fails_extract_until_rescan(build):
    _touch(build.parent / "slides" / "B.tif")
    result = _invoke("extract", build, *EXTRACT)
    assert result.exit_code == 1
    patches = pd.read_parquet(build / "manifests" / "patches.parquet")
    b = patches[patches["scanner"] == "B"]
    assert (b["status"] == "failed").all()
    assert b["message"].str.contains("file changed since scan").all()


def _register_status(build: Path) -> str:
    result = _invoke("register", build, "--workers", "1")
    table = pd.read_parquet(build / "manifests" / "registrations.parquet")
    row = table[table["scanner"] == "B"].iloc[0]
    assert (result.exit_code == 1) == (row["status"] == "failed"), result.output
    return f"{row['status']}: {row['message']}"


def test_changed_slide_file_fails_register_until_rescan(build):
    assert not _register_status(build).startswith("failed")
    _touch(build.parent / "slides" / "B.tif")
    assert _register_status(build).startswith("failed: ")
    assert "file changed since scan (modification time); re-run scan" in _register_status(build)
    assert _invoke("scan", build.parent / "slides.csv", "-o", build).exit_code == 0
    assert not _register_status(build).startswith("failed")


def test_pair_failed_for_a_missing_file_is_retried_after_rescan(build):
    tif = build.parent / "slides" / "B.tif"
    tif.rename(tif.with_suffix(".bak"))
    assert "is missing (it was there at scan)" in _register_status(build)
    tif.with_suffix(".bak").rename(tif)
    assert _invoke("scan", build.parent / "slides.csv", "-o", build).exit_code == 0
    assert not _register_status(build).startswith("failed")


def test_pair_that_crashed_is_retried_not_cached(build, monkeypatch):
    import scorpion_build.register.tasks as tasks

    real = tasks.register_pair

    def unreadable(*_args, **_kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(tasks, "register_pair", unreadable)
    assert "Input/output error" in _register_status(build)
    monkeypatch.setattr(tasks, "register_pair", real)
    assert not _register_status(build).startswith("failed")


def test_register_refuses_another_reference(build):
    result = _invoke("register", build, "--reference", "B")
    assert result.exit_code == 1
    assert "--reference B differs from the reference scan chose (AT2)" in result.output


# -- one-line errors ------------------------------------------------------------------------
def _one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()  # progress lines may come before it
    assert lines[-1].startswith("Error: "), result.output
    assert not any(line.startswith("Error") for line in lines[:-1]), result.output
    for needle in needles:
        assert needle in lines[-1], lines[-1]


def test_real_cli_prints_exactly_one_line(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from scorpion_build.cli import main; main()",
            "extract",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("Error: "), proc.stderr
    assert "slides.parquet not found" in proc.stderr


def test_blank_scanner_cell(tmp_path):
    csv = tmp_path / "slides.csv"
    csv.write_text("slide_id,scanner,path\ns1,AT2,a.svs\ns1,,b.svs\n")
    _one_line_error(_invoke("scan", csv, "-o", tmp_path / "b"), "blank 'scanner' on line(s) 3")


def test_truncated_manifest_names_file_and_command(build):
    path = build / "manifests" / "patches.parquet"
    path.write_bytes(path.read_bytes()[:100])
    _one_line_error(
        _invoke("export", build, build.parent / "out"),
        f"{path} is damaged",
        f"scorpion-build extract {build}",
    )


def test_damaged_store_metadata_is_one_line_and_a_rerun_rebuilds_it(build):
    good = _snapshot(build / "patches.zarr")
    (build / "patches.zarr" / "patches" / "zarr.json").write_text("{cut sho")
    _one_line_error(
        _invoke("export", build, build.parent / "out"),
        f"{build / 'patches.zarr'} is damaged",
        f"scorpion-build extract {build} --force",
    )
    result = _invoke("extract", build, *EXTRACT)
    assert result.exit_code == 0, result.output
    assert _snapshot(build / "patches.zarr") == good


def test_invalid_json_next_to_checkpoints_is_recomputed(build):
    before = zarr.open_group(str(build / "patches.zarr"), mode="r")["patches"][:]
    (build / ".state" / "extract" / "config.json").write_text("{not json")
    marker = next((build / ".state" / "extract" / "samples").glob("*.json"))
    marker.write_text("[{")
    result = _invoke("extract", build, *EXTRACT)
    assert result.exit_code == 0, result.output
    after = zarr.open_group(str(build / "patches.zarr"), mode="r")["patches"][:]
    np.testing.assert_array_equal(before, after)


def test_disk_full_during_export_is_one_line_and_keeps_the_old_export(
    finished, tmp_path, monkeypatch
):
    import scorpion_build.export as export

    out = tmp_path / "release"
    assert _invoke("export", finished, out).exit_code == 0
    before = _snapshot(out)

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(out / "x.jpg"))

    monkeypatch.setattr(export, "_write_release", full)
    _one_line_error(_invoke("export", finished, out), "no space left on device")
    assert _snapshot(out) == before


def test_read_only_build_is_one_line(build, monkeypatch):
    import scorpion_build.lock as lock

    real_open = os.open

    def read_only(path, *args, **kwargs):
        if str(path).endswith(".lock"):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(lock.os, "open", read_only)
    _one_line_error(_invoke("extract", build, *EXTRACT), "read-only file system")


def test_disk_full_while_registering_is_one_line(build, monkeypatch):
    def full(self, name, table):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.manifest(name)))

    monkeypatch.setattr(BuildDir, "write", full)
    _one_line_error(
        _invoke("register", build, "--workers", "1"),
        "registrations.parquet: no space left on device",
    )


def test_read_only_and_debug(build, monkeypatch):
    from scorpion_build.errors import error_line

    exc = OSError(errno.EROFS, "Read-only file system", "/ro/build/.lock")
    assert (
        error_line(exc) == "/ro/build/.lock: read-only file system; choose a writable "
        "build or output folder"
    )
    result = CliRunner().invoke(main, ["--debug", "register", str(build), "--reference", "B"])
    assert result.exit_code == 1 and isinstance(result.exception, ValueError)
