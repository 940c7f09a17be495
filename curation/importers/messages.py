"""OpenAI chat rows: `messages`, a list of `{"role", "content"}` (or `{"from", "value"}`) with an
optional system message first; tool use as OpenAI writes it (assistant `tool_calls`, `tool` turns,
the row's `tools`) and a turn's `weight`. Content given as a list of text parts is joined. The
turns are read by turns.py, shared with the sharegpt format."""
from __future__ import annotations

from ..samples import Problem, Sample
from . import turns
from .turns import ROLE_NAMES  # noqa: F401  (the roles both formats accept)

NAME = "messages"
KEYS = ("messages",)


def to_sample(rec: dict, source_file: str, source_row: int) -> tuple[Sample | None, list[Problem]]:
    return turns.to_sample(rec, source_file, source_row, "messages")
