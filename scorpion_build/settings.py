"""One typed definition per setting: its dataclass field carries type, default, range or
choices and help, and the CLI options, pipeline YAML checks and docs tables come from it.

A config dataclass declares each setting once::

    fine_mpp: float = setting(2.0, "Block refinement resolution in um/px.", above=0)

:func:`check_settings` validates an instance against those declarations (the one validator
for the CLI, ``scorpion-build run`` and the library), :func:`click_option` turns a field into
its Click option, and :mod:`scorpion_build.settings_docs` writes the docs' option tables.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

from scorpion_build.options import OptionError, check_choice, check_number

_KEY = "scorpion_build.setting"


@dataclass(frozen=True)
class Spec:
    """What a field's metadata says about a setting, besides its name, type and default.

    ``minimum``/``maximum`` are inclusive bounds, ``above``/``below`` exclusive ones (in
    the setting's own unit); ``choices`` the accepted strings; ``shown`` the default in words
    where the value alone would mislead (``None`` meaning "one per CPU"); ``flag`` the CLI
    spelling when it is not ``--name`` (``--no-refine``); ``metavar`` the CLI placeholder;
    ``requires`` another setting of the same config this one means nothing without, and
    ``excludes`` one it cannot be given with (checked by :func:`check_settings`).
    """

    help: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None
    below: float | None = None
    shown: str | None = None
    flag: str | None = None
    metavar: str | None = None
    requires: str | None = None
    excludes: str | None = None


@dataclass(frozen=True)
class Setting:
    """One setting of a config dataclass: ``name`` (underscores), value type, default, spec."""

    name: str
    kind: type  # int, float, str, bool or list (of str)
    optional: bool  # None is a valid value
    default: Any
    spec: Spec

    @property
    def option(self) -> str:
        """The CLI and YAML spelling, ``--region-um`` without the dashes in front."""
        return self.name.replace("_", "-")

    @property
    def default_text(self) -> str:
        """The default as the docs and ``--help`` show it ("" when there is none)."""
        if self.spec.shown is not None:
            return self.spec.shown
        if self.default is None or self.default == [] or self.default is dataclasses.MISSING:
            return ""
        if self.kind is bool:
            return "on" if self.default else "off"
        return f"{self.default:g}" if self.kind is float else str(self.default)

    def check(self, value: Any) -> None:
        """Raise :class:`~scorpion_build.options.OptionError` unless ``value`` is valid."""
        if value is None and self.optional:
            return
        if self.spec.choices:
            check_choice(self.name, value, self.spec.choices)
        elif self.kind in (int, float):
            s = self.spec
            check_number(
                self.name,
                value,
                minimum=s.minimum,
                maximum=s.maximum,
                above=s.above,
                below=s.below,
                integer=self.kind is int,
            )
        elif self.kind is bool and not isinstance(value, bool):
            raise OptionError(self.name, value, "must be true or false")


def setting(default: Any = dataclasses.MISSING, help: str = "", **spec: Any) -> Any:  # noqa: A002
    """A dataclass field declaring one setting (see :class:`Spec` for ``spec``'s keys).

    A list default becomes a fresh empty list per instance.
    """
    if "choices" in spec:
        spec["choices"] = tuple(spec["choices"])
    metadata = {_KEY: Spec(help=help, **spec)}
    if isinstance(default, list):
        return dataclasses.field(default_factory=list, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@functools.cache
def settings_of(cls: type) -> dict[str, Setting]:
    """Every declared setting of dataclass ``cls``, by field name, in declaration order
    (computed once per class; do not modify the result)."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        if _KEY not in f.metadata:
            continue
        kind, optional = _kind(hints[f.name])
        default = [] if f.default_factory is list else f.default  # type: ignore[comparison-overlap]
        out[f.name] = Setting(f.name, kind, optional, default, f.metadata[_KEY])
    return out


def _kind(hint: Any) -> tuple[type, bool]:
    """(value type, whether None is allowed) of a field's type hint."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _kind(inner[0])[0], type(None) in args
    if typing.get_origin(hint) is list:
        return list, False
    return hint, False


def check_settings(config: Any) -> None:
    """Validate every declared setting of a config dataclass instance (raises ``OptionError``).

    Called from the config's ``__post_init__``: every value is checked before anything is
    opened (``docs/contracts.md`` section 3).
    """
    items = settings_of(type(config))
    for name, item in items.items():
        item.check(getattr(config, name))
    for name, item in items.items():  # a given setting and the others it depends on
        value = getattr(config, name)
        needs, clashes = item.spec.requires, item.spec.excludes
        if value and needs in items and not getattr(config, needs):
            raise OptionError(name, value, f"needs '{items[needs].option}' as well")
        if value and clashes in items and getattr(config, clashes):
            raise OptionError(name, value, f"cannot be given with '{items[clashes].option}'")


class SettingOption(click.Option):
    """A Click option made from a setting; ``setting`` is kept for the docs' tables."""

    def __init__(self, *args: Any, setting: Setting, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.setting = setting


def click_option(cls: type, name: str, *param: str, **extra: Any) -> Callable[[Callable], Callable]:
    """The Click option of setting ``name`` of ``cls``: its flag, type, default and help.

    ``param`` names the command's parameter when it is not the option's own name;
    ``extra`` adds or overrides Click keywords (a ``click.Path`` type; ``flag``: the option's
    spelling where a command needs another, such as ``--fda-beta`` for FDA's ``beta``).
    Ranges are checked by the config's own validator, not by Click, so the CLI, the
    pipeline and the library give the same message for the same mistake (Click checks the
    type and the choices).
    """
    item = settings_of(cls)[name]
    spec = item.spec
    decls = [extra.pop("flag", None) or spec.flag or f"--{item.option}"]
    kwargs: dict[str, Any] = {"help": spec.help, "cls": SettingOption, "setting": item}
    if spec.flag and spec.flag.startswith("--no-"):
        kwargs["is_flag"] = True
    elif item.kind is bool:
        decls = [f"{decls[0]}/--no-{decls[0][2:]}"]
        kwargs["default"] = item.default
    else:
        kwargs["type"] = click.Choice(spec.choices) if spec.choices else item.kind
        kwargs["default"] = None if item.default is dataclasses.MISSING else item.default
        if item.kind is list:
            kwargs.update(type=str, multiple=True, default=())
    if spec.metavar:
        kwargs["metavar"] = spec.metavar
    if spec.shown is not None:  # words, not a value: Click would show them in parentheses
        kwargs["help"] = f"{spec.help}  [default: {spec.shown}]"
    elif item.default_text and not kwargs.get("is_flag"):
        kwargs["show_default"] = True
    kwargs.update(extra)
    return click.option(*decls, *param, **kwargs)


def defaults_for_help(
    cls: type, name: str, *param: str, **extra: Any
) -> Callable[[Callable], Callable]:
    """Like :func:`click_option`, but the option's value is None unless given (a config file
    may set it); its help still shows the setting's default."""
    item = settings_of(cls)[name]
    kwargs: dict[str, Any] = {"default": () if item.kind is list else None}
    if item.default_text:
        kwargs["help"] = f"{item.spec.help}  [default: {item.default_text}]"
    return click_option(cls, name, *param, **{**kwargs, **extra})


def combine_settings(
    name: str, *parts: tuple[type, tuple[str, ...] | None], module: str | None = None
) -> type:
    """A dataclass ``name`` holding settings declared elsewhere: ``(cls, names)`` takes
    settings ``names`` of ``cls`` (None: all of them), in order.

    For a pipeline stage made of a library config and its own keys (``register``'s YAML
    keys are four of :class:`~scorpion_build.register.pair.RegisterConfig`'s settings);
    its instances are checked by the same declarations (:func:`check_settings`).
    ``module`` is where the new class is said to live (the caller's ``__name__``).
    """
    copies = []
    for cls, names in parts:
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if _KEY in f.metadata}
        for key in names or tuple(fields):
            f = fields[key]
            if f.default_factory is not dataclasses.MISSING:
                copy = dataclasses.field(default_factory=f.default_factory, metadata=f.metadata)
            else:
                copy = dataclasses.field(default=f.default, metadata=f.metadata)
            copies.append((key, hints[key], copy))
    namespace = {"__post_init__": check_settings, "__module__": module or __name__}
    return dataclasses.make_dataclass(name, copies, namespace=namespace)
