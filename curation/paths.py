"""Where the workspace is, without importing DuckDB.

Kept apart from `curation.workspace` so that commands which only resolve paths (`studio train
SPLIT` on a GPU box that has the trainer's packages but not duckdb) never import the database.
"""
from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DIR = "studio-workspace"
ENV_VAR = "STUDIO_WORKSPACE"


def default_path() -> Path:
    """`$STUDIO_WORKSPACE`, else `./studio-workspace`."""
    return Path(os.environ.get(ENV_VAR) or DEFAULT_DIR)
