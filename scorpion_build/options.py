"""Checks of option and config values, shared by the CLI and ``scorpion-build run``.

Every stage validates its whole configuration before it opens any output (see
``docs/contracts.md`` section 3): a typo must never cost a finished build.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

DEVICES = ("auto", "cpu", "cuda")  # torch devices a command accepts; auto: CUDA when present


class OptionError(ValueError):
    """One option value is out of range, of the wrong type, or not one of the choices.

    ``option`` is the option's name with underscores (``region_um``); the CLI shows it as
    ``--region-um``, the pipeline as ``extract.region-um`` with its line in the YAML file.
    """

    def __init__(self, option: str, value: Any, problem: str) -> None:
        self.option, self.value, self.problem = option, value, problem
        super().__init__(f"{option.replace('_', '-')} {value!r}: {problem}")


def check_number(
    option: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
    below: float | None = None,
    integer: bool = False,
) -> None:
    """Raise :class:`OptionError` unless ``value`` is a finite number in range.

    ``minimum``/``maximum`` are inclusive bounds, ``above``/``below`` exclusive ones.
    """
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise OptionError(option, value, "must be an integer" if integer else "must be a number")
    if not math.isfinite(value):
        raise OptionError(option, value, "must be a finite number")
    if minimum is not None and value < minimum:
        raise OptionError(option, value, f"must be >= {minimum:g}")
    if above is not None and value <= above:
        raise OptionError(option, value, f"must be > {above:g}")
    if maximum is not None and value > maximum:
        raise OptionError(option, value, f"must be <= {maximum:g}")
    if below is not None and value >= below:
        raise OptionError(option, value, f"must be < {below:g}")


def check_choice(option: str, value: Any, choices: Iterable[str]) -> None:
    """Raise :class:`OptionError` unless ``value`` is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise OptionError(option, value, f"choose one of {', '.join(choices)}")


def check_workers(workers: int | None) -> None:
    """``None`` (one per CPU) or a positive number of local worker processes."""
    if workers is not None:
        check_number("workers", workers, minimum=1, integer=True)


# tcp://host:port, tls://host:port, ucx://..., inproc://..., or a bare host:port
_ADDRESS = re.compile(r"^(?:(tcp|tls|ucx|inproc|ws|wss)://)?[^\s/:]+(?::\d{1,5})?/?$")


def check_scheduler(address: str | None) -> None:
    """A dask.distributed scheduler address such as ``tcp://10.0.0.5:8786`` (or None)."""
    if address is None:
        return
    if not isinstance(address, str) or not _ADDRESS.match(address) or ":" not in address:
        raise OptionError(
            "scheduler",
            address,
            "not a scheduler address; give one like tcp://host:8786 (printed by "
            "`dask scheduler`), or leave it out to run locally",
        )
