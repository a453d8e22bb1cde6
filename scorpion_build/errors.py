"""The errors every stage shares, and any exception as one line a user can act on: what
failed, where, and what to do.

``error_line`` is used by the CLI (``cli/common.py`` prints it) and by ``run``'s summary of
a crashed stage.
"""

from __future__ import annotations

import errno

from scorpion_build.options import OptionError


class ConfigError(ValueError):
    """A setting the tool cannot use (a pipeline YAML key, a training option); the message
    names the key (with the YAML line where there is one) and the fix."""


class DataError(ValueError):
    """Input data a stage cannot use (a patch store, a release folder, a training set); the
    message names the file and the fix."""


# errno -> what to do about it, for the one-line message
_OS_HINTS = {
    errno.ENOSPC: "no space left on device; free some space and run again (finished work is kept)",
    errno.EDQUOT: "disk quota exceeded; free some space and run again (finished work is kept)",
    errno.EROFS: "read-only file system; choose a writable build or output folder",
    errno.EACCES: "permission denied; make it writable or choose another folder",
    errno.EPERM: "operation not permitted; make it writable or choose another folder",
}


def error_line(exc: BaseException) -> str:
    """One line that says what went wrong and what to do, for any exception."""
    if isinstance(exc, OSError) and exc.errno in _OS_HINTS:
        where = exc.filename or ""
        return f"{where}: {_OS_HINTS[exc.errno]}" if where else _OS_HINTS[exc.errno]
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    if isinstance(exc, OptionError):
        return f"invalid value for --{exc}"
    text = " ".join(str(exc).split()) or exc.__class__.__name__
    if isinstance(exc, ValueError | RuntimeError | OSError | KeyError | TimeoutError):
        return text
    return f"unexpected {exc.__class__.__name__}: {text} (please report it with the --debug output)"
