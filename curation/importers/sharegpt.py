"""ShareGPT rows: `conversations`, a list of `{"from", "value"}`. `from` is human/user, gpt/
assistant/chatgpt/bot/model, or system (first turn only); a top-level `system` string works too."""
from __future__ import annotations

from ..samples import Message, Problem, Sample, validate
from . import fields

NAME = "sharegpt"
KEYS = ("conversations",)
ROLE_NAMES = {
    "human": "user", "user": "user",
    "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant", "bot": "assistant", "model": "assistant",
    "system": "system",
}


def to_sample(rec: dict, source_file: str, source_row: int) -> tuple[Sample | None, list[Problem]]:
    return turns_to_sample(rec, source_file, source_row, list_key="conversations", role_key="from",
                           content_key="value", role_names=ROLE_NAMES)


def _content(value: object) -> object:
    """OpenAI-style content parts ([{"type": "text", "text": ...}]) joined into one string."""
    if isinstance(value, list) and value and all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in value):
        return "".join(p["text"] for p in value)
    return value


def turns_to_sample(rec: dict, source_file: str, source_row: int, *, list_key: str, role_key: str,
                    content_key: str, role_names: dict[str, str]) -> tuple[Sample | None, list[Problem]]:
    """Shared by sharegpt and messages: the same shape with different key names."""
    problems: list[Problem] = []
    system = fields.get_str(rec, "system", problems, required=False)
    turns = rec.get(list_key)
    if list_key not in rec:
        return None, [Problem(list_key, "missing")]
    if not isinstance(turns, list):
        return None, [Problem(list_key, f"must be a list of turns, got {fields.type_name(turns)}")]
    messages: list[Message] = []
    offset = 0
    known = ", ".join(sorted(role_names))
    for i, turn in enumerate(turns):
        where = f"{list_key}[{i}]"
        if not isinstance(turn, dict):
            problems.append(Problem(where, f"must be an object with {role_key!r} and {content_key!r}, got {fields.type_name(turn)}"))
            continue
        raw_role = turn.get(role_key)
        if not isinstance(raw_role, str):
            problems.append(Problem(f"{where}.{role_key}", "missing" if raw_role is None else f"must be a string, got {fields.type_name(raw_role)}"))
            continue
        role = role_names.get(raw_role.strip().lower())
        if role is None:
            problems.append(Problem(f"{where}.{role_key}", f"unknown role {raw_role!r} (expected one of: {known})"))
            continue
        content = _content(turn.get(content_key))
        if content_key not in turn:
            problems.append(Problem(f"{where}.{content_key}", "missing"))
            continue
        if not isinstance(content, str):
            problems.append(Problem(f"{where}.{content_key}", f"must be a string, got {fields.type_name(content)}"))
            continue
        if (bad := fields.surrogate_problem(content, f"{where}.{content_key}")):
            problems.append(bad)
            continue
        if role == "system":
            if i != 0 or system is not None:
                problems.append(Problem(f"{where}.{role_key}", "a system turn may only come first"))
                continue
            system = content
            offset = 1
            continue
        messages.append(Message(role, content))
    sid = fields.source_id(rec, problems)
    tags = fields.tags(rec, problems)
    if problems:
        return None, problems
    sample = Sample(kind="chat", system=system or None, messages=tuple(messages), source_file=source_file,
                    source_row=source_row, source_id=sid, tags=tags, operation="import")
    bad = validate(sample)
    if bad:
        return None, fields.remap_turn_problems(bad, list_key, offset, role_key, content_key)
    return sample, []
