"""The canonical sample every importer produces and every exporter reads.

A sample is either a conversation (kind 'chat': an optional system prompt, then user and assistant
turns that alternate, starting with the user and ending with the assistant) or a raw text (kind
'text', for continued pretraining). Beside the content it carries where it came from (source file,
row, the source's own id), its language, tags, and lineage (parent sample and the operation that
made it).

Tool use, in OpenAI's shape (what `messages_json` stores and a messages export writes): an
assistant turn may carry `tool_calls` ({"id", "type": "function", "function": {"name",
"arguments": JSON text}}) and is then followed by one or more `tool` turns (the results, with
`tool_call_id` / `name` when the source gave them) before the assistant speaks again. The tool
schemas offered to the model are the sample's `tools` ([{"type": "function", "function": {...}}]).
An assistant turn with `weight` 0 (OpenAI's fine-tuning field) is kept, shown and exported but not
trained. A plain turn is exactly {"role", "content"}, so plain samples store and hash as before.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from . import lang as lang_mod

ROLES = ("user", "assistant")
TOOL_ROLE = "tool"
STATUSES = ("pending", "approved", "rejected")


@dataclass(frozen=True)
class ToolCall:
    """One call an assistant turn makes: the function's name and its arguments as JSON text."""

    name: str
    arguments: str = "{}"
    id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id} if self.id is not None else {}
        out.update({"type": "function", "function": {"name": self.name, "arguments": self.arguments}})
        return out


@dataclass(frozen=True)
class Message:
    role: str
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None   # a tool turn: the call it answers
    name: str | None = None           # a tool turn: the function that answered
    weight: int | None = None         # 0: kept but not trained (only stored when 0)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [c.as_dict() for c in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            out["name"] = self.name
        if self.weight is not None:
            out["weight"] = self.weight
        return out

    @property
    def extras(self) -> dict[str, Any]:
        """What the turn carries beside role and content (empty for a plain turn)."""
        d = self.as_dict()
        del d["role"], d["content"]
        return d

    @classmethod
    def from_dict(cls, m: dict[str, Any]) -> "Message":
        """A stored turn ({"role", "content"} plus the tool fields) back into a Message."""
        calls = []
        for c in m.get("tool_calls") or ():
            f = c.get("function") or c
            args = f.get("arguments")
            calls.append(ToolCall(str(f.get("name")), args if isinstance(args, str) else json.dumps(args, ensure_ascii=False),
                                  c.get("id")))
        return cls(m["role"], m.get("content") or "", tuple(calls), m.get("tool_call_id"), m.get("name"), m.get("weight"))


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a row: `field` is a path like `messages[2].role`."""

    field: str
    message: str


@dataclass(frozen=True)
class Sample:
    kind: str  # 'chat' or 'text'
    messages: tuple[Message, ...] = ()
    system: str | None = None
    text: str | None = None
    source_file: str | None = None
    source_row: int | None = None
    source_id: str | None = None
    lang: str | None = None
    tags: tuple[str, ...] = ()
    parent_id: int | None = None
    operation: str | None = None
    lineage: dict[str, Any] = field(default_factory=dict)
    tools: tuple[dict[str, Any], ...] = ()  # tool schemas, [{"type": "function", "function": {...}}]

    # -- derived ---------------------------------------------------------------------------
    @property
    def instruction(self) -> str | None:
        for m in self.messages:
            if m.role == "user":
                return m.content
        return None

    @property
    def answer(self) -> str | None:
        for m in reversed(self.messages):
            if m.role == "assistant":
                return m.content
        return None

    def messages_json(self) -> str | None:
        if self.kind != "chat":
            return None
        return json.dumps([m.as_dict() for m in self.messages], ensure_ascii=False)

    def tools_json(self) -> str | None:
        return json.dumps(list(self.tools), ensure_ascii=False) if self.tools else None

    def content_hash(self) -> str:
        """sha256 of the content (system, turns, text; tool calls, weights and tools when there are
        any): equal content, equal hash. A plain sample hashes as it always did."""
        turns = [[m.role, m.content, m.extras] if m.extras else [m.role, m.content] for m in self.messages]
        content: list[Any] = [self.kind, self.system or "", turns, self.text or ""]
        if self.tools:
            content.append(list(self.tools))
        payload = json.dumps(content, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def detected_lang(self) -> str:
        if self.lang:
            return self.lang
        probe = self.text if self.kind == "text" else " ".join(m.content for m in self.messages[:2])
        return lang_mod.detect(probe)

    def problems(self) -> list[Problem]:
        return validate(self)


def validate(sample: Sample) -> list[Problem]:
    """Everything wrong with a sample, as (field, message) pairs; empty when it is valid."""
    out: list[Problem] = []
    if sample.kind == "text":
        if not isinstance(sample.text, str):
            out.append(Problem("text", "missing or not a string"))
        elif not sample.text.strip():
            out.append(Problem("text", "is empty"))
        return out
    if sample.kind != "chat":
        return [Problem("kind", f"unknown sample kind {sample.kind!r}")]
    if sample.system is not None and not isinstance(sample.system, str):
        out.append(Problem("system", "must be a string"))
    if not sample.messages:
        out.append(Problem("messages", "no user/assistant turns"))
        return out
    prev: Message | None = None
    for i, m in enumerate(sample.messages):
        if m.role not in ROLES and m.role != TOOL_ROLE:
            out.append(Problem(f"messages[{i}].role", f"{m.role!r} is not 'user' or 'assistant'"
                               + (" (or 'tool', after an assistant turn with tool_calls)" if any(x.tool_calls for x in sample.messages) else "")))
        if not isinstance(m.content, str):
            out.append(Problem(f"messages[{i}].content", "must be a string"))
        elif not m.content.strip() and m.role == "user":
            out.append(Problem(f"messages[{i}].content", "user turn is empty"))
        if m.tool_calls and m.role != "assistant":
            out.append(Problem(f"messages[{i}].tool_calls", "only an assistant turn calls tools"))
        if m.weight not in (None, 0, 1):
            out.append(Problem(f"messages[{i}].weight", f"must be 0 or 1, got {m.weight!r}"))
        problem = _order_problem(prev, m)
        if problem and (m.role in ROLES or m.role == TOOL_ROLE):
            out.append(Problem(f"messages[{i}].role", problem))
            break
        if m.role in ROLES or m.role == TOOL_ROLE:
            prev = m
    last = sample.messages[-1]
    if last.role != "assistant" and not out:
        out.append(Problem(f"messages[{len(sample.messages) - 1}]", "conversation must end with an assistant turn"))
    return out


def _order_problem(prev: Message | None, m: Message) -> str | None:
    """Why `m` cannot follow `prev` (None: it can). Turns alternate user, assistant, user, ...; an
    assistant turn with tool_calls is followed by its tool results, then the assistant again."""
    if prev is None or prev.role == "user" or (prev.role == "assistant" and not prev.tool_calls):
        expected = "user" if prev is None or prev.role == "assistant" else "assistant"
        if m.role == expected:
            return None
        if m.role == TOOL_ROLE:
            return "a tool turn must follow an assistant turn with tool_calls (or another tool turn)"
        return f"expected {expected!r} here (turns alternate, user first), got {m.role!r}"
    if prev.role == "assistant":  # it called tools
        return None if m.role == TOOL_ROLE else f"expected 'tool' here (the results of the assistant's tool_calls), got {m.role!r}"
    return None if m.role in (TOOL_ROLE, "assistant") else f"expected 'tool' or 'assistant' here (after a tool result), got {m.role!r}"


def chat(user: str, assistant: str, system: str | None = None, **kw: Any) -> Sample:
    """A single-turn conversation: the common alpaca case."""
    return Sample(kind="chat", system=system, messages=(Message("user", user), Message("assistant", assistant)), **kw)


def from_row(row: dict[str, Any]) -> Sample:
    """Rebuild a Sample from a `samples` table row (as a dict)."""
    msgs = row.get("messages")
    if isinstance(msgs, str):
        msgs = json.loads(msgs)
    lineage = row.get("lineage")
    if isinstance(lineage, str):
        lineage = json.loads(lineage)
    tools = row.get("tools")
    return Sample(
        kind=row["kind"],
        system=row.get("system"),
        messages=tuple(Message.from_dict(m) for m in (msgs or [])),
        text=row.get("text"),
        source_file=row.get("source_file"),
        source_row=row.get("source_row"),
        source_id=row.get("source_id"),
        lang=row.get("lang"),
        tags=tuple(row.get("tags") or ()),
        parent_id=row.get("parent_id"),
        operation=row.get("operation"),
        lineage=lineage or {},
        tools=tuple(json.loads(tools) if isinstance(tools, str) else (tools or ())),
    )
