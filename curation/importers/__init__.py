"""Importers: alpaca, sharegpt, messages and raw-text rows (tool use included) from JSON, JSONL,
CSV, Parquet and `datasets.save_to_disk` folders, plain or compressed (gzip, zstd, bzip2, xz), given
one by one or as folders (a hub dataset repository whole) into the workspace. Call `import_paths`;
one module per format, turns.py for the conversation turns both chat formats share."""
from __future__ import annotations

from .core import FORMATS, ROW_FORMATS, detect_row_format, import_paths
from .report import FileResult, ImportReport, RowProblem, format_problems

__all__ = ["FORMATS", "ROW_FORMATS", "FileResult", "ImportReport", "RowProblem", "detect_row_format",
           "format_problems", "import_paths"]
