"""Files written and sha256-hashed on a background thread, so the caller can produce the next block.

`export` streams ~900 MB of JSON lines per million rows; writing them to the page cache and hashing
them each take about as long as DuckDB takes to build them. `os.writev` and `hashlib`'s `update`
release the GIL (update for pieces of 2 KiB or more), so one thread that writes and hashes the
blocks (in the order they were given, which is the order of the bytes in each file) runs beside
DuckDB producing the next rows. A block is a list of pieces (slices of an Arrow buffer: the runs
of rows that go to one file), written with one writev per IOV_MAX pieces, never copied. The queue
is short: a block holds its Arrow buffer (tens of MB) until it is written.

An error in the thread (a full disk) is raised again, as it is, by the next `write` or by `close`.
"""
from __future__ import annotations

import hashlib
import os
import queue
import threading
from pathlib import Path
from typing import BinaryIO

_QUEUED = 4  # blocks waiting for the thread: enough to ride out a slow write, few enough to bound memory
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
    the thread and returns each file's sha256 (hex). `abort()` stops it on the way out of an error."""

    def __init__(self) -> None:
        self._files: dict[str, BinaryIO] = {}
        self._digests: dict[str, hashlib._Hash] = {}
        self._queue: queue.Queue = queue.Queue(maxsize=_QUEUED)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="export-writer", daemon=True)
        self._thread.start()

    def open(self, key: str, path: Path) -> None:
        self._files[key] = open(path, "wb", buffering=0)
        self._digests[key] = hashlib.sha256()

    def __contains__(self, key: str) -> bool:
        return key in self._files

    def write(self, key: str, block: list[memoryview]) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put((key, block))

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is not None:
                continue  # drain: the caller learns of the error at its next write or at close
            key, block = item
            try:
                _write_all(self._files[key], block)
                digest = self._digests[key]
                for piece in block:
                    digest.update(piece)
            except BaseException as exc:  # noqa: BLE001  (raised again in the caller's thread)
                self._error = exc

    def _stop(self) -> None:
        self._queue.put(None)
        self._thread.join()
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
