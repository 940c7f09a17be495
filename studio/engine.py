"""How the studio talks to the workspace from many threads without breaking DuckDB's rules.

A DuckDB connection must not be used by two threads at once. The decision here:

- **Writes** (approve, reject, edit, undo, bulk actions: anything that calls `curation.review` or
  takes `ws.con`) run on ONE writer thread, in submission order (`Engine.write`). The workspace's
  own connection `ws.con` and its `ws.transaction()` helper are used from that thread only, so
  undo always runs after the approve pressed before it, and the transaction helper's nesting
  state is never shared.
- **Reads** (pages, counts, a sample's detail, stats) run in Textual thread workers, each thread
  with its own cursor (`Engine.reader()`), created from a dedicated root cursor under a lock so
  `ws.con` itself is never touched off the writer thread. Cursors see committed writes.
- A long job that writes in bulk (dedup, quality, import) should take its own cursor and
  `ws.transaction(con=cursor)` inside its worker, so approving samples is not queued behind it;
  an engine function that insists on `ws.con` goes through `write` instead, or runs on
  `Engine.job_workspace()`: a Workspace bound to a connection of its own (its `con`, its
  `transaction()` nesting), for one job on one worker thread. Augment jobs run that way: they take
  minutes of network time, and Review's keys must not wait for them. DuckDB runs the two writers
  as concurrent transactions; only a write to the same row at the same moment conflicts, and then
  the later transaction fails with DuckDB's conflict error rather than corrupting anything.

The UI never waits on a future: screens await `asyncio.wrap_future(engine.write(...))` inside
async workers, or call the engine from `@work(thread=True)` workers, and update widgets after.
"""
from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, TypeVar

import duckdb

from curation.workspace import Workspace

T = TypeVar("T")
# How long closing waits for jobs on their own connections (cancelled first by the app) to write
# their end state; an augment job finishes the requests in flight, then records "cancelled".
JOB_CLOSE_WAIT_S = 60.0


class Engine:
    def __init__(self, ws: Workspace):
        self.ws = ws
        # Created on the calling (main) thread; from now on only `_writer` touches ws.con.
        self._root = ws.cursor()
        self._lock = threading.Lock()
        self._local = threading.local()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="studio-writer")
        self._closed = False
        self._jobs_open = 0
        self._jobs_released = threading.Condition(self._lock)

    @property
    def name(self) -> str:
        return self.ws.root.name

    def reader(self) -> duckdb.DuckDBPyConnection:
        """This thread's read cursor (made on first use, reused by later work on the thread)."""
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            with self._lock:
                cur = self._root.cursor()
                self._cursors.append(cur)
            self._local.cursor = cur
        return cur

    def job_workspace(self) -> Workspace:
        """A Workspace on a connection of its own, for one long job on one worker thread (see the
        module docstring); hand it back with `release`."""
        with self._lock:
            cur = self._root.cursor()
            self._cursors.append(cur)
            self._jobs_open += 1
        return Workspace(self.ws.root, cur, read_only=self.ws.read_only)

    def release(self, job_ws: Workspace) -> None:
        with self._lock:
            if job_ws.con in self._cursors:
                self._cursors.remove(job_ws.con)
                self._jobs_open -= 1
                self._jobs_released.notify_all()
        try:
            job_ws.con.close()
        except duckdb.Error:
            pass

    def write(self, fn: Callable[..., T], *args: Any, **kw: Any) -> "Future[T]":
        """Run `fn(ws, *args, **kw)` on the writer thread after every write submitted before it."""
        return self._writer.submit(fn, self.ws, *args, **kw)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.shutdown(wait=True, cancel_futures=False)
        with self._lock:
            # a cancelled job on its own connection still writes its end state: give it time
            self._jobs_released.wait_for(lambda: self._jobs_open == 0, timeout=JOB_CLOSE_WAIT_S)
            for cur in self._cursors:
                try:
                    cur.close()
                except duckdb.Error:
                    pass
            try:
                self._root.close()
            except duckdb.Error:
                pass
        self.ws.close()
