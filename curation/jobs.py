"""Long work as jobs: progress reporting, cancellation, and a row in the `jobs` table.

Engine functions that take a while accept a `Job` and call `job.advance(n)` as they go and
`job.check()` at safe points; `check()` raises `Cancelled` once someone called `job.cancel()`.
The CLI prints progress to stderr; the studio runs the same function in a worker thread and
shows a progress bar. Neither the engine nor the job knows which one is watching.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, NamedTuple

from .errors import Cancelled

if TYPE_CHECKING:
    import duckdb

ProgressFn = Callable[["Job"], None]


@dataclass
class Job:
    kind: str
    total: int | None = None
    done: int = 0
    message: str = ""
    on_progress: ProgressFn | None = None
    min_interval: float = 0.1  # seconds between progress callbacks
    started: float = field(default_factory=time.monotonic)
    _cancel: threading.Event = field(default_factory=threading.Event)
    _last_report: float = 0.0

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check(self) -> None:
        if self._cancel.is_set():
            raise Cancelled(f"{self.kind} cancelled after {self.done:,} of {self.total or '?'}")

    def set_total(self, total: int | None) -> None:
        self.total = total
        self._report(force=True)

    def advance(self, n: int = 1, message: str | None = None) -> None:
        self.done += n
        if message is not None:
            self.message = message
        self._report()
        self.check()

    def set_message(self, message: str) -> None:
        self.message = message
        self._report(force=True)

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return min(1.0, self.done / self.total)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def _report(self, force: bool = False) -> None:
        if self.on_progress is None:
            return
        now = time.monotonic()
        if force or now - self._last_report >= self.min_interval:
            self._last_report = now
            self.on_progress(self)


def null_job(kind: str = "job") -> Job:
    return Job(kind=kind)


class JobRow(NamedTuple):
    """One row of the `jobs` table as a list shows it."""

    id: int
    kind: str
    state: str
    done: int
    total: int | None
    message: str | None


def recent_jobs(con: "duckdb.DuckDBPyConnection", limit: int = 20) -> list[JobRow]:
    """The newest jobs, running ones first."""
    return [JobRow(*r) for r in con.execute(
        "SELECT id, kind, state, done, total, message FROM jobs ORDER BY (state = 'running') DESC, id DESC LIMIT ?",
        [int(limit)]).fetchall()]
