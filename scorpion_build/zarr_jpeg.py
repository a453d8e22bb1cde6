"""JPEG chunks for ``patches.zarr`` (``extract --compression jpeg``: lossy, ~10x smaller).

Each chunk (one RGB patch) is one baseline JPEG made by imagecodecs (libjpeg-turbo), and
the store names the codec the way imagecodecs' own Zarr 3 codecs do,
``{"name": "imagecodecs_jpeg", "configuration": {"level": 95}}`` (``docs/contracts.md``
section 4). So a reader with imagecodecs' Zarr codecs (the ``imagecodecs-zarr`` entry
points) opens a store without this package, and plain zarr code finds this module's codec
through the ``zarr.codecs`` entry point scorpion-build installs. Only zarr's public codec
API is used. Stores from before this name (``scorpion.jpeg``) still open.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import imagecodecs
import numpy as np
from zarr.abc.codec import ArrayBytesCodec
from zarr.registry import register_codec

if TYPE_CHECKING:
    from zarr.abc.codec import Buffer, NDBuffer

CODEC_NAME = "imagecodecs_jpeg"
LEGACY_NAME = "scorpion.jpeg"  # what stores written before imagecodecs' name carry


@dataclass(frozen=True)
class JpegCodec(ArrayBytesCodec):
    """Chunks of shape (..., H, W, 3) uint8 with all leading dims 1, encoded as JPEG.

    ``quality`` is the JPEG quality, 1-100 (imagecodecs' ``level``).
    """

    is_fixed_size = False
    quality: int = 95

    @classmethod
    def from_dict(cls, data: dict) -> JpegCodec:
        config = dict(data.get("configuration") or {})
        quality = config.pop("level", config.pop("quality", 95))  # "quality": legacy stores
        if config:
            raise ValueError(f"{CODEC_NAME}: unsupported settings {sorted(config)}")
        return cls(quality=int(quality))

    def to_dict(self) -> dict:
        return {"name": CODEC_NAME, "configuration": {"level": self.quality}}

    # chunk_spec is zarr's ArraySpec, which zarr exposes only from a private module
    def _encode_sync(self, chunk_array: NDBuffer, chunk_spec: Any) -> Buffer | None:
        rgb = np.asarray(chunk_array.as_ndarray_like())
        h, w, c = rgb.shape[-3:]
        if c != 3 or int(np.prod(rgb.shape[:-3])) != 1:
            raise ValueError("the JPEG codec needs chunks of one RGB image, (1, 1, H, W, 3)")
        data = imagecodecs.jpeg8_encode(
            np.ascontiguousarray(rgb.reshape(h, w, 3)), level=self.quality
        )
        return chunk_spec.prototype.buffer.from_bytes(data)

    def _decode_sync(self, chunk_bytes: Buffer, chunk_spec: Any) -> NDBuffer:
        rgb = imagecodecs.jpeg8_decode(chunk_bytes.to_bytes())
        return chunk_spec.prototype.nd_buffer.from_ndarray_like(rgb.reshape(chunk_spec.shape))

    async def _encode_single(self, chunk_array: NDBuffer, chunk_spec: Any) -> Buffer | None:
        return self._encode_sync(chunk_array, chunk_spec)

    async def _decode_single(self, chunk_bytes: Buffer, chunk_spec: Any) -> NDBuffer:
        return self._decode_sync(chunk_bytes, chunk_spec)

    def compute_encoded_size(self, input_byte_length: int, chunk_spec: Any) -> int:
        raise NotImplementedError("JPEG size is data dependent")


# What zarr decodes ``imagecodecs_jpeg`` with: imagecodecs' own Zarr 3 codec where that
# imagecodecs has one (2026.5 on, Python 3.12 on), else JpegCodec. The entry point in
# pyproject.toml names this too, so zarr holds one class per name and never has to pick.
try:
    from imagecodecs.zarr import Jpeg as ReadCodec
except ImportError:
    ReadCodec = JpegCodec

register_codec(CODEC_NAME, ReadCodec)
register_codec(LEGACY_NAME, JpegCodec)
