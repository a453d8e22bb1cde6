"""scorpion-build: scanner-paired patch datasets from multi-scanner whole-slide images."""

import contextlib

__version__ = "0.1.0"

# patches.zarr stores written with `--compression jpeg` name imagecodecs' JPEG codec: register
# it (zarr also finds it through the package's zarr.codecs entry point; skipped without zarr)
with contextlib.suppress(ImportError):
    import scorpion_build.zarr_jpeg  # noqa: F401
