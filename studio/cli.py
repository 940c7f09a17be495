"""`studio`: the entry point, on click. With no command it opens the Textual app on the workspace.

The commands, their options and `parse` are studio/command_group.py; this module builds the group
with the handler that opens the app (`open_app`), and `main` runs a parsed command line and says a
user's error (StudioError, TrainingError, a full disk) in one line. Shell completion is click's own:
`eval "$(_STUDIO_COMPLETE=bash_source studio)"` (zsh_source, fish_source for those shells).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from curation.errors import StudioError
from training.errors import TrainingError

from . import command_group
from .command_group import COMPLETE_VAR, PROG, build_group
from .commands._command import Args, Call


def open_app(args: Args) -> int:
    from .commands._common import workspace_path

    return run_app(workspace_path(args), serve=args.serve, port=args.port)


cli = build_group(default=open_app)


def parse(argv: list[str]) -> Call:
    """`studio`'s command line parsed (studio.command_group.parse): the Call that runs it."""
    return command_group.parse(cli, argv)


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


def walk() -> Any:
    """(command path, click command) for `studio` and every command and sub-command (imports them all)."""
    return command_group.walk(cli)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
