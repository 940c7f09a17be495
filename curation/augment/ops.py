"""The four augmentation operations: what each asks the model, and what each answer becomes.

- rewrite: one request per sample asking for N paraphrases of its instruction (JSON output); each
  paraphrase becomes a new sample with the same answer.
- answers: N requests per sample (the conversation without its last answer, `seed` = variant);
  each reply becomes a new sample with the same conversation and the new answer.
- reverse: N requests per sample (`seed` = variant) asking which instruction the answer (or a raw
  text sample) answers; each reply becomes a new sample: that instruction, the original answer.
- judge: one request per sample, a 1-5 score with a short reason (JSON output) stored in
  samples.judge_score / judge_reason.

`build_requests` is pure (no database, no network) so the dry run and the job plan the same
requests; `parse` turns a reply into output or raises `Unusable` with a reason.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from . import cost as cost_mod
from .cache import request_key
from .providers import Provider
from .selection import SampleView
from .templates import TemplateSet

JSON_FORMAT = {"type": "json_object"}


class Unusable(Exception):
    """A reply that arrived but cannot be used; `reason` is stored with the failure."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass
class Request:
    key: str
    op: str
    sample_id: int
    variant: int
    messages: list[dict[str, str]]
    params: dict[str, Any]
    template: dict[str, str]
    est_prompt_tokens: int
    expected_completion_tokens: int
    n: int = 1                                     # paraphrases asked for (rewrite)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def max_tokens(self) -> int:
        return int(self.params.get("max_tokens") or 0)


def _params(temperature: float, max_tokens: int, *, seed: int | None = None, json_mode: bool = False) -> dict[str, Any]:
    p: dict[str, Any] = {"temperature": temperature, "max_tokens": int(max_tokens)}
    if seed is not None:
        p["seed"] = int(seed)
    if json_mode:
        p["response_format"] = JSON_FORMAT
    return p


def build_requests(op: str, samples: list[SampleView], *, n: int, provider: Provider, templates: TemplateSet,
                   temperature: float | None = None) -> tuple[list[Request], int]:
    """The requests an operation sends for these samples, and how many samples it skipped
    (the operation does not apply: e.g. rewriting a raw-text sample)."""
    out: list[Request] = []
    skipped = 0
    for s in samples:
        tpl = templates.get(op, s.lang)
        reqs: list[tuple[list[dict[str, str]], dict[str, Any], int, int]] = []  # messages, params, variant, expected
        if op == "rewrite":
            if s.kind != "chat" or not s.instruction:
                skipped += 1
                continue
            it = cost_mod.count_tokens(s.instruction)
            msgs = tpl.render(instruction=s.instruction, n=n)
            reqs.append((msgs, _params(0.9 if temperature is None else temperature,
                                       min(8192, 64 + n * (2 * it + 48)), json_mode=True), 0, 16 + n * (it + 12)))
        elif op == "answers":
            if s.kind != "chat" or not s.messages or s.messages[-1]["role"] != "assistant":
                skipped += 1
                continue
            at = cost_mod.count_tokens(s.answer)
            system = s.system if s.system else (tpl.render()[0]["content"] if tpl.system else None)
            msgs = ([{"role": "system", "content": system}] if system else []) + [dict(m) for m in s.messages[:-1]]
            for v in range(n):
                reqs.append((msgs, _params(1.0 if temperature is None else temperature,
                                           min(4096, max(512, 2 * at)), seed=v), v, max(64, at)))
        elif op == "reverse":
            body = s.answer if s.kind == "chat" else s.text
            if not body or not body.strip():
                skipped += 1
                continue
            msgs = tpl.render(answer=body)
            guess = cost_mod.count_tokens(s.instruction) if s.instruction else 40
            for v in range(n):
                reqs.append((msgs, _params(0.7 if temperature is None else temperature, 512, seed=v), v, max(16, guess)))
        elif op == "judge":
            if s.kind == "chat":
                instruction, answer = s.instruction or "", s.answer or ""
            else:
                instruction, answer = "(raw text for continued pretraining)", s.text or ""
            msgs = tpl.render(instruction=instruction, answer=answer)
            reqs.append((msgs, _params(0.0 if temperature is None else temperature, 256, json_mode=True), 0, 48))
        else:
            raise ValueError(op)
        for msgs, params, variant, expected in reqs:
            key = request_key(provider.base_url, str(provider.model), msgs, params, tpl.version)
            out.append(Request(key=key, op=op, sample_id=s.id, variant=variant, messages=msgs, params=params,
                               template=tpl.record(), est_prompt_tokens=cost_mod.count_message_tokens(msgs),
                               expected_completion_tokens=int(expected), n=n if op == "rewrite" else 1))
    return out, skipped


_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.IGNORECASE)


def _json_object(content: str) -> Any:
    text = _FENCE.sub("", content.strip())
    try:
        return json.loads(text)
    except ValueError:
        start, end = text.find("{"), text.rfind("}")
        if 0 <= start < end:
            try:
                return json.loads(text[start:end + 1])
            except ValueError:
                pass
    raise Unusable("unparsable", f"not a JSON object: {content[:200]!r}")


_PREFIX = re.compile(r"^\s*(instruction|指令|问题|question)\s*[:：]\s*", re.IGNORECASE)


def parse(req: Request, content: str, original: SampleView) -> Any:
    """The usable part of a reply: a list of paraphrases, an answer, an instruction, or a
    (score, reason) pair. Raises Unusable."""
    if req.op == "rewrite":
        data = _json_object(content)
        items = data.get("paraphrases") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise Unusable("unparsable", f'no "paraphrases" list in {content[:200]!r}')
        seen = {(original.instruction or "").strip()}
        kept = []
        for item in items:
            if isinstance(item, str) and item.strip() and item.strip() not in seen:
                seen.add(item.strip())
                kept.append(item.strip())
        if not kept:
            raise Unusable("unparsable", f"no usable paraphrase in {content[:200]!r}")
        return kept[: req.n]
    if req.op == "answers":
        return content.strip()
    if req.op == "reverse":
        text = _PREFIX.sub("", content.strip()).strip()
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'“”「」":
            text = text[1:-1].strip()
        if not text:
            raise Unusable("empty", "the instruction is empty after cleaning")
        return text
    if req.op == "judge":
        data = _json_object(content)
        if not isinstance(data, dict) or "score" not in data:
            raise Unusable("unparsable", f'no "score" in {content[:200]!r}')
        try:
            score = float(data["score"])
        except (TypeError, ValueError):
            raise Unusable("unparsable", f"score {data['score']!r} is not a number") from None
        if not 1 <= score <= 5:
            raise Unusable("unparsable", f"score {score:g} is outside 1-5")
        return round(score), str(data.get("reason") or "").strip()[:1000]
    raise ValueError(req.op)
