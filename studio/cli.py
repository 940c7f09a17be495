"""`studio`: the command line, on click. With no command it opens the Textual app on the workspace.

Every command lives in its own module under `studio/commands/` (`import_.py` is `studio import`,
`export_model.py` is `studio export-model`) as a `command` object; `LazyGroup` lists them from the
file names and imports a module only when its command runs (or `studio --help` lists them), so
`studio` alone opens the app without importing any, and command modules import their heavy
dependencies (torch, duckdb work, openai) inside their handlers. Shell completion is click's own:
`eval "$(_STUDIO_COMPLETE=bash_source studio)"` (zsh_source, fish_source for those shells).

`parse(argv)` parses the whole command line without running anything and returns a `Call`;
`main` runs it and says a user's error (StudioError, TrainingError, a full disk) in one line.
"""
from __future__ import annotations

import importlib
import os
import pkgutil
import sys
from pathlib import Path
from typing import Any

import click

from curation.errors import StudioError
from training.errors import TrainingError

from .commands._command import ARGV, RUNNER, Args, Call, StudioGroup, option, workspace_options

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


def open_app(args: Args) -> int:
    from .commands._common import workspace_path

    return run_app(workspace_path(args), serve=args.serve, port=args.port)


@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="print the studio's version and exit")
@workspace_options
@option("--serve", is_flag=True, help="serve the studio to a browser on 127.0.0.1 instead of this terminal")
@option("--port", type=int, default=8566, help="port for --serve (default 8566)")
@option("--verbose", is_flag=True, help="show the libraries' own logs, warnings and progress bars")
def _top_options() -> None:
    """Only carries the decorators above: `studio`'s own options."""


cli = LazyGroup(
    PROG, params=list(reversed(_top_options.__click_params__)), default=open_app,  # type: ignore[attr-defined]
    help="Curate instruction data and fine-tune a model from the terminal. "
         "With no command, opens the studio on the workspace.",
    epilog="`studio COMMAND --help` says what a command does, with examples.\n"
           f'shell completion (bash): eval "$({COMPLETE_VAR}=bash_source studio)" '
           "(zsh_source, fish_source for those shells)",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def parse(argv: list[str]) -> Call:
    """The command `argv` names with its Args, run by calling it. Prints help or the version and
    raises click.exceptions.Exit for --help/--version; raises click.UsageError (exit 2) for a bad
    command line. Nothing else runs: command modules load only the one named."""
    calls: list[Call] = []
    with cli.make_context(PROG, list(argv)) as ctx:
        ctx.meta[ARGV] = list(argv)
        ctx.meta[RUNNER] = calls.append
        cli.invoke(ctx)
    return calls[0]


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    instruction = os.environ.get(COMPLETE_VAR)
    if instruction:  # `_STUDIO_COMPLETE=bash_source studio`: the shell's script, or the completions it asks for
        from click.shell_completion import shell_complete

        return shell_complete(cli, {}, PROG, COMPLETE_VAR, instruction)
    try:
        call = parse(args)
    except click.exceptions.Exit as exc:  # --help or --version, printed
        raise SystemExit(exc.exit_code) from None
    except click.ClickException as exc:  # a mistake in the command line: usage and one line, exit 2
        exc.show()
        raise SystemExit(exc.exit_code) from None
    try:
        return call()
    except (StudioError, TrainingError) as exc:  # the trainer's user errors are said the same way, here once
        return _say(exc, exc.exit_code)
    except KeyboardInterrupt:
        print("studio: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a full disk (OSError ENOSPC, DuckDB's failed commit) is one line too
        from curation.errors import disk_full_error

        from .commands._common import workspace_path

        err = disk_full_error(exc, workspace_path(call.args))
        if err is None:
            raise  # a bug: keep the traceback
        return _say(err, err.exit_code)


def _say(exc: Exception, code: int) -> int:
    from curation.safe_text import visible

    print(f"studio: error: {visible(str(exc))}", file=sys.stderr)
    return code


def run_app(workspace: Path, *, serve: bool = False, port: int = 8566) -> int:
    if serve:
        from .serve_web import serve_in_browser

        return serve_in_browser(workspace, port=port)
    from .app import StudioApp

    app = StudioApp(workspace)
    app.run()
    return int(app.return_code or 0)


def walk(command: click.Command | None = None, path: tuple[str, ...] = ()) -> Any:
    """(command path, click command) for `studio` and every command and sub-command (imports them all)."""
    command = command or cli
    yield path, command
    if isinstance(command, click.Group):
        ctx = click.Context(command, info_name=path[-1] if path else PROG)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None:
                yield from walk(sub, path + (name,))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
