"""The one atomic writer: all or nothing, readable like any other file."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest

from scorpion_build.files import file_sha256, write_atomic, write_json_atomic


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "report.json"
    write_json_atomic({"dice": 0.9}, path)

    def crash(tmp: str) -> None:
        with open(tmp, "w") as fh:
            fh.write('{"di')  # cut short
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_atomic(path, crash)
    assert path.read_text() == '{\n  "dice": 0.9\n}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_written_files_follow_the_umask_so_a_group_can_read_a_shared_build(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_atomic(tmp_path / "m" / "slides.parquet", lambda tmp: open(tmp, "wb").close())
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_file_sha256_is_the_sha256_of_the_bytes(tmp_path):
    data = os.urandom(3 << 20)  # more than one 1 MiB read block
    (tmp_path / "w.pth").write_bytes(data)
    assert file_sha256(tmp_path / "w.pth") == hashlib.sha256(data).hexdigest()
