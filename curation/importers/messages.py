"""OpenAI chat rows: `messages`, a list of `{"role", "content"}` with an optional system message
first. Content given as a list of text parts is joined."""
from __future__ import annotations

from ..samples import Problem, Sample
from .sharegpt import turns_to_sample

NAME = "messages"
KEYS = ("messages",)
ROLE_NAMES = {"user": "user", "assistant": "assistant", "system": "system"}


def to_sample(rec: dict, source_file: str, source_row: int) -> tuple[Sample | None, list[Problem]]:
    return turns_to_sample(rec, source_file, source_row, list_key="messages", role_key="role",
                           content_key="content", role_names=ROLE_NAMES)
