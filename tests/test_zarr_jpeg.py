"""`extract --compression jpeg` stores: imagecodecs' JPEG under imagecodecs' codec name."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import cv2
import numpy as np
import pytest
import zarr

from scorpion_build.zarr_jpeg import CODEC_NAME, JpegCodec


def _jpeg_store(path: Path, patch: np.ndarray) -> zarr.Array:
    array = zarr.open_group(path, mode="w").create_array(
        "patches",
        shape=(1, 1, *patch.shape),
        chunks=(1, 1, *patch.shape),
        dtype=np.uint8,
        serializer=JpegCodec(quality=95),
        compressors=None,
    )
    array[0, 0] = patch
    return array


@pytest.fixture
def patch() -> np.ndarray:
    noise = np.random.default_rng(3).integers(0, 255, (64, 48, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (5, 5), 2)  # tissue-like: smooth, not white noise


def test_chunks_are_the_same_jpeg_bytes_and_pixels_as_before(tmp_path, patch):
    # before imagecodecs, chunks were OpenCV's baseline JPEG at quality 95 (of BGR input)
    _jpeg_store(tmp_path / "p.zarr", patch)
    chunk = (tmp_path / "p.zarr" / "patches" / "c" / "0" / "0" / "0" / "0" / "0").read_bytes()
    bgr = cv2.cvtColor(patch, cv2.COLOR_RGB2BGR)
    before = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    assert chunk == before
    decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(before, np.uint8), 1), cv2.COLOR_BGR2RGB)
    again = zarr.open_group(tmp_path / "p.zarr", mode="r")["patches"][0, 0]
    np.testing.assert_array_equal(again, decoded)


def test_the_store_names_imagecodecs_codec(tmp_path, patch):
    _jpeg_store(tmp_path / "p.zarr", patch)
    meta = json.loads((tmp_path / "p.zarr" / "patches" / "zarr.json").read_text())
    assert meta["codecs"] == [{"name": CODEC_NAME, "configuration": {"level": 95}}]


def test_a_store_written_before_still_opens(tmp_path, patch):
    array = _jpeg_store(tmp_path / "p.zarr", patch)
    meta_file = tmp_path / "p.zarr" / "patches" / "zarr.json"
    meta = json.loads(meta_file.read_text())
    meta["codecs"] = [{"name": "scorpion.jpeg", "configuration": {"quality": 95}}]
    meta_file.write_text(json.dumps(meta))
    old = zarr.open_group(tmp_path / "p.zarr", mode="r")["patches"]
    np.testing.assert_array_equal(old[0, 0], array[0, 0])


def test_plain_zarr_code_opens_a_jpeg_store(tmp_path, patch):
    names = {e.name for e in entry_points(group="zarr.codecs")}
    if CODEC_NAME not in names:
        pytest.skip(
            "installed scorpion-build predates its zarr.codecs entry point: pip install -e ."
        )
    array = _jpeg_store(tmp_path / "p.zarr", patch)
    code = "import sys, zarr; print(int(zarr.open_array(sys.argv[1])[0, 0].sum()))"
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "p.zarr" / "patches")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == int(array[0, 0].astype(np.int64).sum())
