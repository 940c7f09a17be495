"""What every command shares: the --workspace and --wait options, opening the workspace, printing
safely.

Opening (`open_ws`): DuckDB lets one process hold a workspace. When another holds it, a command
with `--wait SECONDS` (or $STUDIO_WAIT) retries until then; a read-only command (READ_ONLY) whose
workspace is held by the studio app asks the app to run it (studio/ipc.py) and prints its answer.
Inside the app, the same handler runs with `serving()` set: `open_ws` then hands back the app's
workspace (on a cursor of its own, `close()` a no-op) and `out` writes to the reply.
"""
from __future__ import annotations

import argparse
import contextvars
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from curation.safe_text import visible

WORKSPACE_HELP = "workspace folder (default: $STUDIO_WORKSPACE, else ./studio-workspace)"
WAIT_HELP = ("if another process holds the workspace, wait up to SECONDS for it instead of failing "
             "(default: $STUDIO_WAIT, else 0)")
# Commands the studio app runs for another process while it holds the workspace: they only read.
READ_ONLY = ("stats", "show", "history", "export --dry-run")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (value >= 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of seconds, 0 or more")
    return value


def add_workspace_option(parser: argparse.ArgumentParser, top_level: bool = False) -> None:
    # On subcommands the default is SUPPRESS so `studio -w A import ...` is not reset by the
    # subparser; `studio import ... -w A` works too. The same for --wait.
    parser.add_argument(
        "--workspace", "-w", type=Path, metavar="DIR", help=WORKSPACE_HELP,
        default=None if top_level else argparse.SUPPRESS,
    )
    parser.add_argument("--wait", type=_seconds, metavar="SECONDS", help=WAIT_HELP,
                        default=None if top_level else argparse.SUPPRESS)
    if top_level and not getattr(parser, "_records_argv", False):
        _record_argv(parser)


def _record_argv(parser: argparse.ArgumentParser) -> None:
    """Keep the command line on the parsed namespace (`args._argv`): a read-only command that finds
    the workspace held by the studio sends it to the studio to run (studio/ipc.py)."""
    parse_known = parser.parse_known_args

    def recording(args=None, namespace=None):
        ns, rest = parse_known(args, namespace)
        ns._argv = list(sys.argv[1:] if args is None else args)
        return ns, rest

    parser.parse_known_args = recording  # type: ignore[method-assign]
    parser._records_argv = True  # type: ignore[attr-defined]


def add_command(sub: Any, name: str, help: str, *, json_flag: bool = False, **kw: Any) -> argparse.ArgumentParser:
    from ._help import LineKeepingFormatter, example_lines

    # Help keeps the lines its epilog is written in (one example a line): see _help.py.
    kw.setdefault("formatter_class", LineKeepingFormatter)
    kw["epilog"] = example_lines(kw.get("epilog"))
    p = sub.add_parser(name, help=help, description=kw.pop("description", help), **kw)
    add_workspace_option(p)
    if json_flag:
        p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    return p


def workspace_path(args: argparse.Namespace) -> Path:
    from curation.paths import default_path

    return Path(args.workspace) if getattr(args, "workspace", None) else default_path()


def wait_seconds(args: argparse.Namespace) -> float:
    """--wait, else $STUDIO_WAIT, else 0."""
    value = getattr(args, "wait", None)
    if value is not None:
        return float(value)
    env = os.environ.get("STUDIO_WAIT", "").strip()
    if not env:
        return 0.0
    try:
        return _seconds(env)
    except argparse.ArgumentTypeError as exc:
        from curation.errors import StudioError

        raise StudioError(f"$STUDIO_WAIT: {exc}; unset it or give seconds, e.g. STUDIO_WAIT=30.") from None


def is_read_only(args: argparse.Namespace) -> bool:
    """Whether this command only reads (the studio app may run it for us: READ_ONLY)."""
    command = getattr(args, "command", None)
    if command == "export":
        return bool(getattr(args, "dry_run", False))
    return command in READ_ONLY


# (workspace, stdout, stderr) while the studio app runs a command for another process
_SERVING: contextvars.ContextVar[tuple[Any, TextIO, TextIO] | None] = contextvars.ContextVar("studio_serving", default=None)


def serving(ws: Any, stdout: TextIO, stderr: TextIO) -> contextvars.Token:
    """Run command handlers on `ws` (the app's workspace) writing to these streams, in this thread
    (and context) until `_SERVING.reset(token)`. Used by studio/ipc.py."""
    return _SERVING.set((ws, stdout, stderr))


def stdout() -> TextIO:
    served = _SERVING.get()
    return served[1] if served else sys.stdout


def stderr() -> TextIO:
    served = _SERVING.get()
    return served[2] if served else sys.stderr


BACKOFF_FIRST_S = 0.05
BACKOFF_MAX_S = 0.5


def open_ws(args: argparse.Namespace, *, create: bool = False):
    """Open the workspace for a command. When another process holds it: a read-only command is
    run by the studio app if that is the holder (its output printed here, then SystemExit with its
    exit status); with --wait, retry until the deadline; else WorkspaceLocked, one line."""
    served = _SERVING.get()
    if served is not None:
        return served[0]
    from curation.errors import WorkspaceLocked
    from curation.workspace import open_workspace

    path = workspace_path(args)
    wait = wait_seconds(args)
    deadline = time.monotonic() + wait
    delay = BACKOFF_FIRST_S
    told = False
    while True:
        try:
            return open_workspace(path, create=create)
        except WorkspaceLocked as exc:
            message = re.sub(r"\s*[\r\n]+\s*", " ", str(exc))  # one line, even if the holder's command line is not
            if is_read_only(args):
                _ask_the_studio(args, path)  # exits when the studio app answers
            left = deadline - time.monotonic()
            if left <= 0:
                if wait:
                    raise WorkspaceLocked(f"{message} Still held after waiting {wait:g} s (--wait).") from None
                hint = "" if "--wait" in message else " Or pass --wait SECONDS to queue behind it."
                raise WorkspaceLocked(message + hint) from None
            if not told:
                m = re.search(r"process (\d+)", message)
                holder = f"held by process {m.group(1)}" if m else "held by another process"
                print(f"studio: waiting for the workspace ({holder}) ...", file=stderr(), flush=True)
                told = True
            time.sleep(min(delay, left))
            delay = min(delay * 1.5, BACKOFF_MAX_S)


def _ask_the_studio(args: argparse.Namespace, path: Path) -> None:
    """Have the studio app holding `path` run this read-only command; print its output and exit
    with its status (SystemExit). Returns when no studio answers there (the holder is a command)."""
    from .. import ipc

    argv = getattr(args, "_argv", None)
    reply = ipc.ask(path, sys.argv[1:] if argv is None else argv)
    if reply is None:
        return
    sys.stdout.write(reply["stdout"])
    sys.stdout.flush()
    sys.stderr.write(reply["stderr"])
    sys.stderr.flush()
    raise SystemExit(int(reply["rc"]))


def out(text: str = "") -> None:
    """Print text that may hold imported data: control characters are shown, never executed."""
    print(visible(text), file=stdout())


def out_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2, default=str), file=stdout())


class CliProgress:
    """Progress lines on stderr for a `curation.jobs.Job`: redrawn in place on a terminal,
    a line every few seconds otherwise (logs, CI)."""

    def __init__(self, label: str, quiet: bool = False):
        self.label = label
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self._last_line = 0.0

    def __call__(self, job: Any) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        if not self.tty and now - self._last_line < 5 and (job.total is None or job.done < job.total):
            return
        self._last_line = now
        if job.total:
            text = f"{self.label}: {job.done:,}/{job.total:,} ({100 * job.done / job.total:.0f}%)"
        else:
            text = f"{self.label}: {job.done:,}"
        if job.message:
            text += f"  {visible(job.message, single_line=True)}"
        text += f"  {job.elapsed:.1f}s"
        if self.tty:
            sys.stderr.write("\r\x1b[2K" + text)
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def finish(self) -> None:
        if self.tty and not self.quiet:
            sys.stderr.write("\n")
            sys.stderr.flush()


def make_job(kind: str, quiet: bool = False):
    from curation.jobs import Job

    progress = CliProgress(kind, quiet=quiet)
    return Job(kind=kind, on_progress=progress), progress
