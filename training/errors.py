"""Errors a user can cause in the trainer: bad config, bad split, unknown run.

`training` may not import `curation.errors.StudioError` (a GPU box has only this package), so it
has its own base class. The studio's commands turn a `TrainingError` into a `StudioError` with the
same message; `python -m training` prints it without a traceback and exits 2.
"""
from __future__ import annotations


class TrainingError(Exception):
    """A problem the user can fix: the message says what, where (file:line: field) and what to do."""

    exit_code = 2


class ConfigError(TrainingError):
    """The training config (YAML file, preset or --set override) is invalid."""


class DataError(TrainingError):
    """The split directory or data file cannot be read as training samples."""


class RunNotFound(TrainingError):
    """A run named by the user does not exist."""


class SplitNotFound(TrainingError):
    """A split named by the user is neither a path nor a folder under WORKSPACE/splits."""
