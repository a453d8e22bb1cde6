"""The docs' option tables, written from the commands and settings themselves.

A table sits between ``<!-- options: NAME -->`` and ``<!-- /options -->`` in a Markdown
file; NAME is a command (``train``: every option of ``scorpion-build train``) or
``pipeline`` (every stage key of a pipeline YAML file). ``python -m
scorpion_build.settings_docs`` rewrites the tables in README.md and docs/*.md;
``--check`` lists the stale ones and exits 1 (the test suite runs the same check).
"""

from __future__ import annotations

import re
import sys
import typing
from pathlib import Path

import click

from scorpion_build.settings import Setting, SettingOption, settings_of

MARKER = re.compile(r"(<!-- options: ([\w-]+) -->\n)(.*?)(<!-- /options -->)", re.S)
HEADER = "| option | default | |\n|---|---|---|\n"


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell (pipes escaped, one line)."""
    return " ".join(text.split()).replace("|", "\\|")


def _metavar(param: click.Option) -> str:
    """The option's value placeholder as the docs write it (``FILE``, ``a|b``, ``N``)."""
    if param.is_flag or param.count:
        return ""
    kind = param.type
    if isinstance(kind, click.Choice):
        return "|".join(kind.choices)
    if param.metavar:
        return param.metavar
    if isinstance(kind, click.Path):
        return "FILE" if not kind.dir_okay else "DIR" if not kind.file_okay else "PATH"
    names = {"integer": "N", "float": "X", "integer range": "N", "float range": "X"}
    return names.get(kind.name, "TEXT")


def _default(param: click.Option) -> str:
    """The default as ``--help`` shows it ("" when none is shown)."""
    if isinstance(param, SettingOption):
        return param.setting.default_text
    if param.required:
        return "required"
    if isinstance(param.show_default, str):
        return param.show_default
    if not param.show_default or param.default in (None, ()):
        return ""
    if isinstance(param.default, bool):
        return "on" if param.default else "off"
    return f"{param.default:g}" if isinstance(param.default, float) else str(param.default)


def _help(param: click.Option) -> str:
    """The option's help without Click's trailing ``[default: ...]`` (its own column)."""
    if isinstance(param, SettingOption):
        return param.setting.spec.help
    return re.sub(r"\s*\[default: [^]]*\]\s*$", "", param.help or "")


def command_table(command: click.Command) -> str:
    """One row per option of ``command`` (``--help`` left out): flags, default, help."""
    rows = []
    for param in command.params:
        if not isinstance(param, click.Option) or param.hidden:
            continue
        flags = ", ".join(param.opts)
        if param.secondary_opts:
            flags += " / " + ", ".join(param.secondary_opts)
        value = _metavar(param)
        option = f"`{flags} {value}`" if value else f"`{flags}`"
        rows.append(f"| {_cell(option)} | {_cell(_default(param))} | {_cell(_help(param))} |")
    return HEADER + "\n".join(rows) + "\n"


def _key_row(stage: str | None, item: Setting) -> str:
    choices = f" One of {', '.join(item.spec.choices)}." if item.spec.choices else ""
    key = f"`{stage}.{item.option}`" if stage else f"`{item.option}`"
    return f"| {key} | {_cell(item.default_text)} | {_cell(item.spec.help + choices)} |"


def pipeline_table() -> str:
    """One row per key of a pipeline file's stages (``docs/build-scorpion.md``)."""
    from scorpion_build.pipeline.config import STAGES, PipelineConfig

    hints = typing.get_type_hints(PipelineConfig)
    rows = [_key_row(None, item) for item in settings_of(PipelineConfig).values()]
    for stage in STAGES:
        cls = next(a for a in typing.get_args(hints[stage]) if a is not type(None))
        rows += [_key_row(stage, item) for item in settings_of(cls).values()]
    return "| key | default | |\n|---|---|---|\n" + "\n".join(rows) + "\n"


def table(name: str) -> str:
    """The table called ``name`` in the docs' markers."""
    if name == "pipeline":
        return pipeline_table()
    from scorpion_build.cli.main import main

    command = main.get_command(click.Context(main), name)
    if command is None:
        raise KeyError(f"<!-- options: {name} -->: no such command or table")
    return command_table(command)


def render(text: str) -> str:
    """``text`` with every marked table rewritten."""
    return MARKER.sub(lambda m: m.group(1) + table(m.group(2)) + m.group(4), text)


def doc_files(repo: Path) -> list[Path]:
    """The Markdown files that may hold tables: README.md and docs/*.md."""
    return [repo / "README.md", *sorted((repo / "docs").glob("*.md"))]


def stale(repo: Path) -> list[Path]:
    """The doc files whose tables differ from what :func:`render` writes."""
    return [p for p in doc_files(repo) if render(p.read_text()) != p.read_text()]


def main(argv: list[str] | None = None) -> int:
    """Rewrite the tables (or, with ``--check``, list the stale files and return 1)."""
    args = sys.argv[1:] if argv is None else argv
    repo = Path(__file__).resolve().parents[1]
    old = stale(repo)
    if "--check" not in args:
        for path in old:
            path.write_text(render(path.read_text()))
    what = "stale" if "--check" in args else "updated"
    for path in old:
        print(f"{path.relative_to(repo)}: option tables {what}")
    return 1 if old and "--check" in args else 0


if __name__ == "__main__":
    sys.exit(main())
