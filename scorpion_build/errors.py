"""The errors every stage shares; each message names the file or key and the fix.

The CLI prints them as one line (no traceback unless ``--debug``).
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A setting the tool cannot use (a pipeline YAML key, a training option); the message
    names the key (with the YAML line where there is one) and the fix."""


class DataError(ValueError):
    """Input data a stage cannot use (a patch store, a release folder, a training set); the
    message names the file and the fix."""
