"""What an import did, file by file, and the problems it found, worded for the person who owns
the data: `file:line: field: what is wrong (id=the row's own id)`.

A file is imported, already there, passed over (`skipped`: not data, e.g. LLaMA-Factory's
dataset_info.json inside a folder) or, with skip_invalid, not imported (`error`: it could not be
read, or none of its rows is valid). `warnings` hold what was imported but deserves a look
(source ids repeated within the file)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..safe_text import visible

SHOWN_PROBLEMS = 20  # problems listed in a message before "... and N more"


@dataclass(frozen=True)
class RowProblem:
    """One thing wrong at one place in a file. `element` is the 1-based index in a JSON array;
    `source_id` the row's own id (`id`, `_id`, `uid`), what people search their file for."""

    file: str
    line: int
    field: str
    message: str
    element: int | None = None
    source_id: str | None = None

    def __str__(self) -> str:
        where = [f"element {self.element}"] if self.element is not None else []
        if self.source_id is not None:
            where.append(f"id={self.source_id}")
        tail = f" ({', '.join(where)})" if where else ""
        return visible(f"{self.file}:{self.line}: {self.field}: {self.message}{tail}", single_line=True)


@dataclass
class FileResult:
    """The outcome for one file: how many rows landed, how many were rejected, or why it was skipped."""

    path: Path
    format: str = ""
    rows_imported: int = 0
    rows_rejected: int = 0
    skipped_as_already_imported: bool = False
    already_import_id: int | None = None
    import_id: int | None = None
    operation_id: int | None = None
    rejects_file: Path | None = None
    problems: list[RowProblem] = field(default_factory=list)
    fast_path: bool = False
    error: str | None = None          # not imported (skip_invalid): why, in one line
    skipped: str | None = None        # passed over on purpose (not data): why
    warnings: list[str] = field(default_factory=list)
    duplicate_source_ids: dict[str, int] = field(default_factory=dict)  # the first few: id -> rows
    duplicate_source_id_count: int = 0  # how many ids appear more than once

    @property
    def failed(self) -> bool:
        return self.error is not None

    def summary(self) -> str:
        """One line for the file; a warning adds an indented line each."""
        name = visible(str(self.path), single_line=True)
        if self.error is not None:
            return f"{name}: not imported: {visible(self.error, single_line=True)}"
        if self.skipped is not None:
            return f"{name}: skipped: {visible(self.skipped, single_line=True)}"
        if self.skipped_as_already_imported:
            return f"{name}: already imported as import #{self.already_import_id}, nothing added"
        text = f"{name}: {self.rows_imported:,} rows imported as import #{self.import_id} ({self.format})"
        if self.rows_rejected:
            text += f", {self.rows_rejected:,} rejected -> {visible(str(self.rejects_file), single_line=True)}"
        for warning in self.warnings:
            text += f"\n  warning: {visible(warning, single_line=True)}"
        return text

    def as_dict(self) -> dict:
        return {
            "path": str(self.path), "format": self.format, "rows_imported": self.rows_imported,
            "rows_rejected": self.rows_rejected, "skipped_as_already_imported": self.skipped_as_already_imported,
            "already_import_id": self.already_import_id, "import_id": self.import_id,
            "operation_id": self.operation_id,
            "rejects_file": str(self.rejects_file) if self.rejects_file else None,
            "problems": [str(p) for p in self.problems],
            "error": self.error, "skipped": self.skipped, "warnings": list(self.warnings),
            "duplicate_source_ids": dict(self.duplicate_source_ids),
            "duplicate_source_id_count": self.duplicate_source_id_count,
        }


@dataclass
class ImportReport:
    files: list[FileResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # about the paths (a link loop passed over)

    @property
    def failed(self) -> list[FileResult]:
        """Files that were not imported (skip_invalid): the others were."""
        return [f for f in self.files if f.failed]

    @property
    def rows_imported(self) -> int:
        return sum(f.rows_imported for f in self.files)

    @property
    def rows_rejected(self) -> int:
        return sum(f.rows_rejected for f in self.files)

    def summary(self) -> str:
        lines = [f"warning: {visible(w, single_line=True)}" for w in self.warnings]
        return "\n".join(lines + [f.summary() for f in self.files])

    def as_dict(self) -> dict:
        return {"rows_imported": self.rows_imported, "rows_rejected": self.rows_rejected,
                "files_failed": len(self.failed), "warnings": list(self.warnings),
                "files": [f.as_dict() for f in self.files]}


def format_problems(problems: list[RowProblem], limit: int = SHOWN_PROBLEMS) -> str:
    lines = [str(p) for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"... and {len(problems) - limit:,} more")
    return "\n".join(lines)
