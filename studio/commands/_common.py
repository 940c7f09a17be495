"""What every command shares: the workspace path and wait, opening the workspace, printing
safely.

Opening (`open_ws`): DuckDB lets one process hold a workspace. When another holds it, a command
with `--wait SECONDS` (or $STUDIO_WAIT) retries until then; a read-only command (READ_ONLY) whose
workspace is held by the studio app asks the app to run it (studio/ipc.py) and prints its answer.
Inside the app, the same handler runs with `serving()` set: `open_ws` then hands back the app's
workspace (on a cursor of its own, `close()` a no-op) and `out` writes to the reply.
"""
from __future__ import annotations

import contextvars
import json
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from curation.safe_text import visible

from ._command import Args, parse_seconds

# Commands the studio app runs for another process while it holds the workspace: they only read.
READ_ONLY = ("stats", "show", "history", "export --dry-run")


def workspace_path(args: Args) -> Path:
    from curation.paths import default_path

    return Path(args.workspace) if args.workspace else default_path()


def wait_seconds(args: Args) -> float:
    """--wait, else $STUDIO_WAIT, else 0."""
    if args.wait is not None:
        return float(args.wait)
    env = os.environ.get("STUDIO_WAIT", "").strip()
    if not env:
        return 0.0
    try:
        return parse_seconds(env)
    except ValueError as exc:
        from curation.errors import StudioError

        raise StudioError(f"$STUDIO_WAIT: {exc}; unset it or give seconds, e.g. STUDIO_WAIT=30.") from None


def is_read_only(args: Args) -> bool:
    """Whether this command only reads (the studio app may run it for us: READ_ONLY)."""
    if args.command == "export":
        return bool(args.dry_run)
    return args.command in READ_ONLY


# (workspace, stdout, stderr) while the studio app runs a command for another process
_SERVING: contextvars.ContextVar[tuple[Any, TextIO, TextIO] | None] = contextvars.ContextVar("studio_serving", default=None)


def serving(ws: Any, stdout: TextIO, stderr: TextIO) -> contextvars.Token:
    """Run command handlers on `ws` (the app's workspace) writing to these streams, in this thread
    (and context) until `_SERVING.reset(token)`. Used by studio/ipc_server.py."""
    return _SERVING.set((ws, stdout, stderr))


def stdout() -> TextIO:
    served = _SERVING.get()
    return served[1] if served else sys.stdout


def stderr() -> TextIO:
    served = _SERVING.get()
    return served[2] if served else sys.stderr


BACKOFF_FIRST_S = 0.05
BACKOFF_MAX_S = 0.5


def fill_languages(ws: Any) -> None:
    """Give rows imported without a language theirs (`store.fill_derived`, the language only: 5-8 s
    at 1M rows) before a command that counts languages. Not when the studio app runs the command
    for us (its own background job fills them) or the workspace is open read-only."""
    if _SERVING.get() is not None or ws.read_only:
        return
    from curation import store

    store.fill_all_derived(ws.con, search=False)


def open_ws(args: Args, *, create: bool = False):
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


def _ask_the_studio(args: Args, path: Path) -> None:
    """Have the studio app holding `path` run this read-only command; print its output and exit
    with its status (SystemExit). Returns when no studio answers there (the holder is a command)."""
    from .. import ipc

    reply = ipc.ask(path, sys.argv[1:] if args.argv is None else args.argv)  # studio.command_group.parse keeps it
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
    """Progress on stderr for a `curation.jobs.Job` (pass it as the job's `on_progress`), or for
    anything else through `update(done, total, message)`; `finish()` when done.

    On a terminal: a rich live bar (description, done/total, percent, rate, time left, the job's
    message), left on screen when finished with the time it took. Anywhere else (logs, CI, pipes,
    the studio app's reply stream): a plain line every PLAIN_EVERY_S seconds and one at the end,
    without control characters. Whether stderr is a terminal is its isatty(), not rich's guess
    (rich believes FORCE_COLOR=1, which CI sets, and would redraw into the log). `quiet`: nothing.
    `plain_lines=False`: nothing off a terminal (for a caller that prints lines of its own).
    `console`: a rich Console to draw on (tests), always drawn as a terminal."""

    PLAIN_EVERY_S = 5.0

    def __init__(self, label: str, quiet: bool = False, *, console: Any = None, plain_lines: bool = True):
        self.label = label
        self.quiet = quiet
        self.plain_lines = plain_lines
        self._stream = stderr()
        self._console = console
        self.tty = console is not None or _isatty(self._stream)
        self._lock = threading.Lock()
        self._progress: Any = None
        self._task: Any = None
        self._started = time.monotonic()
        self._last_line = 0.0
        self._job: Any = None
        self._finished = False

    def __call__(self, job: Any) -> None:
        self._job = job
        self.update(job.done, job.total, job.message, elapsed=job.elapsed)

    def update(self, done: int, total: int | None = None, message: str = "", *, elapsed: float | None = None) -> None:
        if self.quiet:
            return
        message = visible(message, single_line=True) if message else ""
        if self.tty:
            self._draw(done, total, message)
        elif self.plain_lines:
            self._line(done, total, message, time.monotonic() - self._started if elapsed is None else elapsed)

    def _draw(self, done: int, total: int | None, message: str) -> None:
        with self._lock:
            progress = self._progress
            if progress is None:
                if self._finished:
                    return  # a late report from a worker thread does not draw a second bar
                self._progress = _rich_progress(self._console or _terminal_console(self._stream))
                # the first values start the task, so a run that starts at step 900 is not read as 900 steps at once
                self._task = self._progress.add_task(self.label, total=total, completed=done, message=message)
                self._progress.start()
                return
        progress.update(self._task, total=total, completed=done, message=message)

    def _line(self, done: int, total: int | None, message: str, elapsed: float) -> None:
        now = time.monotonic()
        finished = total is not None and done >= total
        if now - self._last_line < self.PLAIN_EVERY_S and not finished:
            return
        if finished and self._last_line < 0:
            return  # the final line is out already
        self._last_line = -1.0 if finished else now
        if total:
            text = f"{self.label}: {done:,}/{total:,} ({100 * done / total:.0f}%)"
        else:
            text = f"{self.label}: {done:,}"
        if message:
            text += f"  {message}"
        text += f"  {elapsed:.1f}s"
        if total and 0 < done < total and elapsed > 0:
            text += f", about {_clock((total - done) * elapsed / done)} left"
        self._stream.write(text + "\n")
        self._stream.flush()

    @property
    def drawing(self) -> bool:
        """Whether a live bar is on the terminal now."""
        return self._progress is not None

    def finish(self) -> None:
        if self._job is not None:  # the job reports at most every 0.1 s: show where it ended
            self(self._job)
            self._job = None
        with self._lock:
            progress, self._progress = self._progress, None
            self._finished = True
        if progress is not None:
            progress.stop()


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _clock(seconds: float) -> str:
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _terminal_console(stream: TextIO):
    from rich.console import Console

    return Console(file=stream, force_terminal=True, highlight=False)


def _rich_progress(console: Any):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.table import Column
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task) -> Text:
            speed = task.finished_speed or task.speed
            if speed is None:
                return Text("?/s", style="progress.data.speed")
            return Text(f"{speed:,.2f}/s" if speed < 10 else f"{speed:,.0f}/s", style="progress.data.speed")

    class MessageColumn(ProgressColumn):
        """The job's message, cut with an ellipsis to what the line has left (the other columns keep their width)."""

        def render(self, task) -> Text:
            return Text(task.fields.get("message", ""), no_wrap=True, overflow="ellipsis")

    def fixed() -> Column:
        return Column(no_wrap=True)

    return Progress(
        TextColumn("{task.description}", markup=False, table_column=fixed()),
        BarColumn(bar_width=20, table_column=fixed()),
        MofNCompleteColumn(table_column=fixed()),
        TaskProgressColumn(table_column=fixed()),
        RateColumn(table_column=fixed()),
        TimeRemainingColumn(elapsed_when_finished=True, table_column=fixed()),
        MessageColumn(table_column=Column(overflow="ellipsis")),
        console=console,
        # the command's stdout lines pass above the bar only when stdout is this terminal too;
        # a redirected stdout (a file, `| jq`) is left alone
        redirect_stdout=_isatty(sys.stdout),
        redirect_stderr=True,
    )


def make_job(kind: str, quiet: bool = False):
    from curation.jobs import Job

    progress = CliProgress(kind, quiet=quiet)
    return Job(kind=kind, on_progress=progress), progress
