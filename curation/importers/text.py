"""Raw-text rows for continued pretraining: `{"text": ...}` becomes a sample of kind 'text'."""
from __future__ import annotations

from ..samples import Problem, Sample, validate
from . import fields

NAME = "text"
KEYS = ("text",)


def to_sample(rec: dict, source_file: str, source_row: int) -> tuple[Sample | None, list[Problem]]:
    problems: list[Problem] = []
    text = fields.get_str(rec, "text", problems, required=True)
    sid = fields.source_id(rec, problems)
    tags = fields.tags(rec, problems)
    if problems:
        return None, problems
    sample = Sample(kind="text", text=text, source_file=source_file, source_row=source_row, source_id=sid,
                    tags=tags, operation="import")
    return (None, validate(sample)) if validate(sample) else (sample, [])
