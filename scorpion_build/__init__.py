"""scorpion-build: scanner-paired patch datasets from multi-scanner whole-slide images."""

import contextlib

__version__ = "0.1.0"

# patches.zarr stores written with `--compression jpeg` name this codec: register it so any
# reader that imports the package can open them (skipped if zarr itself is missing)
with contextlib.suppress(ImportError):
    import scorpion_build.zarr_jpeg  # noqa: F401
