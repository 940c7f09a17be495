"""ShareGPT rows: `conversations`, a list of `{"from", "value"}` (or `{"role", "content"}`). `from`
is human/user, gpt/assistant/chatgpt/bot/model, system (first turn only), or for tool use
function_call / observation (glaive, LLaMA-Factory) with the row's `tools`; a top-level `system`
string works too. The turns are read by turns.py, shared with the messages format."""
from __future__ import annotations

from ..samples import Problem, Sample
from . import turns
from .turns import ROLE_NAMES  # noqa: F401  (the roles both formats accept)

NAME = "sharegpt"
KEYS = ("conversations",)


def to_sample(rec: dict, source_file: str, source_row: int) -> tuple[Sample | None, list[Problem]]:
    return turns.to_sample(rec, source_file, source_row, "conversations")
