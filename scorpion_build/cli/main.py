"""The ``scorpion-build`` Click group. Each command lives in its own module and is loaded lazily."""

from __future__ import annotations

import importlib

import click

from scorpion_build.cli.common import DEBUG_ENV

# command name -> module under scorpion_build.cli holding a Click command named ``command``
COMMANDS = {
    "synth": "synth",
    "scan": "scan",
    "register": "register",
    "extract": "extract",
    "export": "export",
    "train": "train",
    "benchmark": "benchmark",
    "analyze": "analyze",
    "verify": "verify",
    "run": "run",
}


class LazyGroup(click.Group):
    """Imports a command's module only when it is used, so ``--help`` stays fast."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if _module_exists(COMMANDS[name])]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS or not _module_exists(COMMANDS[cmd_name]):
            return None
        module = importlib.import_module(f"scorpion_build.cli.{COMMANDS[cmd_name]}")
        return module.command


def _module_exists(name: str) -> bool:
    return importlib.util.find_spec(f"scorpion_build.cli.{name}") is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="scorpion-build")
@click.option(
    "--debug",
    is_flag=True,
    help=f"Show the full traceback of an error (or set {DEBUG_ENV}=1).",
)
def main(debug: bool) -> None:
    """Build scanner-paired patch datasets from multi-scanner whole-slide images,
    measure cross-scanner consistency, and train consistent models (SimCons)."""


if __name__ == "__main__":
    main()
