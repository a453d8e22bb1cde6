"""Independent, named random streams, so each output depends only on the seed and its own name.

Keying streams by name (slide index, scanner, purpose) rather than drawing from one shared
generator keeps a scan byte-identical when other scanners or slides are added or removed.
"""

from __future__ import annotations

import zlib

import numpy as np


def rng_for(seed: int, *keys: object) -> np.random.Generator:
    """A generator seeded by ``seed`` and the given keys (str or int), stable across runs."""
    words = [int(seed) & 0xFFFFFFFF]
    for key in keys:
        words.append(zlib.crc32(str(key).encode()) & 0xFFFFFFFF)
    return np.random.default_rng(np.random.SeedSequence(words))
