"""Robust chat-completion calls to one OpenAI-compatible provider.

The `openai` AsyncOpenAI client sends the requests (with `max_retries=0`: retries happen here, so
Retry-After, the budget and cancellation stay under our control). Around each call:

- a semaphore bounds requests in flight (the provider's `concurrency`);
- token buckets keep to the provider's requests/min and tokens/min;
- timeouts, connection errors, 429 and 5xx are retried with exponential backoff and jitter; a
  `retry-after-ms` or `Retry-After` header (seconds or an HTTP date) is honoured, and it pauses
  every request to that provider, not just the one that got it;
- a reply that is not usable (body not JSON, no choices, empty content, a refusal or content
  filter) comes back as a failed `Reply` with its reason: never an exception.

The body is parsed here with `json.loads` rather than the client's pydantic models: it is faster,
and a malformed body becomes a reason instead of a traceback. `openai` is imported inside
`ProviderClient.__init__` (0.45 s): the studio's first screen must not pay for it.
"""
from __future__ import annotations

import asyncio
import email.utils
import json
import random
import time
from dataclasses import dataclass
from typing import Any

from .providers import Provider

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


@dataclass
class Reply:
    ok: bool
    content: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usage_reported: bool = False    # False: the server sent no usage (tokens are then estimates)
    reason: str | None = None       # why it failed: timeout, connection, http_429, http_500, http_400,
                                    # invalid_json, no_choices, empty, refusal
    detail: str = ""
    attempts: int = 0
    latency_s: float = 0.0          # of the last attempt


class RateLimiter:
    """A token bucket refilled at `per_minute / 60` a second, holding at most one second's worth
    (at least one request). A request bigger than the bucket waits for a full bucket and then
    takes it into debt, so it is never stuck."""

    def __init__(self, per_minute: float):
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self.level = self.capacity
        self.stamp = time.monotonic()
        self.lock = asyncio.Lock()

    async def acquire(self, amount: float = 1.0) -> None:
        async with self.lock:
            need = min(amount, self.capacity)
            while True:
                now = time.monotonic()
                self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.level >= need:
                    self.level -= amount
                    return
                await asyncio.sleep((need - self.level) / self.rate)


def retry_after_seconds(headers: Any) -> float | None:
    """The server's requested wait: `retry-after-ms` (OpenAI's), else `Retry-After` in seconds or
    as an HTTP date. None when absent or unreadable."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if ra:
        try:
            return max(0.0, float(ra))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(ra)
                return max(0.0, when.timestamp() - time.time())
            except (TypeError, ValueError):
                return None
    return None


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with jitter: base * 2^(attempt-1), capped, times a random 0.5-1.0."""
    return min(cap, base * (2 ** (attempt - 1))) * (0.5 + rng.random() / 2)


class ProviderClient:
    """Calls one provider. Create, use and close it inside the same running event loop."""

    def __init__(self, provider: Provider, *, backoff_base_s: float = 0.5, backoff_cap_s: float = 30.0,
                 max_retry_after_s: float = 120.0, seed: int | None = None):
        import openai  # 0.45 s: only when a job actually calls a provider

        self.openai = openai
        self.provider = provider
        self.client = openai.AsyncOpenAI(
            base_url=provider.base_url,
            api_key=provider.api_key(),
            max_retries=0,
            timeout=provider.timeout_s,
        )
        self.semaphore = asyncio.Semaphore(max(1, int(provider.concurrency)))
        self.rpm = RateLimiter(provider.requests_per_min) if provider.requests_per_min else None
        self.tpm = RateLimiter(provider.tokens_per_min) if provider.tokens_per_min else None
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.max_retry_after_s = max_retry_after_s
        self.not_before = 0.0  # monotonic time before which no request starts (set by Retry-After)
        self.rng = random.Random(seed)

    async def aclose(self) -> None:
        await self.client.close()

    async def _wait_cooldown(self) -> None:
        while True:
            wait = self.not_before - time.monotonic()
            if wait <= 0:
                return
            await asyncio.sleep(wait)

    async def complete(self, messages: list[dict[str, str]], params: dict[str, Any], *, tokens: float = 1.0) -> Reply:
        """Send one chat completion, retrying what is worth retrying. Never raises for a server's
        misbehaviour; cancellation (asyncio.CancelledError) propagates."""
        openai = self.openai
        p = self.provider
        last = Reply(ok=False, reason="not_sent")
        for attempt in range(1, max(1, p.max_attempts) + 1):
            await self._wait_cooldown()
            if self.rpm:
                await self.rpm.acquire(1)
            if self.tpm:
                await self.tpm.acquire(tokens)
            wait: float | None = None
            started = time.monotonic()
            try:
                async with self.semaphore:
                    started = time.monotonic()
                    # plain dicts, not the SDK's TypedDicts; a model that providers.resolve checked is set
                    raw = await self.client.chat.completions.with_raw_response.create(
                        model=p.model, messages=messages, **params)  # type: ignore[arg-type]
                    text = raw.http_response.text
                reply = parse_body(text)
                reply.attempts = attempt
                reply.latency_s = time.monotonic() - started
                if reply.reason != "invalid_json":
                    return reply
                last = reply  # a truncated or garbled body is a transport problem: try again
            except openai.APITimeoutError:
                last = Reply(ok=False, reason="timeout", detail=f"no reply within {p.timeout_s:g}s", attempts=attempt)
            except openai.APIConnectionError as exc:
                last = Reply(ok=False, reason="connection", detail=str(exc)[:300], attempts=attempt)
            except openai.APIStatusError as exc:
                status = exc.status_code
                last = Reply(ok=False, reason=f"http_{status}", detail=_error_message(exc), attempts=attempt)
                if status not in RETRYABLE_STATUS:
                    return last
                wait = retry_after_seconds(exc.response.headers)
                if wait is not None:
                    wait = min(wait, self.max_retry_after_s)
                    self.not_before = max(self.not_before, time.monotonic() + wait)
            last.latency_s = time.monotonic() - started
            if attempt >= p.max_attempts:
                break
            delay = wait if wait is not None else backoff_delay(attempt, self.backoff_base_s, self.backoff_cap_s, self.rng)
            await asyncio.sleep(delay)
        return last


def _error_message(exc: Any) -> str:
    try:
        body = exc.response.json()
        msg = (body.get("error") or {}).get("message") if isinstance(body, dict) else None
        if msg:
            return str(msg)[:500]
    except Exception:  # the error body may be anything; the status says enough then
        pass
    return str(exc)[:500]


def parse_body(text: str) -> Reply:
    """A chat.completion body to a Reply; anything unusable becomes a failure with its reason."""
    try:
        body = json.loads(text)
    except ValueError as exc:
        return Reply(ok=False, reason="invalid_json", detail=f"{exc}; body starts {text[:120]!r}")
    if not isinstance(body, dict):
        return Reply(ok=False, reason="invalid_json", detail=f"body is a {type(body).__name__}, not an object")
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else None
    prompt_tokens = int((usage or {}).get("prompt_tokens") or 0)
    completion_tokens = int((usage or {}).get("completion_tokens") or 0)
    base: dict[str, Any] = dict(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, usage_reported=usage is not None)
    if isinstance(body.get("error"), dict):
        return Reply(ok=False, reason="api_error", detail=str(body["error"].get("message"))[:500], **base)
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return Reply(ok=False, reason="no_choices", detail="the reply has no choices", **base)
    choice = choices[0]
    message: dict[str, Any] = choice["message"] if isinstance(choice.get("message"), dict) else {}
    finish = choice.get("finish_reason")
    content = message.get("content")
    refusal = message.get("refusal")
    if refusal:
        return Reply(ok=False, reason="refusal", detail=str(refusal)[:500], finish_reason=finish, **base)
    if finish == "content_filter":
        return Reply(ok=False, reason="refusal", detail="stopped by the provider's content filter", finish_reason=finish, **base)
    if not isinstance(content, str) or not content.strip():
        return Reply(ok=False, reason="empty", detail=f"empty content (finish_reason={finish})", finish_reason=finish, **base)
    return Reply(ok=True, content=content, finish_reason=finish, **base)
