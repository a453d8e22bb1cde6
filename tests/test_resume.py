"""The one resume rule (scorpion_build.resume): a record is valid only while its inputs'
fingerprint matches and every output it lists is still there as it was left."""

from __future__ import annotations

import os
import shutil

from scorpion_build import resume


def _finished(root):
    (root / "out").mkdir(parents=True)
    (root / "out" / "table.parquet").write_bytes(b"rows")
    (root / "store.zarr").mkdir()
    os.utime(root / "store.zarr", ns=(10**18, 10**18))  # older than any change made below
    fp = resume.fingerprint("stage", {"size": 512}, ["a:1:2"])
    record = root / ".state" / "stage.json"
    resume.save(record, fp, ["out/table.parquet", "store.zarr"], root=root, counts={"ok": 3})
    return record, fp


def test_valid_record_is_returned_with_its_extras(tmp_path):
    record, fp = _finished(tmp_path)
    body = resume.load(record, fp, root=tmp_path)
    assert body is not None and body["counts"] == {"ok": 3}


def test_other_inputs_invalidate(tmp_path):
    record, _ = _finished(tmp_path)
    other = resume.fingerprint("stage", {"size": 256}, ["a:1:2"])
    assert resume.load(record, other, root=tmp_path) is None


def test_deleted_or_replaced_output_invalidates(tmp_path):
    record, fp = _finished(tmp_path)
    store = tmp_path / "store.zarr"
    (store / "zarr.json").write_text("{}")  # an entry added: the folder changed
    assert resume.load(record, fp, root=tmp_path) is None
    shutil.rmtree(store)
    assert resume.load(record, fp, root=tmp_path) is None
    table = tmp_path / "out" / "table.parquet"
    table.write_bytes(b"other rows")  # replaced by something else (size and time differ)
    assert resume.load(record, fp, root=tmp_path) is None


def test_damaged_or_missing_record_means_redo(tmp_path):
    record, fp = _finished(tmp_path)
    record.write_text('{"fingerprint": ')  # cut short, e.g. by a full disk
    assert resume.load(record, fp, root=tmp_path) is None
    assert resume.load(tmp_path / "none.json", fp, root=tmp_path) is None


def test_a_moved_build_keeps_its_records(tmp_path):
    _finished(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")  # copy2 keeps sizes and times
    record = tmp_path / "b" / ".state" / "stage.json"
    fp = resume.fingerprint("stage", {"size": 512}, ["a:1:2"])
    assert resume.load(record, fp, root=tmp_path / "b") is not None


def test_file_identity_tells_versions_and_missing_files_apart(tmp_path):
    path = tmp_path / "weights.pt"
    missing = resume.file_identity(path)
    path.write_bytes(b"v1")
    first = resume.file_identity(path)
    path.write_bytes(b"v22")
    os.utime(path, ns=(1, 1))
    assert len({missing, first, resume.file_identity(path)}) == 3
    folder = tmp_path / "ann"
    folder.mkdir()
    empty = resume.file_identity(folder)
    (folder / "s1.geojson").write_text("{}")
    assert resume.file_identity(folder) != empty


def test_fingerprint_is_stable_through_json():
    # a tuple read back from a JSON record is a list: both digest alike
    assert resume.fingerprint(("p", 1), {"b": 1, "a": 2}) == resume.fingerprint(
        ["p", 1], {"a": 2, "b": 1}
    )


def test_a_deeper_check_can_refuse_a_record(tmp_path):
    record, fp = _finished(tmp_path)
    assert resume.load(record, fp, root=tmp_path, check=lambda body: body["counts"]["ok"] == 3)
    assert resume.load(record, fp, root=tmp_path, check=lambda body: False) is None


def test_analysis_cache_follows_the_rule(tmp_path):
    import numpy as np

    from scorpion_build.analysis import cache

    key = cache.make_key(what="features", weights="none")
    cache.save(tmp_path, "features", key, np.arange(4.0))
    np.testing.assert_array_equal(cache.load(tmp_path, "features", key), np.arange(4.0))
    assert cache.load(tmp_path, "features", cache.make_key(what="features", weights="x")) is None
    np.save(tmp_path / "features.npy", np.zeros(7))  # replaced behind the cache's back
    assert cache.load(tmp_path, "features", key) is None


def test_extract_trusts_a_sample_marker_only_for_its_own_store(tmp_path):
    from scorpion_build.extract.resume import mark_finished, trusted_marker

    marker = tmp_path / "samples" / "s1_r00.json"
    rows = [{"sample_id": "s1_r00", "status": "failed", "message": "no tissue"}]
    mark_finished(marker, "store-a", rows)
    assert trusted_marker(marker, "store-a", arr=None) == rows  # failed rows wrote no chunk
    assert trusted_marker(marker, "store-b", arr=None) is None
    marker.write_text('[{"sample_id": "s1_r00"}]')  # a bare list: not a record, redo it
    assert trusted_marker(marker, "store-a", arr=None) is None
