"""Files written and sha256-hashed on background threads, so the caller can produce the next block.

`export` streams ~900 MB of JSON lines per million rows; writing them to the page cache and hashing
them each take about as long as DuckDB takes to build them. `os.writev` and `hashlib`'s `update`
release the GIL (update for pieces of 2 KiB or more), so one thread writes the blocks and another
hashes them, each in the order they were given (the order of the bytes in each file), beside
DuckDB producing the next rows. A block is a list of pieces (slices of an Arrow buffer: the runs of
rows that go to one file), written with one writev per IOV_MAX pieces, never copied. The queues
are short: a block holds its Arrow buffer (tens of MB) until both threads are done with it.

An error in a thread (a full disk) is raised again, as it is, by the next `write` or by `close`.
"""
from __future__ import annotations

import hashlib
import os
import queue
import threading
from pathlib import Path
from typing import BinaryIO, Callable

_QUEUED = 4  # blocks waiting for a thread: enough to ride out a slow write, few enough to bound memory
_IOV_MAX = 1024  # pieces per writev (POSIX guarantees at least 16; Linux and macOS allow 1024)


def _write_all(f: BinaryIO, pieces: list[memoryview]) -> None:
    """Write the pieces, in order, to the unbuffered file `f` (writev where the OS has it)."""
    if not hasattr(os, "writev"):
        for piece in pieces:
            while piece:
                piece = piece[f.write(piece):]
        return
    fd, i = f.fileno(), 0
    pieces = [p for p in pieces if len(p)]
    while i < len(pieces):
        chunk = pieces[i:i + _IOV_MAX]
        written = os.writev(fd, chunk)
        for piece in chunk:  # skip what was written; a piece written in part keeps its tail
            if written < len(piece):
                pieces[i] = piece[written:]
                break
            written -= len(piece)
            i += 1


class HashedWriter:
    """Files by key: `open(key, path)`, then `write(key, pieces)` in byte order; `close()` waits for
    the threads and returns each file's sha256 (hex). `abort()` stops them on the way out of an error."""

    def __init__(self) -> None:
        self._files: dict[str, BinaryIO] = {}
        self._digests: dict[str, hashlib._Hash] = {}
        self._error: BaseException | None = None
        self._queues: list[queue.Queue] = []
        self._threads: list[threading.Thread] = []
        for name, job in (("export-writer", self._write), ("export-hasher", self._hash)):
            q: queue.Queue = queue.Queue(maxsize=_QUEUED)
            self._queues.append(q)
            self._threads.append(threading.Thread(target=self._run, args=(q, job), name=name, daemon=True))
            self._threads[-1].start()

    def open(self, key: str, path: Path) -> None:
        self._files[key] = open(path, "wb", buffering=0)
        self._digests[key] = hashlib.sha256()

    def __contains__(self, key: str) -> bool:
        return key in self._files

    def write(self, key: str, block: list[memoryview]) -> None:
        if self._error is not None:
            raise self._error
        for q in self._queues:
            q.put((key, block))

    def _write(self, key: str, block: list[memoryview]) -> None:
        _write_all(self._files[key], block)

    def _hash(self, key: str, block: list[memoryview]) -> None:
        digest = self._digests[key]
        for piece in block:
            digest.update(piece)

    def _run(self, q: queue.Queue, job: Callable[[str, list[memoryview]], None]) -> None:
        while (item := q.get()) is not None:
            if self._error is not None:
                continue  # drain: the caller learns of the error at its next write or at close
            try:
                job(*item)
            except BaseException as exc:  # noqa: BLE001  (raised again in the caller's thread)
                self._error = exc

    def _stop(self) -> None:
        for q in self._queues:
            q.put(None)
        for t in self._threads:
            t.join()
        error = self._error
        for f in self._files.values():
            try:
                f.close()
            except OSError as exc:  # the last buffered bytes did not fit
                error = error or exc
        self._files = {}
        if error is not None:
            raise error

    def close(self) -> dict[str, str]:
        self._stop()
        return {key: d.hexdigest() for key, d in self._digests.items()}

    def abort(self) -> None:
        try:
            self._stop()
        except BaseException:  # noqa: BLE001  (the error being handled is the one to report)
            pass
