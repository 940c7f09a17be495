"""Augment jobs: plan the requests, estimate, send what the cache lacks, land the answers.

    spec = Spec(op="rewrite", ids=[1, 2, 3], n=3, max_cost=0.50)
    est = estimate(ws, spec)              # dry run: no request, no write, no key needed
    job = AugmentJob(kind="augment:rewrite", on_progress=print_fn)
    result = run(ws, spec, job)           # blocks; job.cancel() from another thread stops it
    result = resume(ws, result.job_id)    # the same requests; answered ones come from the cache

Threads: `run` runs an asyncio loop in the calling thread (the studio calls it from a worker
thread; never from a thread that already runs a loop). Every database write happens in that
thread, through one cursor of the workspace, in a small transaction per answer: the answer goes
into the cache together with the samples it yields, so a kill -9 loses no answered request and a
rerun applies nothing twice.

Budget: `max_cost` reserves each request's worst case before it is sent (see cost.Budget); the
job stops before the next request could take it past the limit.

After the requests: each new sample is judged against its own lineage on the field the operation
wrote (JUDGED_FIELD: a rewrite's or a reverse generation's instruction, a new answer): one that
repeats its parent's or a sibling's (same parent, same operation) after normalisation or at the
dedup threshold is marked duplicate_of it, in one undoable operation ('augment:lineage'). The rest
go through the whole-sample duplicate check against the workspace with their parent and siblings
left out of it (curation.dedup.check_incremental's ignore_pairs: a rewrite shares its parent's
answer by design, so whole-sample similarity said nothing about its novelty), and all through the
quality checks (curation.quality.run_quality); with `reject_below` those still in are judged and
those scoring below are rejected through curation.review. Result.landing counts what landed and
what was dropped, and why.

States of a job's row in `jobs`: running, done, cancelled (user or budget), failed, interrupted (its
process ended without finishing: kill -9, a crash; set when the workspace is next opened read-write
or the jobs are listed, see curation.workspace.interrupt_dead_jobs). Every state but done resumes.
"""
from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from .. import dedup, quality
from ..errors import NotFound, StudioError
from ..jobs import Job
from ..store import delete_samples
from ..workspace import dead_jobs, interrupt_dead_jobs, register_live_job, unregister_live_job
from . import cache, ops, providers, selection
from . import cost as cost_mod
from .client import ProviderClient, Reply
from .defaults import DEFAULT_N
from .landing import Lander, Outcome, WriterThread
from .templates import OPERATIONS, TemplateSet

if TYPE_CHECKING:
    from ..workspace import Workspace

CANCEL_GRACE_S = 5.0  # after cancel, wait this long for requests in flight (they are paid for)


@dataclass
class Spec:
    """What to augment and how. `ids` wins over the filter (status/lang/source/limit)."""

    op: str
    ids: list[int] | None = None
    status: str | None = None
    lang: str | None = None
    source: str | None = None
    limit: int | None = None
    include_generated: bool | None = None   # default: only judge looks at generated samples
    n: int | None = None                    # paraphrases / answers / instructions per sample
    provider: str | None = None             # a name in studio.yaml; None: the first, else OPENAI_* env
    model: str | None = None
    concurrency: int | None = None
    max_cost: float | None = None           # USD; the job stops before passing it
    reject_below: float | None = None       # judge generated samples, reject those scoring below
    temperature: float | None = None
    checks: bool = True                     # run dedup and quality checks on generated samples

    def resolved_n(self) -> int:
        n = DEFAULT_N[self.op] if self.n is None else int(self.n)
        if self.op == "judge":
            return 1
        if not 1 <= n <= 50:
            raise StudioError(f"--n {n}: choose between 1 and 50.")
        return n


@dataclass
class AugmentJob(Job):
    """A `curation.jobs.Job` (done/total/message, cancel) plus what an augment screen shows."""

    job_id: int | None = None
    provider: str = ""
    model: str = ""
    sent: int = 0                 # requests answered by the server in this run (ok or not)
    cached: int = 0               # requests answered from the cache
    failed: int = 0
    produced: int = 0             # new samples landed
    judged: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usd: float = 0.0              # spent in this run, from the servers' usage
    reserved_usd: float = 0.0     # held for requests in flight
    stop_reason: str | None = None

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def summary(self) -> str:
        return (f"{self.tokens:,} tok  ${self.usd:.4f}  cached {self.cached}  failed {self.failed}"
                f"  new {self.produced}" + (f"  judged {self.judged}" if self.judged else ""))


@dataclass
class Result:
    job_id: int
    op: str
    state: str                    # done, cancelled (by the user or the budget: see stop_reason)
    stop_reason: str | None
    provider: str
    model: str
    requests: int
    sent: int
    cached: int
    failed: int
    failures: dict[str, int]      # reason -> count
    new_sample_ids: list[int]
    judged: int
    rejected_ids: list[int]
    prompt_tokens: int
    completion_tokens: int
    usd: float
    estimate: dict[str, Any]
    checks: dict[str, str]        # lineage/dedup/quality: 'ran', 'missing' (module not there yet), 'skipped'
    # What became of the new samples (see `_landing`): produced, landed, dropped by reason (with ids),
    # rejected_by_judge, field, summary (the sentence the CLI prints). Empty for judge jobs.
    landing: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- planning ---------------------------------------------------------------------------------------
@dataclass
class _Plan:
    spec: Spec
    provider: providers.Provider
    ids: list[int]
    samples: dict[int, selection.SampleView]
    requests: list[ops.Request]
    skipped: int
    cached: dict[str, cache.CachedAnswer]
    applied: set[str]
    estimate: cost_mod.Estimate = field(default_factory=cost_mod.Estimate)


def _plan(ws: Workspace, con: Any, spec: Spec, ids: list[int] | None = None) -> _Plan:
    if spec.op not in OPERATIONS:
        raise StudioError(f"unknown augment operation {spec.op!r}; choose one of {', '.join(OPERATIONS)}.")
    provider = providers.resolve(ws.read_config(), spec.provider, spec.model, spec.concurrency)
    if ids is None:
        include = spec.include_generated if spec.include_generated is not None else spec.op == "judge"
        ids = selection.select_ids(con, ids=spec.ids, status=spec.status, lang=spec.lang, source=spec.source,
                                   limit=spec.limit, include_generated=include)
    views = selection.load(con, ids)
    reqs, skipped = ops.build_requests(spec.op, views, n=spec.resolved_n(), provider=provider,
                                       templates=TemplateSet(ws.root), temperature=spec.temperature)
    keys = [r.key for r in reqs]
    plan = _Plan(spec, provider, ids, {v.id: v for v in views}, reqs, skipped,
                 cache.lookup(con, keys), cache.applied_keys(con, keys))
    est = plan.estimate
    est.requests, est.skipped, est.priced = len(reqs), skipped, provider.priced
    for r in reqs:
        if r.key in plan.cached:
            est.cached += 1
            continue
        est.to_send += 1
        est.input_tokens += r.est_prompt_tokens
        est.output_tokens += r.expected_completion_tokens
        est.output_tokens_max += r.max_tokens
    if spec.reject_below is not None and spec.op != "judge":
        # the gate judges every new sample: the judge template (~250 tokens) plus the sample, 48 out
        per_req = spec.resolved_n() if spec.op == "rewrite" else 1
        new = [r for r in reqs if r.key not in plan.cached]
        est.gate_requests = per_req * len(new)
        est.input_tokens += sum(per_req * (250 + r.est_prompt_tokens // 2 + r.expected_completion_tokens // per_req) for r in new)
        est.output_tokens += 48 * est.gate_requests
        est.output_tokens_max += 256 * est.gate_requests
    est.usd = provider.cost(est.input_tokens, est.output_tokens)
    est.usd_max = provider.cost(est.input_tokens, est.output_tokens_max)
    return plan


def estimate(ws: Workspace, spec: Spec) -> cost_mod.Estimate:
    """The dry run: which requests the job needs, how many the cache already answers, and the
    expected tokens and dollars of the rest. Sends nothing, writes nothing, needs no key."""
    return _plan(ws, ws.cursor(), spec).estimate


# -- running ------------------------------------------------------------------------------------------
class _Runner:
    """Sends a plan's requests from an event loop; a writer thread lands the outcomes."""

    def __init__(self, ws: Workspace, con: Any, plan: _Plan, job: AugmentJob, job_id: int, budget: cost_mod.Budget,
                 client_options: dict[str, Any]):
        self.plan, self.job, self.job_id = plan, job, job_id
        self.p = plan.provider
        self.budget = budget
        self.client_options = client_options
        self.lander = Lander(ws, con, job=job, job_id=job_id, provider=self.p, op=plan.spec.op,
                             samples=plan.samples, applied=plan.applied)
        self.error: BaseException | None = None

    # what the lander produced, for the result and the post-processing
    @property
    def new_ids(self) -> list[int]:
        return self.lander.new_ids

    @property
    def judged_ids(self) -> list[int]:
        return self.lander.judged_ids

    @property
    def failures(self) -> Counter[str]:
        return self.lander.failures

    def apply_cached(self) -> list[ops.Request]:
        """Land answers already in the cache (in batches, in this thread); return the requests to send."""
        to_send, batch = [], []
        for req in self.plan.requests:
            ans = self.plan.cached.get(req.key)
            if ans is None:
                to_send.append(req)
                continue
            o = Outcome(req, from_cache=True, content=ans.content)
            if req.key not in self.plan.applied:
                try:
                    o.value = ops.parse(req, ans.content, self.plan.samples[req.sample_id])
                except ops.Unusable as exc:  # parsing is deterministic; only a changed parser gets here
                    o.failure = (exc.reason, exc.detail, 0)
            batch.append(o)
            if len(batch) >= 500:
                self.lander.write(batch)
                batch = []
        if batch:
            self.lander.write(batch)
        return to_send

    def outcome(self, req: ops.Request, reply: Reply, usd: float) -> Outcome:
        job = self.job
        billed = reply.reason not in ("timeout", "connection") and not (reply.reason or "").startswith("http_")
        pt = (reply.prompt_tokens if reply.usage_reported else req.est_prompt_tokens) if billed else 0
        ct = (reply.completion_tokens if reply.usage_reported else cost_mod.count_tokens(reply.content)) if billed else 0
        job.sent += 1 if billed else 0
        job.prompt_tokens += pt
        job.completion_tokens += ct
        job.usd += usd
        o = Outcome(req, content=reply.content, finish_reason=reply.finish_reason, prompt_tokens=pt,
                    completion_tokens=ct, usd=usd, latency_s=reply.latency_s, sent=True)
        if reply.ok:
            try:
                o.value = ops.parse(req, reply.content or "", self.plan.samples[req.sample_id])
            except ops.Unusable as exc:
                o.failure = (exc.reason, exc.detail, reply.attempts)
        else:
            o.failure = (reply.reason or "failed", reply.detail, reply.attempts)
        return o

    def worst_cost(self, req: ops.Request) -> float:
        return self.p.cost(int(req.est_prompt_tokens * cost_mod.Budget.PROMPT_MARGIN) + 1, req.max_tokens)

    async def send_all(self, reqs: list[ops.Request], writer: WriterThread) -> None:
        job = self.job
        client = ProviderClient(self.p, **self.client_options)
        slots = asyncio.Semaphore(max(1, int(self.p.concurrency)))
        tasks: set[asyncio.Task[None]] = set()

        def failed() -> bool:
            return bool(self.error or writer.error)

        async def one(req: ops.Request, reserved: float) -> None:
            try:
                reply = await client.complete(req.messages, req.params,
                                              tokens=req.est_prompt_tokens + req.expected_completion_tokens)
                if reply.usage_reported:
                    usd = self.p.cost(reply.prompt_tokens, reply.completion_tokens)
                elif reply.ok:
                    usd = self.p.cost(req.est_prompt_tokens, cost_mod.count_tokens(reply.content))
                else:
                    usd = 0.0
                self.budget.settle(reserved, usd)
                job.reserved_usd = self.budget.reserved
                writer.submit(self.outcome(req, reply, usd))
            except asyncio.CancelledError:
                self.budget.settle(reserved, 0.0)
                raise
            except BaseException as exc:  # a bug: stop the job, keep the traceback
                self.error = self.error or exc
            finally:
                slots.release()

        async def acquire_slot() -> bool:
            while True:
                if job.cancelled or failed():
                    return False
                try:
                    await asyncio.wait_for(slots.acquire(), timeout=0.1)
                    return True
                except asyncio.TimeoutError:
                    continue

        try:
            for req in reqs:
                if not await acquire_slot():
                    job.stop_reason = job.stop_reason or ("cancelled" if job.cancelled else "error")
                    break
                reserve = self.worst_cost(req)
                while not self.budget.try_reserve(reserve):
                    if not tasks:
                        job.stop_reason = "budget"
                        break
                    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                if job.stop_reason == "budget":
                    slots.release()
                    break
                job.reserved_usd = self.budget.reserved
                task = asyncio.create_task(one(req, reserve))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            deadline: float | None = None
            while tasks:
                await asyncio.wait(tasks, timeout=0.1)
                if job.cancelled and job.stop_reason is None:
                    job.stop_reason = "cancelled"
                if job.cancelled:
                    deadline = deadline or time.monotonic() + CANCEL_GRACE_S
                    if time.monotonic() > deadline:
                        for t in tasks:
                            t.cancel()
                        await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            await client.aclose()

    def execute(self) -> None:
        """Cached answers first, then the rest through the loop and the writer thread."""
        to_send = self.apply_cached()
        if to_send and not self.job.cancelled:
            writer = WriterThread(self.lander.write)
            try:
                _run_loop(self.send_all(to_send, writer))
            finally:
                writer.close()
            self.error = self.error or writer.error
        if self.error:
            raise self.error


def _start_job_row(con: Any, spec: Spec, plan: _Plan) -> int:
    """Insert the job's rows as `running`, owned by this process (registered live: see run)."""
    job_id = int(con.execute("SELECT nextval('job_id_seq')").fetchone()[0])
    register_live_job(job_id)
    try:
        con.execute("INSERT INTO jobs (id, kind, state, total, pid) VALUES (?, ?, 'running', ?, ?)",
                    [job_id, f"augment:{spec.op}", len(plan.requests), os.getpid()])
        name = None if plan.provider.name == providers.ENV_PROVIDER else plan.provider.name
        stored = {**asdict(spec), "ids": plan.ids, "provider": name, "model": plan.provider.model}
        con.execute("INSERT INTO augment_jobs (job_id, operation, spec) VALUES (?, ?, ?)",
                    [job_id, spec.op, json.dumps(stored, ensure_ascii=False)])
    except BaseException:
        unregister_live_job(job_id)
        raise
    return job_id


def run(ws: Workspace, spec: Spec, job: AugmentJob | None = None, *, resume_job_id: int | None = None,
        client_options: dict[str, Any] | None = None, budget: cost_mod.Budget | None = None) -> Result:
    """Run an augment job to the end, a cancel, or the budget; returns its Result. Answers already
    in the cache are applied without a request. See the module docstring for threads."""
    job = job or AugmentJob(kind=f"augment:{spec.op}")
    con = ws.cursor()
    ids = None
    if resume_job_id is not None:
        ids = _stored_spec(con, resume_job_id)["ids"]
    plan = _plan(ws, con, spec, ids)
    p = plan.provider
    if spec.max_cost is not None and not p.priced:
        raise StudioError(f"--max-cost needs prices: provider {p.name!r} has no input_usd_per_mtok/output_usd_per_mtok. "
                          f"Set them with `studio providers add ... --input-price X --output-price Y --replace`.")
    if any(r.key not in plan.cached for r in plan.requests):
        p.api_key()  # a missing key is a clear error now, not a failure per request later
    budget = budget or cost_mod.Budget(spec.max_cost)
    if resume_job_id is None:
        job_id = _start_job_row(con, spec, plan)
    else:
        job_id = int(resume_job_id)
        register_live_job(job_id)
    try:
        if resume_job_id is not None:
            con.execute("UPDATE jobs SET state = 'running', pid = ?, total = ?, finished_at = NULL WHERE id = ?",
                        [os.getpid(), len(plan.requests), job_id])
        return _run_job(ws, con, spec, plan, job, job_id, budget, client_options)
    finally:
        unregister_live_job(job_id)


def _run_job(ws: Workspace, con: Any, spec: Spec, plan: _Plan, job: AugmentJob, job_id: int,
             budget: cost_mod.Budget, client_options: dict[str, Any] | None) -> Result:
    """The rest of `run`, while the job is registered as live in this process (so opening the
    workspace again here does not take it for one whose process died)."""
    p = plan.provider
    job.job_id, job.provider, job.model = job_id, p.name, str(p.model)
    job.set_total(len(plan.requests))
    runner = _Runner(ws, con, plan, job, job_id, budget, client_options or {})
    state = "failed"
    try:
        runner.execute()
        if job.cancelled and not job.stop_reason:
            job.stop_reason = "cancelled"
        checks = _post_process(ws, con, runner, spec)
        state = "done" if job.stop_reason is None else "cancelled"
    finally:
        if state == "failed":
            con.execute("UPDATE jobs SET state = 'failed', finished_at = current_timestamp, message = ? WHERE id = ?",
                        [job.summary(), job_id])
    landing = checks.pop("_landing", {})
    result = Result(
        job_id=job_id, op=spec.op, state=state, stop_reason=job.stop_reason, provider=p.name, model=str(p.model),
        requests=job.total or len(plan.requests), sent=job.sent, cached=job.cached, failed=job.failed,
        failures=dict(runner.failures), new_sample_ids=sorted(set(runner.new_ids) | set(checks.pop("_landed_before", []))),
        judged=job.judged, rejected_ids=checks.pop("_rejected", []), prompt_tokens=job.prompt_tokens,
        completion_tokens=job.completion_tokens, usd=job.usd, estimate=plan.estimate.as_dict(), checks=checks,
        landing=landing)
    stored = {k: v for k, v in result.as_dict().items() if k not in ("new_sample_ids", "landing")}
    stored |= {"new_samples": len(result.new_sample_ids),
               "landing": {k: v for k, v in landing.items() if k != "dropped_ids"}}
    message = job.summary() + (f" | {landing['summary']}" if landing.get("summary") else "")
    con.execute("UPDATE jobs SET state = ?, finished_at = current_timestamp, done = ?, total = ?, message = ?, result = ? WHERE id = ?",
                [state, job.done, job.total, message, json.dumps(stored), job_id])
    return result


def _run_loop(coro: Any) -> None:
    """Run the coroutine on a fresh event loop in this thread (the studio calls from a worker)."""
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(coro)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def _post_process(ws: Workspace, con: Any, runner: _Runner, spec: Spec) -> dict[str, Any]:
    """Record the operation, run dedup/quality on the job's unchecked new samples (including
    those a killed earlier run landed), and the judge gate."""
    job_id = runner.job_id
    checks: dict[str, Any] = {}
    if spec.op == "judge":
        if runner.judged_ids:
            with ws.transaction(con):
                ws.record_operation("augment:judge", reason=f"augment job {job_id}", con=con,
                                    sample_count=len(runner.judged_ids),
                                    details={"job_id": job_id, "judged": runner.judged_ids,
                                             "previous": runner.lander.previous_scores})
        return checks
    unchecked = [int(r[0]) for r in con.execute(
        "SELECT sample_id FROM augment_outputs WHERE job_id = ? AND NOT checked ORDER BY sample_id", [job_id]).fetchall()]
    checks["_landed_before"] = [i for i in unchecked if i not in set(runner.new_ids)]
    if unchecked:
        with ws.transaction(con):
            op_id = ws.record_operation(f"augment:{spec.op}", reason=f"augment job {job_id}", con=con,
                                        sample_count=len(unchecked),
                                        details={"job_id": job_id})
            con.execute("""INSERT INTO op_samples (op_id, sample_id, old_status, new_status, old_version, new_version)
                           SELECT ?, id, NULL, status, NULL, version FROM samples WHERE id IN (SELECT unnest(?))""",
                        [op_id, unchecked])
    lineage: _Lineage | None = None
    if spec.checks and unchecked:
        # Novelty against the sample's own lineage first, on the field the operation changed; then
        # the whole-sample check against the rest of the workspace, for those still in, with their
        # lineage left out of it (a rewrite shares its parent's answer by design).
        try:
            lineage = _lineage_check(ws, con, spec.op, job_id, unchecked)
            checks["lineage"] = "ran"
        except Exception as exc:  # a bug here must not lose the landed samples: dedup as before
            import logging

            logging.getLogger(__name__).exception("lineage check failed on %d new samples", len(unchecked))
            checks["lineage"] = f"failed: {type(exc).__name__}: {exc}"
        rest = unchecked if lineage is None else [i for i in unchecked if i not in lineage.marked]
        if lineage is None:
            checks["dedup"] = _run_check(dedup.check_incremental, ws, unchecked)
        elif rest:
            checks["dedup"] = _run_check(dedup.check_incremental, ws, rest,
                                         ignore_pairs={i: lineage.ignore.get(i, ()) for i in rest})
        else:
            checks["dedup"] = "ran"
        checks["quality"] = _run_check(quality.run_quality, ws, unchecked)
    else:
        checks["lineage"] = checks["dedup"] = checks["quality"] = "skipped"
    con.execute("UPDATE augment_outputs SET checked = TRUE WHERE job_id = ? AND sample_id IN (SELECT unnest(?))", [job_id, unchecked])
    if spec.reject_below is not None and runner.job.stop_reason is None:
        # only what is still in: judging a sample already left out of every split costs for nothing
        kept = [int(r[0]) for r in con.execute(
            "SELECT id FROM samples WHERE id IN (SELECT unnest(?)) AND duplicate_of IS NULL ORDER BY id", [unchecked]).fetchall()]
        checks["_rejected"] = _judge_gate(ws, con, runner, spec, kept)
    checks["_landing"] = _landing(con, spec.op, unchecked, lineage, checks.get("_rejected", []),
                                  "failed" if str(checks["lineage"]).startswith("failed") else checks["lineage"])
    return checks


# -- novelty against the lineage ----------------------------------------------------------------------
# The field an operation writes, on which its output is judged against its parent and siblings: a
# rewrite keeps the parent's answer and a reverse generation keeps its answer (or text), so their
# whole-sample similarity to the parent is high by construction; answers keep the instruction.
JUDGED_FIELD = {"rewrite": "instruction", "reverse": "instruction", "answers": "answer"}
DROP_REASONS = ("repeats_parent", "repeats_sibling", "duplicates_other")
_NOUNS = {"rewrite": ("rewrite", "rewrites"), "answers": ("new answer", "new answers"),
          "reverse": ("generated instruction", "generated instructions")}
_CHUNK_PARENTS = 2000


@dataclass
class _Lineage:
    judged: str                                   # the field compared (JUDGED_FIELD)
    dropped: dict[int, tuple[str, int]] = field(default_factory=dict)  # new id -> (reason, the sample it repeats)
    earlier: dict[int, str] = field(default_factory=dict)   # already marked (an interrupted run): id -> reason
    ignore: dict[int, set[int]] = field(default_factory=dict)  # new id -> parent, parent's duplicates, siblings
    op_id: int | None = None

    @property
    def marked(self) -> set[int]:
        return set(self.dropped) | set(self.earlier)


def _fingerprints(texts: dict[int, str], shingle: int) -> dict[int, tuple[int, Any]]:
    """id -> (exact key of the normalised text, 0 when empty; sorted distinct shingle hashes), with
    the normalisation and shingling dedup uses (curation.normalize, curation.shingles)."""
    import numpy as np

    from .. import normalize as norm
    from .. import shingles as sh

    out: dict[int, tuple[int, Any]] = {}
    ids = list(texts)
    for s in range(0, len(ids), 2000):
        chunk = ids[s:s + 2000]
        normed = [norm.normalize(texts[i]) for i in chunk]
        hashes, offsets = sh.shingle_hashes(normed, shingle)
        for j, i in enumerate(chunk):
            out[i] = (norm.exact_key(normed[j]) if normed[j] else 0, np.unique(hashes[offsets[j]:offsets[j + 1]]))
    return out


def _lineage_check(ws: Workspace, con: Any, op: str, job_id: int, new_ids: list[int]) -> _Lineage:
    """Judge each new sample's field (JUDGED_FIELD) against its parent and its siblings (same
    parent, same operation: this job's and earlier jobs'). It repeats one when the normalised texts
    are equal or their shingle Jaccard reaches the dedup threshold (the last dedup run's threshold
    and shingle size). The parent's dedup cluster counts as the parent: dedup already calls those
    samples the same one. Siblings are taken in id order; one that repeats an earlier sibling still
    in (not itself marked) is dropped. Dropped samples get duplicate_of = what they repeat, in one
    undoable operation (kind 'augment:lineage'; undo clears the marks). Returns what was dropped
    and, for the whole-sample check, each new sample's lineage to leave out of it."""
    from .. import normalize as norm
    from .. import shingles as sh
    from ..dedup import DedupParams, last_params

    params = last_params(con) or DedupParams()
    fld = JUDGED_FIELD[op]
    lin = _Lineage(fld)
    text_sql = norm.field_text_sql(fld)
    kids: dict[int, list[tuple[int, int | None, str]]] = {}
    for sid, parent, dup, text in con.execute(
            f"SELECT s.id, s.parent_id, s.duplicate_of, {text_sql} FROM samples s "
            "WHERE s.id IN (SELECT unnest(?)) AND s.parent_id IS NOT NULL ORDER BY s.id", [new_ids]).fetchall():
        kids.setdefault(int(parent), []).append((int(sid), dup, text or ""))
    new_set = set(new_ids)
    parents = sorted(kids)
    for c in range(0, len(parents), _CHUNK_PARENTS):
        chunk = parents[c:c + _CHUNK_PARENTS]
        family: dict[int, list[int]] = {p: [p] for p in chunk}
        for p, m in con.execute(
                "SELECT p.id, m.id FROM samples p JOIN samples m ON m.cluster_id = p.cluster_id AND m.id <> p.id "
                "WHERE p.id IN (SELECT unnest(?)) ORDER BY m.id", [chunk]).fetchall():
            family[int(p)].append(int(m))
        texts: dict[int, str] = {}
        fam_ids = [i for f in family.values() for i in f]
        for sid, text in con.execute(f"SELECT s.id, {text_sql} FROM samples s WHERE s.id IN (SELECT unnest(?))",
                                     [fam_ids]).fetchall():
            texts[int(sid)] = text or ""
        earlier: dict[int, list[tuple[int, int | None]]] = {}
        for sid, parent, dup, text in con.execute(
                f"SELECT s.id, s.parent_id, s.duplicate_of, {text_sql} FROM samples s "
                "WHERE s.parent_id IN (SELECT unnest(?)) AND s.operation = ? ORDER BY s.id",
                [chunk, f"augment:{op}"]).fetchall():
            if int(sid) not in new_set:
                earlier.setdefault(int(parent), []).append((int(sid), dup))
                texts[int(sid)] = text or ""
        for p in chunk:
            for sid, _dup, text in kids[p]:
                texts[sid] = text
        fps = _fingerprints(texts, params.shingle)

        def same(a: int, b: int, fps: dict[int, tuple[int, Any]] = fps) -> bool:
            (ka, sa), (kb, sb) = fps[a], fps[b]
            return (ka != 0 and ka == kb) or sh.jaccard(sa, sb) >= params.threshold - 1e-9

        for p in chunk:
            fam = [f for f in family[p] if f in fps]
            sibs = [s for s, _ in earlier.get(p, [])] + [k for k, _, _ in kids[p]]
            kept = [s for s, dup in earlier.get(p, []) if dup is None]
            lineage = set(fam) | set(sibs)
            for sid, dup, _text in kids[p]:
                lin.ignore[sid] = lineage - {sid}
                if dup is not None:  # marked by an earlier run of this job that was interrupted
                    lin.earlier[sid] = ("repeats_parent" if dup in fam else "repeats_sibling" if dup in sibs
                                        else "duplicates_other")
                    continue
                hit = next((f for f in fam if same(sid, f)), None)
                if hit is not None:
                    lin.dropped[sid] = ("repeats_parent", hit)
                    continue
                hit = next((s for s in kept if same(sid, s)), None)
                if hit is not None:
                    lin.dropped[sid] = ("repeats_sibling", hit)
                    continue
                kept.append(sid)
    if lin.dropped:
        ids = sorted(lin.dropped)
        n_parent = sum(1 for r, _ in lin.dropped.values() if r == "repeats_parent")
        with ws.transaction(con):
            lin.op_id = ws.record_operation(
                "augment:lineage", con=con, sample_count=len(ids),
                reason=f"augment job {job_id}: new samples whose {fld} repeats their parent's or a sibling's",
                details={"job_id": job_id, "operation": op, "field": fld, "threshold": params.threshold,
                         "shingle": params.shingle, "repeats_parent": n_parent, "repeats_sibling": len(ids) - n_parent,
                         "undo_note": "the marked samples had no duplicate_of before (only unmarked ones are marked)"})
            con.execute("""INSERT INTO op_samples (op_id, sample_id, old_status, new_status, old_version, new_version)
                           SELECT ?, id, status, status, version, version FROM samples WHERE id IN (SELECT unnest(?))""",
                        [lin.op_id, ids])
            con.execute("""UPDATE samples SET duplicate_of = v.dup FROM (SELECT unnest(?) AS id, unnest(?) AS dup) v
                           WHERE samples.id = v.id""", [ids, [lin.dropped[i][1] for i in ids]])
    return lin


def _landing(con: Any, op: str, new_ids: list[int], lineage: _Lineage | None, rejected: list[int],
             lineage_state: str) -> dict[str, Any]:
    """What became of a job's new samples: how many landed as pending, how many were dropped and
    why (repeats the parent's field, repeats a sibling's, duplicates another sample of the
    workspace as a whole), how many the judge rejected, and the sentence that says so."""
    if op not in JUDGED_FIELD:
        return {}
    ids: dict[str, list[int]] = {r: [] for r in DROP_REASONS}
    marked = {int(r[0]) for r in con.execute(
        "SELECT id FROM samples WHERE id IN (SELECT unnest(?)) AND duplicate_of IS NOT NULL", [new_ids]).fetchall()} \
        if new_ids else set()
    for sid in sorted(marked):
        if lineage is not None and sid in lineage.dropped:
            ids[lineage.dropped[sid][0]].append(sid)
        elif lineage is not None and sid in lineage.earlier:
            ids[lineage.earlier[sid]].append(sid)
        else:
            ids["duplicates_other"].append(sid)
    rejected_in = sorted(set(rejected) & set(new_ids) - marked)
    dropped = {r: len(v) for r, v in ids.items()}
    land = {"produced": len(new_ids), "landed": len(new_ids) - len(marked) - len(rejected_in), "field": JUDGED_FIELD[op],
            "dropped": dropped, "dropped_ids": ids, "rejected_by_judge": len(rejected_in), "lineage": lineage_state}
    return _with_summary(op, land)


def _with_summary(op: str, land: dict[str, Any]) -> dict[str, Any]:
    """`121 rewrites: 109 landed as pending, 9 repeat their parent's instruction, 3 repeat a
    sibling, 0 duplicate other samples` (and `, 2 rejected by the judge` when the gate ran)."""
    n, d = land["produced"], land["dropped"]
    one, many = _NOUNS[op]
    if not n:
        land["summary"] = f"0 {many}"
        return land
    parts = [f"{land['landed']:,} landed as pending"]
    if land["lineage"] == "ran":
        p, s, o = d["repeats_parent"], d["repeats_sibling"], d["duplicates_other"]
        parts += [f"{p:,} " + ("repeats its" if p == 1 else "repeat their") + f" parent's {land['field']}",
                  f"{s:,} " + ("repeats" if s == 1 else "repeat") + " a sibling",
                  f"{o:,} " + ("duplicates" if o == 1 else "duplicate") + " other samples"]
    elif land["lineage"] == "skipped":
        parts[0] += " (duplicate checks skipped)"
    else:  # the lineage check failed: the whole-sample check ran as it did before it existed
        o = sum(d.values())
        parts.append(f"{o:,} marked duplicate by the whole-sample check (the check against the parent failed)")
    if land["rejected_by_judge"]:
        parts.append(f"{land['rejected_by_judge']:,} rejected by the judge")
    land["summary"] = f"{n:,} {one if n == 1 else many}: " + ", ".join(parts)
    return land


def _run_check(check: Callable[..., Any], ws: Workspace, ids: list[int], **kw: Any) -> str:
    """Run dedup's or quality's check on the new samples: 'ran', or 'failed: why'. A failure there
    must not lose this job's landed samples; the CLI tells the user to run that check again."""
    try:
        check(ws, sample_ids=ids, **kw)
    except StudioError as exc:
        return f"failed: {exc}"
    except Exception as exc:  # another module's bug
        import logging

        logging.getLogger(__name__).exception("%s.%s failed on %d new samples", check.__module__, check.__name__, len(ids))
        return f"failed: {type(exc).__name__}: {exc}"
    return "ran"


def _judge_gate(ws: Workspace, con: Any, runner: _Runner, spec: Spec, new_ids: list[int]) -> list[int]:
    """Judge the generated samples (same provider, same budget, same job counters) and reject
    those scoring below `reject_below`."""
    if not new_ids or spec.reject_below is None:
        return []
    gate_spec = Spec(op="judge", ids=new_ids, provider=spec.provider, model=spec.model, concurrency=spec.concurrency,
                     max_cost=spec.max_cost, checks=False)
    job = runner.job
    total_before = job.total
    gate_plan = _plan(ws, con, gate_spec, new_ids)
    job.total = (total_before or 0) + len(gate_plan.requests)
    gate = _Runner(ws, con, gate_plan, job, runner.job_id, runner.budget, runner.client_options)
    gate.execute()
    runner.failures.update({f"judge:{k}": v for k, v in gate.failures.items()})
    low = [int(r[0]) for r in con.execute(
        "SELECT id FROM samples WHERE id IN (SELECT unnest(?)) AND judge_score < ? AND status <> 'rejected' ORDER BY id",
        [new_ids, float(spec.reject_below)]).fetchall()]
    if low:
        from ..review import set_status

        set_status(ws, low, "rejected", reason=f"augment job {runner.job_id}: judge score below {spec.reject_below:g}")
    return low


def undo_augment(ws: Workspace, op: Any) -> None:
    """Undo of 'augment:rewrite', 'augment:answers', 'augment:reverse' and 'augment:judge'
    (curation.undo.undo_handlers): delete the samples the operation created, or put back the
    judge scores it replaced; forget the outputs so a rerun lands them again."""
    con = ws.con
    job_id = op.details.get("job_id")
    if op.kind == "augment:judge":
        judged = op.details.get("judged") or []
        con.execute("UPDATE samples SET judge_score = NULL, judge_reason = NULL WHERE id IN (SELECT unnest(?))", [judged])
        for sid, score, reason in op.details.get("previous") or []:
            con.execute("UPDATE samples SET judge_score = ?, judge_reason = ? WHERE id = ?", [score, reason, sid])
        con.execute("DELETE FROM augment_outputs WHERE job_id = ? AND sample_id IN (SELECT unnest(?))", [job_id, judged])
        return
    ids = [r[0] for r in con.execute("SELECT sample_id FROM op_samples WHERE op_id = ? AND old_status IS NULL", [op.id]).fetchall()]
    delete_samples(con, ids)  # their augment_outputs rows too


def undo_lineage(ws: Workspace, op: Any) -> None:
    """Undo of 'augment:lineage': clear duplicate_of on the samples it marked. It marks only
    samples that had none (an interrupted run's marks are counted, not marked again), so NULL is
    what they had before."""
    ws.con.execute("UPDATE samples SET duplicate_of = NULL WHERE id IN (SELECT sample_id FROM op_samples WHERE op_id = ?)",
                   [op.id])


# -- resume -----------------------------------------------------------------------------------------
def _stored_spec(con: Any, job_id: int) -> dict[str, Any]:
    row = con.execute("SELECT spec FROM augment_jobs WHERE job_id = ?", [int(job_id)]).fetchone()
    if not row:
        raise NotFound(f"no augment job {job_id}; `studio augment jobs` lists them.")
    return json.loads(row[0])


def last_unfinished(ws: Workspace) -> int | None:
    row = ws.cursor().execute(
        """SELECT j.id FROM jobs j JOIN augment_jobs a ON a.job_id = j.id
           WHERE j.state <> 'done' ORDER BY j.id DESC LIMIT 1""").fetchone()
    return None if row is None else int(row[0])


def resume(ws: Workspace, job_id: int | None = None, job: AugmentJob | None = None, *, max_cost: float | None = None,
           concurrency: int | None = None, client_options: dict[str, Any] | None = None) -> Result:
    """Run a stopped, cancelled or killed job again: the same samples, operation, parameters and
    provider. Answered requests come from the cache; only the rest are sent."""
    if job_id is None:
        job_id = last_unfinished(ws)
        if job_id is None:
            raise StudioError("no unfinished augment job to resume; `studio augment jobs` lists them.")
    stored = _stored_spec(ws.cursor(), job_id)
    fields_ = {k: v for k, v in stored.items() if k in Spec.__dataclass_fields__}
    spec = Spec(**fields_)
    if max_cost is not None:
        spec.max_cost = max_cost
    if concurrency is not None:
        spec.concurrency = concurrency
    job = job or AugmentJob(kind=f"augment:{spec.op}")
    return run(ws, spec, job, resume_job_id=job_id, client_options=client_options)


def list_jobs(ws: Workspace, limit: int = 20) -> list[dict[str, Any]]:
    """The latest augment jobs. A job still marked `running` whose process is gone (killed) shows
    as `interrupted` (and is stored so when the workspace is writable); `resume` continues it."""
    cur = ws.cursor()
    if getattr(ws, "read_only", False):
        gone = {d[0] for d in dead_jobs(cur)}
    else:
        interrupt_dead_jobs(cur)
        gone = set()
    rows = cur.execute(
        """SELECT j.id, j.kind, j.state, j.done, j.total, j.message, j.started_at, j.finished_at,
                  coalesce(sum(u.cost_usd), 0), coalesce(sum(u.prompt_tokens + u.completion_tokens), 0), j.result
           FROM jobs j JOIN augment_jobs a ON a.job_id = j.id LEFT JOIN llm_usage u ON u.job_id = j.id
           GROUP BY ALL ORDER BY j.id DESC LIMIT ?""", [int(limit)]).fetchall()
    keys = ["id", "kind", "state", "done", "total", "message", "started_at", "finished_at", "usd", "tokens"]
    jobs = [dict(zip(keys, r)) for r in rows]
    for j, r in zip(jobs, rows):
        if j["id"] in gone:
            j["state"] = "interrupted"
        # what became of the new samples (landed, dropped by reason): see Result.landing
        try:
            j["landing"] = (json.loads(r[-1]) if r[-1] else {}).get("landing") or None
        except (ValueError, AttributeError):
            j["landing"] = None
    return jobs


def usage_by_provider(ws: Workspace) -> list[dict[str, Any]]:
    rows = ws.cursor().execute(
        """SELECT provider, model, sum(requests), sum(cached), sum(failed), sum(prompt_tokens), sum(completion_tokens), sum(cost_usd)
           FROM llm_usage GROUP BY provider, model ORDER BY provider, model""").fetchall()
    keys = ["provider", "model", "requests", "cached", "failed", "prompt_tokens", "completion_tokens", "usd"]
    return [dict(zip(keys, r)) for r in rows]
