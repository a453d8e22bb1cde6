"""A Zarr v3 array->bytes codec storing each RGB patch chunk as one JPEG (opt-in, lossy).

Lossless Blosc/Zstd is the default for ``patches.zarr``; JPEG trades exactness for ~10x
smaller stores. Readers must ``import scorpion_build.zarr_jpeg`` (importing
``scorpion_build.extract`` does it) so Zarr knows the codec name ``scorpion.jpeg``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from zarr.abc.codec import ArrayBytesCodec
from zarr.core.array_spec import ArraySpec
from zarr.core.buffer import Buffer, NDBuffer
from zarr.registry import register_codec

CODEC_NAME = "scorpion.jpeg"


@dataclass(frozen=True)
class JpegCodec(ArrayBytesCodec):
    """Chunks of shape (..., H, W, 3) uint8 with all leading dims 1, encoded as JPEG."""

    is_fixed_size = False
    quality: int = 95

    @classmethod
    def from_dict(cls, data: dict) -> JpegCodec:
        return cls(**(data.get("configuration") or {}))

    def to_dict(self) -> dict:
        return {"name": CODEC_NAME, "configuration": {"quality": self.quality}}

    def _encode_sync(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer | None:
        rgb = np.asarray(chunk_array.as_ndarray_like())
        h, w, c = rgb.shape[-3:]
        if c != 3 or int(np.prod(rgb.shape[:-3])) != 1:
            raise ValueError("the JPEG codec needs chunks of one RGB image, (1, 1, H, W, 3)")
        bgr = cv2.cvtColor(np.ascontiguousarray(rgb.reshape(h, w, 3)), cv2.COLOR_RGB2BGR)
        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise ValueError("JPEG encoding failed")
        return chunk_spec.prototype.buffer.from_bytes(data.tobytes())

    def _decode_sync(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        data = np.frombuffer(chunk_bytes.to_bytes(), np.uint8)
        rgb = cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        return chunk_spec.prototype.nd_buffer.from_ndarray_like(rgb.reshape(chunk_spec.shape))

    async def _encode_single(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer | None:
        return self._encode_sync(chunk_array, chunk_spec)

    async def _decode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        return self._decode_sync(chunk_bytes, chunk_spec)

    def compute_encoded_size(self, input_byte_length: int, chunk_spec: ArraySpec) -> int:
        raise NotImplementedError("JPEG size is data dependent")


register_codec(CODEC_NAME, JpegCodec)
