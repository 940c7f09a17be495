"""Alpaca rows: `instruction`, optional `input`, `output`, optional `system`, `history`
([[user, assistant], ...], the turns before this one) and `tools` (kept with the sample).
`instruction` and `input` become one user turn: the instruction, a blank line, the input (the
input is left out when blank)."""
from __future__ import annotations

import re

from ..samples import Message, Problem, Sample, validate
from . import fields
from . import turns as turns_mod

NAME = "alpaca"
KEYS = ("instruction", "output")
_BLANK = re.compile(f"[{fields.WHITESPACE_CLASS}]*")


def user_turn(instruction: str, input_text: str | None) -> str:
    """The fast path builds the same text in SQL (see fast_alpaca.py): keep the two in step."""
    if input_text is None or _BLANK.fullmatch(input_text):
        return instruction
    return f"{instruction}\n\n{input_text}"


def to_sample(rec: dict, source_file: str, source_row: int) -> tuple[Sample | None, list[Problem]]:
    problems: list[Problem] = []
    instruction = fields.get_str(rec, "instruction", problems, required=True, allow_empty=False)
    input_text = fields.get_str(rec, "input", problems, required=False)
    output = fields.get_str(rec, "output", problems, required=True)
    system = fields.get_str(rec, "system", problems, required=False)
    turns: list[Message] = []
    history = rec.get("history")
    if history is not None:
        if not isinstance(history, list):
            problems.append(Problem("history", f"must be a list of [user, assistant] pairs, got {fields.type_name(history)}"))
        else:
            for i, pair in enumerate(history):
                if not (isinstance(pair, list) and len(pair) == 2):
                    problems.append(Problem(f"history[{i}]", "must be a [user, assistant] pair"))
                    continue
                for j, role in enumerate(("user", "assistant")):
                    if not isinstance(pair[j], str):
                        problems.append(Problem(f"history[{i}][{j}]", f"must be a string, got {fields.type_name(pair[j])}"))
                    elif (bad := fields.surrogate_problem(pair[j], f"history[{i}][{j}]")):
                        problems.append(bad)
                    else:
                        turns.append(Message(role, pair[j]))
    sid = fields.source_id(rec, problems)
    tags = fields.tags(rec, problems)
    tools = turns_mod.tools(rec, problems)  # LLaMA-Factory's alpaca `tools` column: kept with the sample
    if problems:
        return None, problems
    assert instruction is not None and output is not None
    turns += [Message("user", user_turn(instruction, input_text)), Message("assistant", output)]
    sample = Sample(kind="chat", system=system or None, messages=tuple(turns), source_file=source_file,
                    source_row=source_row, source_id=sid, tags=tags, operation="import", tools=tools)
    invalid = validate(sample)
    if invalid:
        n_hist = len(turns) - 2
        out = []
        for p in fields.remap_turn_problems(invalid, "messages", 0, "role", "content"):
            m = re.match(r"messages\[(\d+)\]", p.field)
            if m and int(m.group(1)) >= n_hist:
                out.append(Problem("instruction" if int(m.group(1)) == n_hist else "output", p.message))
            elif m:
                i = int(m.group(1))
                out.append(Problem(f"history[{i // 2}][{i % 2}]", p.message))
            else:
                out.append(p)
        return None, out
    return sample, []
