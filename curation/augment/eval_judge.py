"""The LLM-judge scorer of `studio eval`: grade model answers against reference answers through a
configured provider, with the augmentation client, request cache and cost accounting.

    score = judge_scorer(ws, provider="gpt", threshold=4)
    run_eval(..., scorer="judge", extra_scorers={"judge": score})

`training` never imports `curation`, so the scorer is built here and handed to
`training.evaluate.run_eval` as a batch scorer: `score(items, answers)` takes items with
`.messages` (the prompt: a list of {role, content}) and `.reference`, one answer per item, and
returns one `JudgeScore` per item (the same attributes as training's `Score`).

Each (prompt, reference, answer) becomes one chat request rendered from the `eval_judge` template
(`templates/en/eval_judge.txt`, overridable at WORKSPACE/templates/en/eval_judge.txt like the
augment templates), sent greedily (temperature 0) in JSON mode, `provider.concurrency` at a time,
through `ProviderClient` (retries, rate limits, Retry-After). The judge's 1-5 grade becomes
`score = (grade - 1) / 4`, `correct = grade >= threshold`, `detail` = its reason.

Cache: the request key is `cache.request_key` over (base_url, model, messages, parameters,
template version); every answered request (a reply with content, even one that does not parse: at
temperature 0 asking again would pay for the same reply) is written to `llm_cache` as it arrives,
so a rerun sends nothing already answered. Transport failures (timeouts, HTTP errors, empty or
refused replies) are not cached: a rerun asks again. Identical requests in one batch go once.

Accounting: when anything is sent, the scorer adds a `jobs` row (kind `eval:judge`, shown on the
home screen) and its `llm_usage` row (so the per-provider totals of `studio augment jobs` and the
augment screen count eval spending), and records failures in `llm_failures`. These rows carry no
`augment_jobs` row, so `studio augment resume` never picks them. `cost_usd` of a score is what its request cost in THIS call, from the
server's usage and the provider's prices (0 for an answer from the cache, and 0 when the provider
has no prices).

A failed, refused or unparsable request never raises: its score is correct False, 0.0, and the
detail says what failed. The API key is read from the environment only to build the client; it is
never written to the database, logged, or put in a detail (a reply that echoes it is scrubbed).
"""
from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..errors import Cancelled, StudioError
from . import cache, providers
from . import cost as cost_mod
from .client import ProviderClient, Reply
from .jobs import _run_loop
from .ops import JSON_FORMAT, Unusable, _json_object
from .templates import Template, load_named

if TYPE_CHECKING:
    from ..workspace import Workspace

OPERATION = "eval_judge"          # llm_cache.operation of the judge's requests
JOB_KIND = "eval:judge"
TEMPLATE = "eval_judge"           # templates/{lang}/eval_judge.txt
MAX_TOKENS = 256
EXPECTED_COMPLETION_TOKENS = 48   # a score and one sentence
PARAMS: dict[str, Any] = {"temperature": 0.0, "max_tokens": MAX_TOKENS, "response_format": JSON_FORMAT}
CANCEL_GRACE_S = 5.0              # after a cancel, requests in flight get this long (they are paid for)
_REDACTED = "[api key removed]"


@dataclass(frozen=True)
class JudgeScore:
    """One answer's grade; the attributes of `training.evaluate.Score`."""

    correct: bool
    score: float      # (grade - 1) / 4: 1 -> 0.0, 5 -> 1.0
    detail: str       # the judge's reason, or what failed
    cost_usd: float   # spent on this answer's request in this call (0 from the cache)


# --------------------------------------------------------------------------- template, prompt, reply

def load_template(workspace_root: Path | None = None, lang: str = "en") -> Template:
    """The eval judge template: WORKSPACE/templates/LANG/eval_judge.txt if present, else the
    packaged one (the augment templates' format and loader)."""
    return load_named(TEMPLATE, lang, workspace_root)


_ROLE_LABEL = {"system": "System", "user": "User", "assistant": "Assistant"}


def instruction_text(messages: Sequence[dict[str, Any]]) -> str:
    """The prompt as the judge reads it: a lone user turn as is, a longer conversation (system
    prompt, earlier turns) as a labelled transcript."""
    msgs = [m for m in messages or () if str(m.get("content") or "").strip()]
    if len(msgs) == 1 and msgs[0].get("role") == "user":
        return str(msgs[0]["content"])
    return "\n\n".join(f"{_ROLE_LABEL.get(str(m.get('role')), str(m.get('role')))}: {m['content']}" for m in msgs)


def parse_grade(content: str) -> tuple[int, str]:
    """(grade 1-5, reason) from the judge's reply; raises ops.Unusable."""
    data = _json_object(content)
    if not isinstance(data, dict) or "score" not in data:
        raise Unusable("unparsable", f'no "score" in {content[:200]!r}')
    raw = data["score"]
    try:
        if isinstance(raw, bool):
            raise TypeError
        grade = float(raw)
    except (TypeError, ValueError):
        raise Unusable("unparsable", f"score {raw!r} is not a number") from None
    if not 1 <= grade <= 5:
        raise Unusable("unparsable", f"score {grade:g} is outside 1-5")
    return int(round(grade)), str(data.get("reason") or "").strip()[:1000]


def _scrub(text: str | None, secret: str | None) -> str:
    text = text or ""
    if secret and len(secret) >= 6 and secret in text:
        return text.replace(secret, _REDACTED)
    return text


# --------------------------------------------------------------------------- the scorer

@dataclass
class _Request:
    key: str
    messages: list[dict[str, str]]
    est_prompt_tokens: int
    positions: list[int] = field(default_factory=list)   # the items this request grades


@dataclass
class _Answer:
    """One sent request's end, for the writer thread."""

    req: _Request
    reply: Reply
    content: str                 # scrubbed
    usd: float
    prompt_tokens: int
    completion_tokens: int
    billed: bool                 # a server answered (counted in llm_usage.requests)
    failure: tuple[str, str] | None = None   # (reason, detail) for llm_failures


@dataclass
class _Tally:
    sent: int = 0
    cached: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usd: float = 0.0
    done: int = 0
    total: int = 0

    def summary(self) -> str:
        return (f"judged {self.done}/{self.total}  {self.prompt_tokens + self.completion_tokens:,} tok  "
                f"${self.usd:.4f}  cached {self.cached}  failed {self.failed}")


class _Judge:
    def __init__(self, ws: Workspace, provider: providers.Provider, template: Template, threshold: int, job: Any,
                 client_options: dict[str, Any]):
        self.ws, self.p, self.tpl, self.threshold, self.job = ws, provider, template, threshold, job
        self.client_options = client_options
        self.lock = threading.Lock()   # one batch at a time per scorer

    # -- public: the batch scorer --------------------------------------------------------------
    def __call__(self, items: Sequence[Any], answers: Sequence[str]) -> list[JudgeScore]:
        if len(items) != len(answers):
            raise ValueError(f"judge: {len(items)} items but {len(answers)} answers")
        with self.lock:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return self._score(items, answers)
            # called from a thread that runs an event loop: work in a thread of our own
            box: dict[str, Any] = {}

            def work() -> None:
                try:
                    box["out"] = self._score(items, answers)
                except BaseException as exc:
                    box["err"] = exc

            t = threading.Thread(target=work, name="eval-judge", daemon=True)
            t.start()
            t.join()
            if "err" in box:
                raise box["err"]
            return box["out"]

    # -- the work ------------------------------------------------------------------------------
    def _grade(self, content: str, cost: float) -> JudgeScore:
        try:
            grade, reason = parse_grade(content)
        except Unusable as exc:
            return JudgeScore(False, 0.0, f"judge reply unusable ({exc.reason}): {exc.detail}", cost)
        return JudgeScore(grade >= self.threshold, (grade - 1) / 4.0,
                          reason or f"graded {grade}/5 without a reason", cost)

    def _plan(self, items: Sequence[Any], answers: Sequence[str], results: list[JudgeScore | None]) -> list[_Request]:
        p, tpl = self.p, self.tpl
        by_key: dict[str, _Request] = {}
        for i, (item, answer) in enumerate(zip(items, answers)):
            answer = answer if isinstance(answer, str) else ("" if answer is None else str(answer))
            if not answer.strip():
                results[i] = JudgeScore(False, 0.0, "empty answer: graded without asking the judge", 0.0)
                continue
            msgs = tpl.render(instruction=instruction_text(getattr(item, "messages", None) or []),
                              reference=str(getattr(item, "reference", "") or ""), answer=answer)
            key = cache.request_key(p.base_url, str(p.model), msgs, PARAMS, tpl.version)
            req = by_key.get(key)
            if req is None:
                req = by_key[key] = _Request(key, msgs, cost_mod.count_message_tokens(msgs))
            req.positions.append(i)
        return list(by_key.values())

    def _progress(self, tally: _Tally, n: int) -> None:
        tally.done += n
        job = self.job
        if job is None:
            return
        try:
            job.advance(n, tally.summary())
        except Cancelled:
            pass  # the dispatcher sees job.cancelled and stops sending

    @property
    def _cancelled(self) -> bool:
        return bool(self.job is not None and getattr(self.job, "cancelled", False))

    def _score(self, items: Sequence[Any], answers: Sequence[str]) -> list[JudgeScore]:
        results: list[JudgeScore | None] = [None] * len(items)
        tally = _Tally(total=len(items))
        if self.job is not None:
            self.job.set_total(len(items))
        reqs = self._plan(items, answers, results)
        self._progress(tally, sum(r is not None for r in results))
        con = self.ws.cursor()
        try:
            cached = cache.lookup(con, [r.key for r in reqs])
            to_send = []
            for req in reqs:
                hit = cached.get(req.key)
                if hit is None:
                    to_send.append(req)
                    continue
                score = self._grade(hit.content, 0.0)
                for i in req.positions:
                    results[i] = score
                tally.cached += 1
                self._progress(tally, len(req.positions))
            if to_send and not self._cancelled:
                self._send(con, to_send, results, tally)
        finally:
            try:
                con.close()
            except Exception:  # closing a cursor must not hide the real error
                pass
        why = "cancelled" if self._cancelled else "not sent"
        return [r if r is not None else JudgeScore(False, 0.0, f"not judged: {why}", 0.0) for r in results]

    def _send(self, con: Any, to_send: list[_Request], results: list[JudgeScore | None], tally: _Tally) -> None:
        p = self.p
        try:
            p.api_key()
        except StudioError as exc:  # the message names the variable, never a value
            for req in to_send:
                for i in req.positions:
                    results[i] = JudgeScore(False, 0.0, f"not judged: {exc}", 0.0)
            return
        secret = os.environ.get(p.api_key_env) if p.api_key_env else None
        from .landing import WriterThread  # loads pyarrow: only when requests go out

        job_id = int(con.execute("SELECT nextval('job_id_seq')").fetchone()[0])
        con.execute("INSERT INTO jobs (id, kind, state, total, pid, message) VALUES (?, ?, 'running', ?, ?, ?)",
                    [job_id, JOB_KIND, len(to_send), os.getpid(), f"{p.name}/{p.model}"])
        written = {"done": 0}

        def write(batch: list[_Answer]) -> None:
            with self.ws.transaction(con):
                for a in batch:
                    if a.reply.ok:
                        cache.store(con, key=a.req.key, provider=p.name, base_url=p.base_url, model=str(p.model),
                                    operation=OPERATION, template=self.tpl.record(),
                                    request={"messages": a.req.messages, "params": PARAMS}, content=a.content,
                                    finish_reason=a.reply.finish_reason, prompt_tokens=a.prompt_tokens,
                                    completion_tokens=a.completion_tokens, cost_usd=a.usd,
                                    latency_s=a.reply.latency_s, job_id=job_id)
                    if a.failure is not None:
                        cache.record_failure(con, job_id=job_id, key=a.req.key, sample_id=None, reason=a.failure[0],
                                             detail=a.failure[1], attempts=a.reply.attempts)
                billed = [a for a in batch if a.billed]
                con.execute(
                    """INSERT INTO llm_usage (job_id, provider, model, requests, cached, failed, prompt_tokens, completion_tokens, cost_usd)
                       VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?)
                       ON CONFLICT (job_id, provider, model) DO UPDATE SET
                         requests = llm_usage.requests + excluded.requests,
                         failed = llm_usage.failed + excluded.failed,
                         prompt_tokens = llm_usage.prompt_tokens + excluded.prompt_tokens,
                         completion_tokens = llm_usage.completion_tokens + excluded.completion_tokens,
                         cost_usd = llm_usage.cost_usd + excluded.cost_usd""",
                    [job_id, p.name, str(p.model), len(billed), sum(a.failure is not None for a in batch),
                     sum(a.prompt_tokens for a in billed), sum(a.completion_tokens for a in billed),
                     sum(a.usd for a in billed)])
                written["done"] += len(batch)
                con.execute("UPDATE jobs SET done = ?, message = ? WHERE id = ?", [written["done"], tally.summary(), job_id])

        writer = WriterThread(write)
        state = "failed"
        error: BaseException | None = None
        try:
            try:
                _run_loop(self._send_all(to_send, results, tally, writer, secret))
            finally:
                writer.close()
            error = writer.error
            state = "cancelled" if self._cancelled else "done"
        finally:
            if error is not None:
                state = "failed"
            summary = {"requests": len(to_send), "sent": tally.sent, "failed": tally.failed,
                       "prompt_tokens": tally.prompt_tokens, "completion_tokens": tally.completion_tokens,
                       "usd": tally.usd, "provider": p.name, "model": str(p.model), "template": self.tpl.record()}
            con.execute("UPDATE jobs SET state = ?, finished_at = current_timestamp, done = ?, message = ?, result = ? "
                        "WHERE id = ?", [state, written["done"], tally.summary(), json.dumps(summary), job_id])
        if error is not None:
            raise error

    def _answer(self, req: _Request, reply: Reply, secret: str | None) -> _Answer:
        p = self.p
        content = _scrub(reply.content, secret)
        billed = reply.reason not in ("timeout", "connection", "not_sent") and not (reply.reason or "").startswith("http_")
        pt = (reply.prompt_tokens if reply.usage_reported else req.est_prompt_tokens) if billed else 0
        ct = (reply.completion_tokens if reply.usage_reported else cost_mod.count_tokens(content)) if billed else 0
        if reply.usage_reported:  # as augment jobs count it
            usd = p.cost(reply.prompt_tokens, reply.completion_tokens)
        elif reply.ok:
            usd = p.cost(req.est_prompt_tokens, ct)
        else:
            usd = 0.0
        failure = None
        if not reply.ok:
            detail = _scrub(reply.detail, secret)[:300]
            failure = (reply.reason or "failed", detail)
        else:
            try:
                parse_grade(content)
            except Unusable as exc:
                failure = (exc.reason, _scrub(exc.detail, secret))
        return _Answer(req, reply, content, usd, pt, ct, billed, failure)

    async def _send_all(self, reqs: list[_Request], results: list[JudgeScore | None], tally: _Tally,
                        writer: Any, secret: str | None) -> None:
        client = ProviderClient(self.p, **self.client_options)
        slots = asyncio.Semaphore(max(1, int(self.p.concurrency)))
        tasks: set[asyncio.Task[None]] = set()
        problems: list[BaseException] = []

        async def one(req: _Request) -> None:
            try:
                reply = await client.complete(req.messages, PARAMS,
                                              tokens=req.est_prompt_tokens + EXPECTED_COMPLETION_TOKENS)
                a = self._answer(req, reply, secret)
                writer.submit(a)
                if reply.ok:
                    score = self._grade(a.content, a.usd)
                else:
                    n = f", {reply.attempts} attempts" if reply.attempts > 1 else ""
                    reason, detail = a.failure or (reply.reason or "failed", "")  # _answer sets it when not ok
                    score = JudgeScore(False, 0.0, f"judge request failed ({reason}{n}): {detail}", a.usd)
                for k, i in enumerate(req.positions):  # identical requests: the cost goes to the first
                    results[i] = score if k == 0 else JudgeScore(score.correct, score.score, score.detail, 0.0)
                tally.sent += int(a.billed)
                tally.failed += int(a.failure is not None)
                tally.prompt_tokens += a.prompt_tokens
                tally.completion_tokens += a.completion_tokens
                tally.usd += a.usd
                self._progress(tally, len(req.positions))
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # a bug: stop sending, re-raised by the caller
                problems.append(exc)
            finally:
                slots.release()

        def stop() -> bool:
            return self._cancelled or bool(problems) or writer.error is not None

        try:
            for req in reqs:
                acquired = False
                while not stop():
                    try:
                        await asyncio.wait_for(slots.acquire(), timeout=0.1)
                        acquired = True
                        break
                    except asyncio.TimeoutError:
                        continue
                if not acquired:
                    break
                task = asyncio.create_task(one(req))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            deadline: float | None = None
            while tasks:
                await asyncio.wait(set(tasks), timeout=0.1)
                if self._cancelled:
                    deadline = deadline or time.monotonic() + CANCEL_GRACE_S
                    if time.monotonic() > deadline:
                        for t in list(tasks):
                            t.cancel()
                        await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            await client.aclose()
        if problems:
            raise problems[0]


def judge_scorer(ws: Workspace, *, provider: str | None = None, model: str | None = None, threshold: int = 4,
                 job: Any = None, client_options: dict[str, Any] | None = None
                 ) -> Callable[[list, list[str]], list]:
    """A batch scorer for `training.evaluate.run_eval(..., scorer="judge", extra_scorers={"judge": it})`.

    `provider`/`model` pick the provider as augmentation does (`providers.resolve`: the named one,
    else the first configured, else OPENAI_BASE_URL/OPENAI_API_KEY with `model`). `threshold`: the
    lowest 1-5 grade that counts as correct. `job`: a `curation.jobs.Job` for progress and cancel
    (optional). `client_options`: passed to `ProviderClient` (backoff settings).

    Checked now, before any model generates an answer: the provider resolves, has a model, its
    API-key variable is set, the workspace is writable (the cache lives there) and the template
    renders. Raises StudioError otherwise."""
    if isinstance(threshold, bool) or not isinstance(threshold, int) or not 1 <= threshold <= 5:
        raise StudioError(f"judge threshold {threshold!r}: give a grade from 1 to 5 (the lowest that counts as correct).")
    if getattr(ws, "read_only", False):
        raise StudioError("the judge scorer needs a writable workspace: its answers are cached there.")
    p = providers.resolve(ws.read_config(), provider, model)
    p.api_key()  # a missing key is a clear error now, not one failure per answer after generation
    tpl = load_template(ws.root)
    tpl.render(instruction="", reference="", answer="")  # a workspace template with a bad placeholder fails now
    return _Judge(ws, p, tpl, threshold, job, dict(client_options or {}))
