"""Errors a user can cause. Each says what was wrong, where, and what to do; tracebacks are for bugs.

The command line prints `StudioError`s as one clean message (exit status 2); the studio shows them
in a notification. Anything else that escapes is a bug and keeps its traceback.
"""
from __future__ import annotations


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
