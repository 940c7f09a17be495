"""What every command shares: the --workspace option, opening the workspace, printing safely."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from curation.safe_text import visible

WORKSPACE_HELP = "workspace folder (default: $STUDIO_WORKSPACE, else ./studio-workspace)"


def add_workspace_option(parser: argparse.ArgumentParser, top_level: bool = False) -> None:
    # On subcommands the default is SUPPRESS so `studio -w A import ...` is not reset by the
    # subparser; `studio import ... -w A` works too.
    parser.add_argument(
        "--workspace", "-w", type=Path, metavar="DIR", help=WORKSPACE_HELP,
        default=None if top_level else argparse.SUPPRESS,
    )


def add_command(sub: Any, name: str, help: str, *, json_flag: bool = False, **kw: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, description=kw.pop("description", help), **kw)
    add_workspace_option(p)
    if json_flag:
        p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    return p


def workspace_path(args: argparse.Namespace) -> Path:
    from curation.paths import default_path

    return Path(args.workspace) if getattr(args, "workspace", None) else default_path()


def open_ws(args: argparse.Namespace, *, create: bool = False):
    from curation.workspace import open_workspace

    return open_workspace(workspace_path(args), create=create)


def out(text: str = "") -> None:
    """Print text that may hold imported data: control characters are shown, never executed."""
    print(visible(text))


def out_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2, default=str))


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
