"""The process pool that CPU-heavy curation steps (dedup hashing and verification, quality rules)
compute in, while DuckDB stays in the main process.

Spawned, not forked: fork is unsafe beside DuckDB's and Textual's threads. Small work runs in this
process instead (spawning costs ~0.5 s). Workers ignore SIGINT: Ctrl-C goes to the whole process
group, and the main process cancels the job and terminates the pool.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
from collections import deque
from typing import Any, Callable, Iterable, Iterator

from .jobs import Job

POOL_MIN = 20000        # below this many items of work, compute in this process


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Workers:
    """A spawn pool of `processes` or, with one process, this process. `stream` keeps a few tasks
    in flight and yields results in order; the arguments are produced lazily in the calling
    thread, so DuckDB stays in the main process. A context manager: leaving it on an exception
    terminates the pool."""

    def __init__(self, processes: int):
        self.processes = processes
        self.pool: Any = None

    def _ensure(self):
        if self.pool is None and self.processes > 1:
            ctx = multiprocessing.get_context("spawn")
            self.pool = ctx.Pool(self.processes, initializer=_ignore_sigint)
        return self.pool

    def start(self, warm: Callable[[], Any] | None = None) -> None:
        """Start the processes now (they take ~0.5 s to import) and give each `warm` to run (a
        cached set-up, e.g. lookup tables), so that they are ready while this process reads."""
        pool = self._ensure()
        if pool is not None and warm is not None:
            for _ in range(self.processes):
                pool.apply_async(warm)

    def stream(self, fn: Callable, args: Iterable[tuple], job: Job) -> Iterator[Any]:
        pool = self._ensure()
        if pool is None:
            for a in args:
                job.check()
                yield fn(*a)
            return
        pending: deque = deque()
        it = iter(args)
        exhausted = False
        while True:
            while not exhausted and len(pending) < self.processes * 2:
                try:
                    pending.append(pool.apply_async(fn, next(it)))
                except StopIteration:
                    exhausted = True
            if not pending:
                return
            res = pending.popleft()
            while True:
                job.check()
                try:
                    yield res.get(timeout=0.2)
                    break
                except multiprocessing.TimeoutError:
                    continue

    def close(self, terminate: bool = False) -> None:
        if self.pool is not None:
            if terminate:
                self.pool.terminate()
            else:
                self.pool.close()
            self.pool.join()
            self.pool = None

    def __enter__(self) -> "Workers":
        return self

    def __exit__(self, exc_type, *exc: object) -> None:
        self.close(terminate=exc_type is not None)


def worker_count(workers: int | None, todo: int) -> int:
    """Processes for `todo` items: `workers` if given, else one for small work, else every core."""
    if workers is not None:
        return max(1, workers)
    return 1 if todo < POOL_MIN else max(1, os.cpu_count() or 1)
