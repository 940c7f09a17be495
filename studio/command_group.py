"""The `studio` command group and `parse`: every command, its options, and the parsed command line.

Every command lives in its own module under `studio/commands/` (`import_.py` is `studio import`,
`export_model.py` is `studio export-model`) as a `command` object; `LazyGroup` lists them from the
file names and imports a module only when its command runs (or `studio --help` lists them), so
`studio` alone opens the app without importing any, and command modules import their heavy
dependencies (torch, duckdb work, openai) inside their handlers.

What the bare `studio` does is the caller's: studio.cli (the entry point) builds the group with
the handler that opens the app; the app's IPC server (studio/ipc_server.py) builds it without one,
for it serves only commands. So this module imports neither the app nor the entry point.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import click

from .commands._command import ARGV, RUNNER, Call, Handler, StudioGroup, option, workspace_options

PROG = "studio"
COMPLETE_VAR = "_STUDIO_COMPLETE"
DISTRIBUTION = "finetune-studio"  # pyproject's project name: the version is read from its metadata


def command_names() -> dict[str, str]:
    """{command name: module name} from the files in studio/commands/ (no import)."""
    import studio.commands as pkg

    names = (m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_"))
    return {n.rstrip("_").replace("_", "-"): n for n in names}


class LazyGroup(StudioGroup):
    """`studio`'s commands, each imported from its module when it is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(command_names())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = command_names().get(cmd_name)
        if module is None:
            return None
        return importlib.import_module(f"studio.commands.{module}").command


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from importlib.metadata import PackageNotFoundError, version

    try:
        text = version(DISTRIBUTION)
    except PackageNotFoundError:
        text = f"unknown ({DISTRIBUTION} is not installed; `pip install -e .` records its version)"
    click.echo(f"{PROG} {text}")
    ctx.exit()


@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="print the studio's version and exit")
@workspace_options
@option("--serve", is_flag=True, help="serve the studio to a browser on 127.0.0.1 instead of this terminal")
@option("--port", type=int, default=8566, help="port for --serve (default 8566)")
@option("--verbose", is_flag=True, help="show the libraries' own logs, warnings and progress bars")
def _top_options() -> None:
    """Only carries the decorators above: `studio`'s own options."""


def build_group(default: Handler | None) -> LazyGroup:
    """The `studio` group; `default` runs for a command line that names no command (None: such a
    line is a usage error, exit 2)."""
    return LazyGroup(
        PROG, params=list(reversed(_top_options.__click_params__)), default=default,  # type: ignore[attr-defined]
        help="Curate instruction data and fine-tune a model from the terminal. "
             "With no command, opens the studio on the workspace.",
        epilog="`studio COMMAND --help` says what a command does, with examples.\n"
               f'shell completion (bash): eval "$({COMPLETE_VAR}=bash_source studio)" '
               "(zsh_source, fish_source for those shells)",
        context_settings={"help_option_names": ["-h", "--help"]},
    )


def parse(group: click.Group, argv: list[str]) -> Call:
    """The command `argv` names with its Args, run by calling it. Prints help or the version and
    raises click.exceptions.Exit for --help/--version; raises click.UsageError (exit 2) for a bad
    command line. Nothing else runs: command modules load only the one named."""
    calls: list[Call] = []
    with group.make_context(PROG, list(argv)) as ctx:
        ctx.meta[ARGV] = list(argv)
        ctx.meta[RUNNER] = calls.append
        group.invoke(ctx)
    return calls[0]


def walk(command: click.Command, path: tuple[str, ...] = ()) -> Any:
    """(command path, click command) for `command` and every sub-command below it (imports them all)."""
    yield path, command
    if isinstance(command, click.Group):
        ctx = click.Context(command, info_name=path[-1] if path else PROG)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None:
                yield from walk(sub, path + (name,))
