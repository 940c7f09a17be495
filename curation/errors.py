"""Errors a user can cause. Each says what was wrong, where, and what to do; tracebacks are for bugs.

The command line prints `StudioError`s as one clean message (exit status 2; a full disk: 74); the
studio shows them in a notification. `disk_full_error` turns an exception caused by a full disk into
a `DiskFull` with that one line. Anything else that escapes is a bug and keeps its traceback.
"""
from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path


class StudioError(Exception):
    """A problem the user can fix: the message says what, where and what to do."""

    exit_code = 2


class WorkspaceLocked(StudioError):
    """Another process holds the workspace's DuckDB file (DuckDB locks it exclusively)."""


class SchemaTooNew(StudioError):
    """The workspace was written by a newer studio than this one."""


class Cancelled(StudioError):
    """A job was cancelled by the user; the work done so far is kept where the job says so."""

    exit_code = 130


class NotFound(StudioError):
    """A sample, split, cluster or run named by the user does not exist."""


class DiskFull(StudioError):
    """A write failed because the disk (or the user's quota) is full. The failed step was rolled
    back (DuckDB transactions, export's temporary folder); the message names the file and the folder
    to free space in. Exit status 74 (sysexits' EX_IOERR), so scripts can tell it from a usage error."""

    exit_code = 74


_DISK_FULL_TEXT = ("no space left on device", "disk quota exceeded", "os error 28", "os error 122")
_QUOTED_PATH = re.compile(r'(?:file|open|write|writing|create)\w*\s+"([^"]+)"', re.IGNORECASE)


def _chain(exc: BaseException) -> list[BaseException]:
    """exc, then its causes and contexts (breadth first, each once): a library may wrap an OSError
    (DuckDB's "Failed to commit", safetensors, torch.save) or raise it while handling another."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo and len(seen) < 32:
        e = todo.pop(0)
        if e is None or any(e is s for s in seen):
            continue
        seen.append(e)
        todo += [e.__cause__, e.__context__]
    return seen


def disk_full_error(exc: BaseException, where: str | os.PathLike[str] | None = None) -> DiskFull | None:
    """A one-line DiskFull for an exception caused by a full disk (OSError ENOSPC/EDQUOT anywhere in
    its chain, or a library error whose message says so, e.g. DuckDB's `Failed to commit: Could not
    write file "...": No space left on device`); None for anything else. `where`: the folder the
    command writes to (the workspace), named when the exception does not say which file."""
    path: str | None = None
    found = False
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            found = True
            path = path or (os.fsdecode(e.filename) if e.filename else None)
        elif any(t in str(e).lower() for t in _DISK_FULL_TEXT):
            found = True
            m = _QUOTED_PATH.search(str(e))
            path = path or (m.group(1) if m else None)
    if not found:
        return None
    folder = Path(path).parent if path else (Path(where) if where is not None else None)
    what = f"could not write {path}" if path else (f"could not write in {where}" if where is not None
                                                    else "a write failed")
    free = ""
    if folder is not None:
        probe = folder
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        try:
            free = f" ({human_size(shutil.disk_usage(probe).free)} free now)"
        except OSError:
            pass
    place = f"in {folder}{free}" if folder is not None else "on the disk"
    return DiskFull(f"the disk is full: {what}: free space {place} and run the command again; "
                    "the failed step was undone, nothing half-written was kept")


def human_size(n: float) -> str:
    """A byte count as people read it: 812 bytes, 4.2 MB, 1.3 GB."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{int(n)} bytes" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"


class WorkspaceDamaged(StudioError):
    """The workspace's DuckDB file or its write-ahead log cannot be read in full: the message names
    the file and the way back (`studio check --repair` / `--salvage DEST`, or the last export)."""
