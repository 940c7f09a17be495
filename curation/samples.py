"""The canonical sample every importer produces and every exporter reads.

A sample is either a conversation (kind 'chat': an optional system prompt, then user and assistant
turns that alternate, starting with the user and ending with the assistant) or a raw text (kind
'text', for continued pretraining). Beside the content it carries where it came from (source file,
row, the source's own id), its language, tags, and lineage (parent sample and the operation that
made it).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Sequence

from . import lang as lang_mod

ROLES = ("user", "assistant")
STATUSES = ("pending", "approved", "rejected")


@dataclass(frozen=True)
class Message:
    role: str
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


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

    def content_hash(self) -> str:
        """sha256 of the content (system, turns, text): equal content, equal hash."""
        payload = json.dumps(
            [self.kind, self.system or "", [[m.role, m.content] for m in self.messages], self.text or ""],
            ensure_ascii=False,
            separators=(",", ":"),
        )
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
    for i, m in enumerate(sample.messages):
        if m.role not in ROLES:
            out.append(Problem(f"messages[{i}].role", f"{m.role!r} is not 'user' or 'assistant'"))
        if not isinstance(m.content, str):
            out.append(Problem(f"messages[{i}].content", "must be a string"))
        elif not m.content.strip() and m.role == "user":
            out.append(Problem(f"messages[{i}].content", "user turn is empty"))
        expected = ROLES[i % 2]
        if m.role in ROLES and m.role != expected:
            out.append(Problem(f"messages[{i}].role", f"expected {expected!r} here (turns alternate, user first), got {m.role!r}"))
            break
    if sample.messages and sample.messages[-1].role != "assistant" and not out:
        out.append(Problem(f"messages[{len(sample.messages) - 1}]", "conversation must end with an assistant turn"))
    return out


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
    return Sample(
        kind=row["kind"],
        system=row.get("system"),
        messages=tuple(Message(m["role"], m["content"]) for m in (msgs or [])),
        text=row.get("text"),
        source_file=row.get("source_file"),
        source_row=row.get("source_row"),
        source_id=row.get("source_id"),
        lang=row.get("lang"),
        tags=tuple(row.get("tags") or ()),
        parent_id=row.get("parent_id"),
        operation=row.get("operation"),
        lineage=lineage or {},
    )


def messages_from_json(value: str | Sequence[dict[str, str]] | None) -> list[dict[str, str]]:
    if value is None:
        return []
    if isinstance(value, str):
        return json.loads(value)
    return list(value)
