"""Reading the fields of one source record: the checks every row format shares (strings, ids,
tags, unpaired surrogates) and the mapping of `samples.validate` field names back to the
source's own names, so a problem points at what the person sees in their file."""
from __future__ import annotations

import json
import re
from typing import Any

from ..samples import Problem

ID_KEYS = ("id", "_id", "uid")

# The characters Python's str.isspace() accepts; the fast path's SQL uses the same class.
WHITESPACE_CLASS = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def surrogate_problem(value: str, name: str) -> Problem | None:
    """JSON can spell an unpaired UTF-16 surrogate (\\ud800) that no UTF-8 file or database can hold."""
    m = _SURROGATE.search(value)
    if m:
        return Problem(name, f"holds an unpaired UTF-16 surrogate \\u{ord(m.group()):04x} at character {m.start() + 1}; fix the escape in the file")
    return None


def get_str(rec: dict, name: str, problems: list[Problem], *, required: bool, allow_empty: bool = True,
            label: str | None = None) -> str | None:
    """The string at `rec[name]`, or None with a problem added when it is missing or not a string."""
    label = label or name
    if name not in rec:
        if required:
            problems.append(Problem(label, "missing"))
        return None
    value = rec[name]
    if value is None:
        if required:
            problems.append(Problem(label, "is null, expected a string"))
        return None
    if not isinstance(value, str):
        problems.append(Problem(label, f"must be a string, got {type_name(value)} {json.dumps(value, ensure_ascii=False)[:40]}"))
        return None
    bad = surrogate_problem(value, label)
    if bad:
        problems.append(bad)
        return None
    if not allow_empty and not value.strip():
        problems.append(Problem(label, "is empty"))
    return value


def source_id(rec: dict, problems: list[Problem]) -> str | None:
    """The source's own id (`id`, `_id` or `uid`), as text: strings as they are, anything else as JSON."""
    for key in ID_KEYS:
        if key in rec and rec[key] is not None:
            value = rec[key]
            if isinstance(value, str):
                bad = surrogate_problem(value, key)
                if bad:
                    problems.append(bad)
                    return None
                return value
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                problems.append(Problem(key, f"must be a string or a number, got {type_name(value)}"))
                return None
            return json.dumps(value)
    return None


def tags(rec: dict, problems: list[Problem]) -> tuple[str, ...]:
    value = rec.get("tags")
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(t.strip() for t in value.split(",") if t.strip())
    if isinstance(value, list) and all(isinstance(t, str) for t in value):
        return tuple(value)
    problems.append(Problem("tags", f"must be a list of strings or a comma-separated string, got {type_name(value)}"))
    return ()


_VALIDATE_FIELD = re.compile(r"^messages\[(\d+)\](.*)$")


def remap_turn_problems(problems: list[Problem], list_name: str, offset: int, role_key: str, content_key: str) -> list[Problem]:
    """Rename `messages[i].role` from `samples.validate` to the source's `conversations[i+offset].from`."""
    out = []
    for p in problems:
        m = _VALIDATE_FIELD.match(p.field)
        if m:
            rest = m.group(2).replace(".role", f".{role_key}").replace(".content", f".{content_key}")
            out.append(Problem(f"{list_name}[{int(m.group(1)) + offset}]{rest}", p.message))
        elif p.field == "messages":
            out.append(Problem(list_name, p.message))
        else:
            out.append(p)
    return out
