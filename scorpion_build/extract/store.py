"""The ``patches.zarr`` store an extraction writes into (``docs/contracts.md`` section 4)."""

from __future__ import annotations

from pathlib import Path

import zarr

from scorpion_build.extract.config import ExtractConfig
from scorpion_build.integrity import open_patch_array
from scorpion_build.manifest import BuildDir
from scorpion_build.zarr_jpeg import JpegCodec

PATCHES_ARRAY = "patches"


def create_store(
    path: Path, n: int, scanners: list[str], reference: str, config: ExtractConfig
) -> None:
    """A new group at ``path`` with an empty ``patches`` array (n, S, size, size, 3) uint8,
    one chunk per patch, compressed as ``config.compression`` says, and the attributes
    readers need (scanners, reference, mpp, region_um, size, config_key)."""
    group = zarr.open_group(str(path), mode="w")
    serializer, compressors = "auto", None
    if config.compression == "zstd":
        compressors = [zarr.codecs.BloscCodec(cname="zstd", clevel=1, shuffle="noshuffle")]
    elif config.compression == "jpeg":
        serializer = JpegCodec(quality=95)
    group.create_array(
        PATCHES_ARRAY,
        shape=(n, len(scanners), config.size, config.size, 3),
        chunks=(1, 1, config.size, config.size, 3),
        dtype="uint8",
        fill_value=0,
        serializer=serializer,
        compressors=compressors,
    )
    group.attrs.update(
        {
            "scanners": scanners,
            "reference": reference,
            "mpp": config.mpp,
            "region_um": config.region_um,
            "size": config.size,
            "config_key": config.key(),
        }
    )


def store_opens(build: BuildDir) -> bool:
    """The finished store's metadata is intact (else a new store is built beside it)."""
    try:
        open_patch_array(build.zarr, build.root)
    except (OSError, ValueError):
        return False
    return True
