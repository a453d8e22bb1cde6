"""SimCons training (SCORPION paper): style augmentation + consistency loss, on torch.

The public surface: :class:`TrainConfig` and :func:`train`; the building blocks
(augmentations, losses, data checks) live in their own modules.
"""

from scorpion_build.train.config import ConfigError, TrainConfig
from scorpion_build.train.data import DataError, load_labelled_data
from scorpion_build.train.trainer import RunError, TrainResult, train

__all__ = [
    "ConfigError",
    "DataError",
    "RunError",
    "TrainConfig",
    "TrainResult",
    "load_labelled_data",
    "train",
]
