"""`studio`: the command line. With no command it opens the Textual app on the workspace.

Every command lives in its own module under `studio/commands/` with `register(subparsers)`; this
file discovers them, so adding a command touches no shared file. Command modules import their
heavy dependencies (torch, duckdb work, openai) inside their handlers, never at module level.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path

from curation.errors import StudioError
from training.errors import TrainingError

from . import __version__


def command_modules() -> list:
    import studio.commands as pkg

    names = sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_"))
    return [importlib.import_module(f"studio.commands.{n}") for n in names]


def build_parser() -> argparse.ArgumentParser:
    from .commands._common import add_workspace_option

    parser = argparse.ArgumentParser(
        prog="studio",
        description="Curate instruction data and fine-tune a model from the terminal. "
        "With no command, opens the studio on the workspace.",
    )
    parser.add_argument("--version", action="version", version=f"studio {__version__}")
    add_workspace_option(parser, top_level=True)
    parser.add_argument("--serve", action="store_true", help="serve the studio to a browser on 127.0.0.1 instead of this terminal")
    parser.add_argument("--port", type=int, default=8566, help="port for --serve (default 8566)")
    parser.add_argument("--verbose", action="store_true", help="show the libraries' own logs, warnings and progress bars")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in command_modules():
        module.register(sub)
    return parser


class _QuietParser(argparse.ArgumentParser):
    def error(self, message: str):  # raise instead of printing usage and exiting
        raise ValueError(message)


def _app_only_args(argv: list[str] | None) -> argparse.Namespace | None:
    """The top-level options when argv names no command (plain `studio [-w DIR] [--serve]`), so
    opening the app skips importing every command module (some import pyarrow or numpy: 0.4 s).
    None when argv has a command, help or anything else: the full parser handles those."""
    args = sys.argv[1:] if argv is None else list(argv)
    quick = _QuietParser(add_help=False)
    add_workspace_option_top(quick)
    quick.add_argument("--serve", action="store_true")
    quick.add_argument("--port", type=int, default=8566)
    try:
        ns, rest = quick.parse_known_args(args)
    except ValueError:  # e.g. --port abc: the full parser reports it
        return None
    return None if rest else ns


def add_workspace_option_top(parser: argparse.ArgumentParser) -> None:
    from .commands._common import add_workspace_option

    add_workspace_option(parser, top_level=True)


def main(argv: list[str] | None = None) -> int:
    quick = _app_only_args(argv)
    if quick is not None:
        from .commands._common import workspace_path

        try:
            return run_app(workspace_path(quick), serve=quick.serve, port=quick.port)
        except Exception as exc:  # a StudioError, or a full disk, is one line; anything else a bug
            from curation.errors import disk_full_error
            from curation.safe_text import visible

            err = exc if isinstance(exc, StudioError) else disk_full_error(exc, workspace_path(quick))
            if err is None:
                raise
            print(f"studio: error: {visible(str(err))}", file=sys.stderr)
            return err.exit_code
    parser = build_parser()
    args = parser.parse_args(argv)
    # the command line as given: a read-only command whose workspace the studio app holds sends it
    # there to run (studio/ipc.py, _common.open_ws)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if args.command is None:
            from .commands._common import workspace_path

            return run_app(workspace_path(args), serve=args.serve, port=args.port)
        result = args.func(args)
        return int(result or 0)
    except (StudioError, TrainingError) as exc:  # the trainer's user errors are said the same way, here once
        from curation.safe_text import visible

        print(f"studio: error: {visible(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("studio: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a full disk (OSError ENOSPC, DuckDB's failed commit) is one line too
        from curation.errors import disk_full_error
        from curation.safe_text import visible

        from .commands._common import workspace_path

        err = disk_full_error(exc, workspace_path(args))
        if err is None:
            raise  # a bug: keep the traceback
        print(f"studio: error: {visible(str(err))}", file=sys.stderr)
        return err.exit_code


def run_app(workspace: Path, *, serve: bool = False, port: int = 8566) -> int:
    if serve:
        from .serve_web import serve_in_browser

        return serve_in_browser(workspace, port=port)
    from .app import StudioApp

    app = StudioApp(workspace)
    app.run()
    return int(app.return_code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
