"""The turns of a conversation row into canonical messages, shared by the sharegpt (`conversations`)
and messages (`messages`) formats. Either list may use either spelling, per turn: OpenAI's
`{"role", "content"}` or ShareGPT's `{"from", "value"}`.

Roles: human/user, gpt/assistant/chatgpt/bot/model, system/developer (first turn only), and for
tool use: glaive / LLaMA-Factory's `function_call` (its value is JSON `{"name", "arguments"}`, or a
list of them) and `observation`, OpenAI's `tool` (and the legacy `function`). An assistant turn may
carry OpenAI `tool_calls` (or the legacy `function_call` object). All of it lands in OpenAI's shape
(curation.samples). The row's `tools` (a list of function schemas, or that list as a JSON string
as glaive and LLaMA-Factory write it) is kept with the sample.

Content may be a list of parts (`[{"type": "text", "text": ...}]`, or LLaMA-Factory v1's
`{"type": "text", "value": ...}`): text parts are joined; any other part (an image) refuses the row
with one line. A turn's `weight` (OpenAI) or `loss_weight` (LLaMA-Factory v1) of 0 marks an
assistant turn that is kept but not trained.
"""
from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from ..samples import Message, Problem, Sample, ToolCall, validate
from . import fields

ROLE_NAMES = {
    "human": "user", "user": "user",
    "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant", "bot": "assistant", "model": "assistant",
    "system": "system", "developer": "system",
    "function_call": "tool_call", "tool_call": "tool_call",
    "observation": "tool", "tool": "tool", "function": "tool",
}
KEY_PAIRS = {"role": "content", "from": "value"}
IMAGE_PARTS = {"image", "image_url", "input_image"}


def _keys(turn: dict) -> tuple[str | None, str]:
    """(role key, content key) of one turn: role/content or from/value, whichever it has."""
    role_key = "role" if "role" in turn else "from" if "from" in turn else None
    if "content" in turn:
        return role_key, "content"
    if "value" in turn:
        return role_key, "value"
    return role_key, KEY_PAIRS.get(role_key or "role", "content")


def content_text(value: Any, where: str) -> tuple[Any, Problem | None]:
    """A string as it is; a list of text parts joined; anything else a problem (None passes through)."""
    if not isinstance(value, list):
        return value, None
    texts = []
    for j, part in enumerate(value):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            text = part.get("text", part.get("value"))
            if not isinstance(text, str):
                return None, Problem(f"{where}[{j}]", f"a text part needs a string 'text', got {fields.type_name(text)}")
            texts.append(text)
        elif kind in IMAGE_PARTS:
            return None, Problem(f"{where}[{j}]", "image content is not supported; only text turns can be imported "
                                                  "(drop the image parts, or leave the row out with --skip-invalid)")
        elif isinstance(kind, str):
            return None, Problem(f"{where}[{j}]", f"content part of type {kind!r} is not supported; only text parts are")
        else:
            return None, Problem(f"{where}[{j}]", "a content part must be an object with a 'type' (e.g. {\"type\": \"text\", \"text\": ...})")
    return "".join(texts), None


def tool_call(obj: Any, where: str) -> tuple[ToolCall | None, Problem | None]:
    """One call: OpenAI's {"id", "type", "function": {"name", "arguments"}} or a bare {"name", "arguments"}."""
    if not isinstance(obj, dict):
        return None, Problem(where, f"a tool call must be an object with a name and arguments, got {fields.type_name(obj)}")
    f = obj["function"] if isinstance(obj.get("function"), dict) else obj
    name = f.get("name")
    if not isinstance(name, str) or not name.strip():
        return None, Problem(where, "a tool call needs the function's name (a string)")
    args = f.get("arguments", f.get("parameters", {}))
    if not isinstance(args, str):
        args = json.dumps(args, ensure_ascii=False)
    call_id = obj.get("id")
    return ToolCall(name, args, call_id if isinstance(call_id, str) else None), None


def _calls_from_text(text: str, where: str) -> tuple[tuple[ToolCall, ...], Problem | None]:
    """A function_call turn's value: JSON {"name", "arguments"} or a list of them."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return (), Problem(where, f"a function_call turn holds JSON {{\"name\", \"arguments\"}}; this is not JSON ({exc.msg} at column {exc.colno})")
    calls = []
    for j, obj in enumerate(value if isinstance(value, list) else [value]):
        call, bad = tool_call(obj, where if not isinstance(value, list) else f"{where}[{j}]")
        if call is None:  # tool_call gives a call or a problem
            return (), bad
        calls.append(call)
    if not calls:
        return (), Problem(where, "a function_call turn with no call in it")
    return tuple(calls), None


def _weight(turn: dict, role: str, where: str) -> tuple[int | None, Problem | None]:
    key = "weight" if "weight" in turn else "loss_weight" if "loss_weight" in turn else None
    if key is None or turn[key] is None:
        return None, None
    w = turn[key]
    if isinstance(w, bool) or not isinstance(w, (int, float)) or w not in (0, 1):
        return None, Problem(f"{where}.{key}", f"must be 0 (not trained) or 1, got {json.dumps(w)[:20]}")
    if role != "assistant":
        if w == 1:
            return None, Problem(f"{where}.{key}", f"only assistant turns are trained; a {role} turn cannot have {key} 1")
        return None, None  # 0 on a prompt turn is what training does anyway
    return (0 if w == 0 else None), None


def tools(rec: dict, problems: list[Problem]) -> tuple[dict[str, Any], ...]:
    """The row's tool schemas in OpenAI's shape, from a list or a JSON string of one."""
    value = rec.get("tools")
    if value is None or value == "" or value == []:
        return ()
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            problems.append(Problem("tools", f"a JSON string that is not valid JSON ({exc.msg} at column {exc.colno})"))
            return ()
        if value == [] or value is None:
            return ()
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        problems.append(Problem("tools", f"must be a list of function schemas (or one as a JSON string), got {fields.type_name(value)}"))
        return ()
    out = []
    for j, t in enumerate(value):
        if isinstance(t, dict) and isinstance(t.get("function"), dict):
            f = t["function"]
        elif isinstance(t, dict):
            f = t
        else:
            problems.append(Problem(f"tools[{j}]", f"must be a function schema object, got {fields.type_name(t)}"))
            continue
        if not isinstance(f.get("name"), str) or not f["name"].strip():
            problems.append(Problem(f"tools[{j}]", "a function schema needs a name"))
            continue
        out.append({"type": t.get("type", "function") if f is not t else "function", "function": f})
    return tuple(out)


def to_sample(rec: dict, source_file: str, source_row: int, list_key: str) -> tuple[Sample | None, list[Problem]]:
    problems: list[Problem] = []
    system = fields.get_str(rec, "system", problems, required=False)
    if list_key not in rec:
        return None, [Problem(list_key, "missing")]
    turns = rec[list_key]
    if not isinstance(turns, list):
        return None, [Problem(list_key, f"must be a list of turns, got {fields.type_name(turns)}")]
    messages: list[Message] = []
    offset = 0
    first_keys: tuple[str, str] | None = None
    known = ", ".join(sorted(ROLE_NAMES))
    for i, turn in enumerate(turns):
        where = f"{list_key}[{i}]"
        if not isinstance(turn, dict):
            problems.append(Problem(where, f"must be an object with 'role' and 'content' (or 'from' and 'value'), got {fields.type_name(turn)}"))
            continue
        role_key, content_key = _keys(turn)
        if role_key is None:
            keys = ", ".join(sorted(map(str, turn)))[:120]
            problems.append(Problem(where, f"has no 'role' or 'from' key (its keys: {keys}); name yours with "
                                           f"--map role=YOUR_KEY,content=YOUR_KEY"))
            continue
        first_keys = first_keys or (role_key, content_key)
        raw_role = turn.get(role_key)
        if not isinstance(raw_role, str):
            problems.append(Problem(f"{where}.{role_key}", "missing" if raw_role is None else f"must be a string, got {fields.type_name(raw_role)}"))
            continue
        role = ROLE_NAMES.get(raw_role.strip().lower())
        if role is None:
            problems.append(Problem(f"{where}.{role_key}", f"unknown role {raw_role!r} (expected one of: {known})"))
            continue
        calls: tuple[ToolCall, ...] = ()
        if role == "assistant":
            raw_calls = turn.get("tool_calls")
            if raw_calls is None and isinstance(turn.get("function_call"), dict):
                raw_calls = [turn["function_call"]]
            if raw_calls is not None:
                if not isinstance(raw_calls, list):
                    problems.append(Problem(f"{where}.tool_calls", f"must be a list of calls, got {fields.type_name(raw_calls)}"))
                    continue
                parsed = [tool_call(c, f"{where}.tool_calls[{j}]") for j, c in enumerate(raw_calls)]
                if (bad := next((p for _, p in parsed if p), None)):
                    problems.append(bad)
                    continue
                calls = tuple(c for c, _ in parsed if c)
        if content_key not in turn and not calls:
            problems.append(Problem(f"{where}.{content_key}", "missing"))
            continue
        content, bad = content_text(turn.get(content_key), f"{where}.{content_key}")
        if bad:
            problems.append(bad)
            continue
        if content is None and calls:
            content = ""
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
        if role == "tool_call":
            calls, bad = _calls_from_text(content, f"{where}.{content_key}")
            if bad:
                problems.append(bad)
                continue
            role, content = "assistant", ""
        weight, bad = _weight(turn, role, where)
        if bad:
            problems.append(bad)
            continue
        call_id = turn.get("tool_call_id") if role == "tool" and isinstance(turn.get("tool_call_id"), str) else None
        name = turn.get("name") if role == "tool" and isinstance(turn.get("name"), str) else None
        messages.append(Message(role, content, calls, call_id, name, weight))
    messages = link_tool_ids(messages)
    sid = fields.source_id(rec, problems)
    tags = fields.tags(rec, problems)
    schemas = tools(rec, problems)
    if problems:
        return None, problems
    sample = Sample(kind="chat", system=system or None, messages=tuple(messages), source_file=source_file,
                    source_row=source_row, source_id=sid, tags=tags, operation="import", tools=schemas)
    invalid = validate(sample)
    if invalid:
        role_key, content_key = first_keys or ("role", "content")
        return None, fields.remap_turn_problems(invalid, list_key, offset, role_key, content_key)
    return sample, []


def link_tool_ids(messages: list[Message]) -> list[Message]:
    """Give calls without an id one (call_1, call_2, ... within the sample), and a tool turn without
    a `tool_call_id` the id of the oldest call not answered yet (and its function's name). glaive and
    LLaMA-Factory rows carry no ids, and OpenAI's format needs them: a tool turn answers a call by id."""
    taken = {c.id for m in messages for c in m.tool_calls if c.id} | {m.tool_call_id for m in messages if m.tool_call_id}
    counter = 0
    pending: list[ToolCall] = []
    out = []
    for m in messages:
        if m.tool_calls:
            calls = []
            for c in m.tool_calls:
                if c.id is None:
                    counter += 1
                    while f"call_{counter}" in taken:
                        counter += 1
                    c = replace(c, id=f"call_{counter}")
                calls.append(c)
            m = replace(m, tool_calls=tuple(calls))
            pending = list(calls)
        elif m.role == "tool":
            if m.tool_call_id is None and pending:
                call = pending.pop(0)
                m = replace(m, tool_call_id=call.id, name=m.name or call.name)
            else:
                pending = [c for c in pending if c.id != m.tool_call_id]
        out.append(m)
    return out
