"""What an import did, file by file, and the problems it found, worded for the person who owns
the data: `file:line: field: what is wrong`."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..safe_text import visible

SHOWN_PROBLEMS = 20  # problems listed in a message before "... and N more"


@dataclass(frozen=True)
class RowProblem:
    """One thing wrong at one place in a file. `element` is the 1-based index in a JSON array."""

    file: str
    line: int
    field: str
    message: str
    element: int | None = None

    def __str__(self) -> str:
        where = f" (element {self.element})" if self.element is not None else ""
        return visible(f"{self.file}:{self.line}: {self.field}: {self.message}{where}", single_line=True)


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

    def summary(self) -> str:
        name = visible(str(self.path), single_line=True)
        if self.skipped_as_already_imported:
            return f"{name}: already imported as import #{self.already_import_id}, nothing added"
        text = f"{name}: {self.rows_imported:,} rows imported as import #{self.import_id} ({self.format})"
        if self.rows_rejected:
            text += f", {self.rows_rejected:,} rejected -> {visible(str(self.rejects_file), single_line=True)}"
        return text

    def as_dict(self) -> dict:
        return {
            "path": str(self.path), "format": self.format, "rows_imported": self.rows_imported,
            "rows_rejected": self.rows_rejected, "skipped_as_already_imported": self.skipped_as_already_imported,
            "already_import_id": self.already_import_id, "import_id": self.import_id,
            "operation_id": self.operation_id,
            "rejects_file": str(self.rejects_file) if self.rejects_file else None,
            "problems": [str(p) for p in self.problems],
        }


@dataclass
class ImportReport:
    files: list[FileResult] = field(default_factory=list)

    @property
    def rows_imported(self) -> int:
        return sum(f.rows_imported for f in self.files)

    @property
    def rows_rejected(self) -> int:
        return sum(f.rows_rejected for f in self.files)

    def summary(self) -> str:
        return "\n".join(f.summary() for f in self.files)

    def as_dict(self) -> dict:
        return {"rows_imported": self.rows_imported, "rows_rejected": self.rows_rejected,
                "files": [f.as_dict() for f in self.files]}


def format_problems(problems: list[RowProblem], limit: int = SHOWN_PROBLEMS) -> str:
    lines = [str(p) for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"... and {len(problems) - limit:,} more")
    return "\n".join(lines)
