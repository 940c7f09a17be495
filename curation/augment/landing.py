"""Landing answers in the workspace: cache rows, new samples, judge scores, failures, usage.

Answers are written in batches, one transaction each, by ONE writer thread through one cursor
(DuckDB connections must not be shared between threads at once). The event loop hands each
outcome to the writer as it arrives and goes on; the writer takes everything queued, writes it
with a fixed number of set-based statements (lists through `unnest`, never executemany) and
commits. So commits group themselves: one answer per commit when they trickle in, dozens when
they pour in, and no answer waits for more than the commit before it (milliseconds) — a kill -9
loses only answers that arrived in that window, and a resume re-asks only those.

Per-answer transactions in the loop thread cost ~9 ms of CPU each on this 2-core machine and
capped a job at ~45 req/s; batched in this thread they stay off the loop (benches/augment_bench.py).
"""
from __future__ import annotations

import json
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Generic, TypeVar

from .. import samples as samples_mod
from ..errors import Cancelled
from ..store import insert_samples
from . import ops
from .selection import SampleView

if TYPE_CHECKING:
    from ..workspace import Workspace

MAX_BATCH = 512


@dataclass
class Outcome:
    """One request's end: a usable value, or a failure (reason, detail, attempts)."""

    req: ops.Request
    from_cache: bool = False
    value: Any = None
    failure: tuple[str, str, int] | None = None
    content: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usd: float = 0.0
    latency_s: float = 0.0
    sent: bool = False          # a server answered it in this run (counted in llm_usage.requests)


class Lander:
    """Writes batches of outcomes; tracks what the job produced. Used by one thread at a time."""

    def __init__(self, ws: Workspace, con: Any, *, job: Any, job_id: int, provider: Any, op: str,
                 samples: dict[int, SampleView], applied: set[str]):
        self.ws, self.con, self.job, self.job_id, self.p, self.op = ws, con, job, job_id, provider, op
        self.samples = samples
        self.applied = applied
        self.new_ids: list[int] = []
        self.judged_ids: list[int] = []
        self.previous_scores: list[list[Any]] = []
        self.failures: Counter[str] = Counter()
        self._last_db_progress = 0.0

    def write(self, batch: list[Outcome]) -> None:
        con = self.con
        ok = [o for o in batch if o.failure is None]
        fresh = [o for o in ok if not o.from_cache]
        failed = [o for o in batch if o.failure is not None]
        failures = [o.failure for o in failed if o.failure is not None]  # (the same rows, typed)
        to_apply: list[Outcome] = []
        seen: set[str] = set()
        for o in ok:
            if o.req.key not in self.applied and o.req.key not in seen:
                seen.add(o.req.key)
                to_apply.append(o)
        with self.ws.transaction(con):
            if fresh:
                con.execute(
                    """INSERT INTO llm_cache (key, provider, base_url, model, operation, template_id, template_version,
                           request, content, finish_reason, prompt_tokens, completion_tokens, cost_usd, latency_s, job_id)
                       SELECT unnest(?), ?, ?, ?, ?, unnest(?), unnest(?), unnest(?), unnest(?), unnest(?), unnest(?),
                              unnest(?), unnest(?), unnest(?), ?
                       ON CONFLICT (key) DO NOTHING""",
                    [[o.req.key for o in fresh], self.p.name, self.p.base_url, str(self.p.model), self.op,
                     [o.req.template["id"] for o in fresh], [o.req.template["version"] for o in fresh],
                     [json.dumps({"messages": o.req.messages, "params": o.req.params}, ensure_ascii=False) for o in fresh],
                     [o.content or "" for o in fresh], [o.finish_reason for o in fresh],
                     [o.prompt_tokens for o in fresh], [o.completion_tokens for o in fresh],
                     [o.usd for o in fresh], [o.latency_s for o in fresh], self.job_id])
            if failed:
                con.execute(
                    """INSERT INTO llm_failures (job_id, key, sample_id, reason, detail, attempts)
                       SELECT ?, unnest(?), unnest(?), unnest(?), unnest(?), unnest(?)""",
                    [self.job_id, [o.req.key for o in failed], [o.req.sample_id for o in failed],
                     [f[0] for f in failures], [f[1][:2000] for f in failures], [f[2] for f in failures]])
            new_ids, judged = self._land(to_apply)
            sent = [o for o in batch if o.sent]
            con.execute(
                """INSERT INTO llm_usage (job_id, provider, model, requests, cached, failed, prompt_tokens, completion_tokens, cost_usd)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (job_id, provider, model) DO UPDATE SET
                     requests = llm_usage.requests + excluded.requests, cached = llm_usage.cached + excluded.cached,
                     failed = llm_usage.failed + excluded.failed,
                     prompt_tokens = llm_usage.prompt_tokens + excluded.prompt_tokens,
                     completion_tokens = llm_usage.completion_tokens + excluded.completion_tokens,
                     cost_usd = llm_usage.cost_usd + excluded.cost_usd""",
                [self.job_id, self.p.name, str(self.p.model), len(sent), sum(o.from_cache for o in batch), len(failed),
                 sum(o.prompt_tokens for o in sent), sum(o.completion_tokens for o in sent), sum(o.usd for o in sent)])
        # committed: now it counts
        self.applied.update(o.req.key for o in to_apply)
        self.new_ids.extend(new_ids)
        self.judged_ids.extend(judged)
        job = self.job
        job.produced += len(new_ids)
        job.judged += len(judged)
        job.cached += sum(o.from_cache for o in batch)
        job.failed += len(failed)
        for f in failures:
            self.failures[f[0]] += 1
        self._progress(len(batch))

    def _land(self, outs: list[Outcome]) -> tuple[list[int], list[int]]:
        if not outs:
            return [], []
        con = self.con
        if self.op == "judge":
            ids = [o.req.sample_id for o in outs]
            for sid, score, reason in con.execute(
                    "SELECT id, judge_score, judge_reason FROM samples WHERE id IN (SELECT unnest(?)) AND judge_score IS NOT NULL",
                    [ids]).fetchall():
                self.previous_scores.append([sid, score, reason])
            con.execute(
                """UPDATE samples SET judge_score = v.score, judge_reason = v.reason
                   FROM (SELECT unnest(?) AS id, unnest(?) AS score, unnest(?) AS reason) v WHERE samples.id = v.id""",
                [ids, [float(o.value[0]) for o in outs], [o.value[1] for o in outs]])
            con.execute("""INSERT INTO augment_outputs (request_key, sample_id, parent_id, job_id, checked)
                           SELECT unnest(?), unnest(?), unnest(?), ?, TRUE""",
                        [[o.req.key for o in outs], ids, ids, self.job_id])
            return [], ids
        made: list[samples_mod.Sample] = []
        owners: list[Outcome] = []
        for o in outs:
            for s in self._samples_for(o):
                made.append(s)
                owners.append(o)
        ids = insert_samples(con, made)
        con.execute("""INSERT INTO augment_outputs (request_key, sample_id, parent_id, job_id)
                       SELECT unnest(?), unnest(?), unnest(?), ?""",
                    [[o.req.key for o in owners], ids, [o.req.sample_id for o in owners], self.job_id])
        return ids, []

    def _samples_for(self, o: Outcome) -> list[samples_mod.Sample]:
        req, value = o.req, o.value
        parent = self.samples[req.sample_id]
        lineage = {"job_id": self.job_id, "provider": self.p.name, "model": self.p.model,
                   "template": req.template, "request_key": req.key, "variant": req.variant}
        msgs = [dict(m) for m in parent.messages]
        if req.op == "rewrite":
            first_user = next(j for j, m in enumerate(msgs) if m["role"] == "user")
            out = []
            for i, para in enumerate(value):
                new_msgs = [dict(m) for m in msgs]
                new_msgs[first_user]["content"] = para
                out.append(self._sample(parent, parent.system, new_msgs, {**lineage, "index": i}))
            return out
        if req.op == "answers":
            return [self._sample(parent, parent.system, msgs[:-1] + [{"role": "assistant", "content": value}], lineage)]
        if req.op == "reverse":
            body = (parent.answer if parent.kind == "chat" else parent.text) or ""
            return [self._sample(parent, None, [{"role": "user", "content": value}, {"role": "assistant", "content": body}], lineage)]
        raise ValueError(req.op)

    def _sample(self, parent: SampleView, system: str | None, msgs: list[dict[str, str]], lineage: dict[str, Any]) -> samples_mod.Sample:
        return samples_mod.Sample(
            kind="chat", system=system, messages=tuple(samples_mod.Message.from_dict(m) for m in msgs),
            lang=parent.lang or None, tags=parent.tags, parent_id=parent.id, operation=f"augment:{self.op}",
            lineage=lineage, tools=parent.tools)

    def _progress(self, n: int) -> None:
        job = self.job
        try:
            job.advance(n, job.summary())
        except Cancelled:
            pass  # the dispatcher sees job.cancelled and stops sending
        now = time.monotonic()
        if now - self._last_db_progress >= 1.0 or job.done == job.total:
            self._last_db_progress = now
            self.con.execute("UPDATE jobs SET done = ?, message = ? WHERE id = ?", [job.done, job.summary(), self.job_id])


Item = TypeVar("Item")  # what a writer batches: an augment Outcome, a judge's answer


class WriterThread(Generic[Item]):
    """Runs `write(batch)` in one thread, batching whatever is queued. `error` holds the first
    exception (the job then stops sending); `close()` drains the queue and joins."""

    _STOP = object()

    def __init__(self, write: Callable[[list[Item]], None]):
        self._write = write
        self._q: queue.Queue[Any] = queue.Queue()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="augment-writer", daemon=True)
        self._thread.start()

    def submit(self, item: Item) -> None:
        self._q.put(item)

    def _loop(self) -> None:
        stop = False
        while not stop:
            item = self._q.get()
            batch: list[Item] = []
            if item is self._STOP:
                stop = True
            else:
                batch.append(item)
            while len(batch) < MAX_BATCH:
                try:
                    item = self._q.get_nowait()
                except queue.Empty:
                    break
                if item is self._STOP:
                    stop = True
                    continue
                batch.append(item)
            if batch and self.error is None:
                try:
                    self._write(batch)
                except BaseException as exc:  # recorded; the dispatcher stops and run() re-raises
                    self.error = exc

    def close(self) -> None:
        self._q.put(self._STOP)
        self._thread.join()
