"""Typed settings from YAML: a mapping -> a config dataclass, every error naming the key
and its line in the file.

Used for pipeline files (:func:`scorpion_build.pipeline.config.load_config`) and training
configs (:meth:`scorpion_build.train.config.TrainConfig.from_dict`). Keys may be spelled
with dashes or underscores; values are checked by the dataclass's own settings
(:func:`scorpion_build.settings.check_settings`), whose ``OptionError`` gets the line added.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from scorpion_build.errors import ConfigError
from scorpion_build.options import OptionError

# YAML scalar types accepted for each option type (an int is a fine float or str).
_SCALARS: dict[type, tuple[type, ...]] = {
    bool: (bool,),
    int: (int,),
    float: (int, float),
    str: (str, int, float),
}
Lines = dict[tuple[str, ...], int]  # key path (underscores) -> 1-based line in the file


def read_mapping(path: Path) -> tuple[dict[str, Any], Lines]:
    """The top-level mapping of YAML file ``path`` and the line of every key in it."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from exc
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    return data, _key_lines(node)


def _key_lines(node: yaml.Node | None, prefix: tuple = ()) -> Lines:
    out: Lines = {}
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = prefix + (str(k.value).replace("-", "_"),)
            out[key] = k.start_mark.line + 1
            out.update(_key_lines(v, key))
    return out


@dataclasses.dataclass(frozen=True)
class _Where:
    """Where values come from: a file (or a label such as "options") and its key lines."""

    path: Path | str
    lines: Lines

    def at(self, key: tuple) -> str:
        line = self.lines.get(key) or self.lines.get(key[:-1])
        return f"{self.path}:{line}" if line else str(self.path)


def build(
    cls: type, data: Any, path: Path | str, lines: Lines | None = None, prefix: tuple = ()
) -> Any:
    """An instance of dataclass ``cls`` from plain values (raises :class:`ConfigError`).

    ``path`` and ``lines`` (from :func:`read_mapping`) name where a bad key is; ``prefix``
    is the key path of ``data`` inside the file (``("extract",)``).
    """
    return _build(cls, data, prefix, _Where(path, lines or {}))


def _build(cls: type, data: Any, prefix: tuple, where: _Where) -> Any:
    name = ".".join(prefix) or "top level"
    if isinstance(data, cls):
        return data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where.at(prefix)}: {name} must be a mapping of options")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and f.name != "source"}
    values = {}
    for raw_key, value in data.items():
        key = str(raw_key).replace("-", "_")
        dotted = ".".join(prefix + (str(raw_key),))
        if key not in fields:
            choices = ", ".join(f.replace("_", "-") for f in fields)
            raise ConfigError(
                f"{where.at(prefix + (key,))}: unknown key '{dotted}' (expected one of: {choices})"
            )
        values[key] = _coerce(hints[key], value, prefix + (key,), where, dotted)
    missing = [
        n
        for n, f in fields.items()
        if n not in values
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
    ]
    if missing:
        raise ConfigError(f"{where.at(prefix)}: {name} needs '{missing[0]}'")
    try:
        return cls(**values)
    except OptionError as exc:  # a range or a choice: the settings' own check
        key = prefix + (exc.option,)
        dotted = ".".join(k.replace("_", "-") for k in key)
        raise ConfigError(f"{where.at(key)}: '{dotted}' {exc.value!r}: {exc.problem}") from exc


def _coerce(hint: Any, value: Any, key: tuple, where: _Where, dotted: str) -> Any:
    """``value`` as type ``hint`` (a scalar, an optional, a list or tuple, a dataclass)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, key, where, dotted)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key, where)
    if origin in (list, tuple):
        if isinstance(value, str) and origin is list:
            value = [value]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where.at(key)}: '{dotted}' must be a list, got {value!r}")
        items = [_coerce(args[0], v, key, where, dotted) for v in value]
        return items if origin is list else tuple(items)
    accepted = _SCALARS.get(hint, ())
    if isinstance(value, accepted) and (hint is bool or not isinstance(value, bool)):
        return hint(value)
    if hint is Any:
        return value
    type_name = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"{where.at(key)}: '{dotted}' must be {type_name}, got {value!r}")
