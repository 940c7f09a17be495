"""Running dedup: a full run over every sample (`find_duplicates`) or an incremental check of new
samples against the stored signatures (`check_incremental`), each one undoable operation.

A full run replaces every earlier cluster (whatever fields they used) but keeps reviewer keeper
choices. A run that would change nothing (the same clusters with the same parameters, an
incremental check that finds no new duplicate) records no operation: its op_id is None. Only the
main process touches DuckDB; all writes happen in one transaction at the end, so a cancelled or
interrupted run leaves the workspace as it was.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from typing import Any, Iterable, Mapping

import numpy as np
import pyarrow as pa

from ..arrow_buffers import table_of
from ..distinct import distinct
from ..jobs import Job, null_job
from ..workers import Workers
from .clusters import UNDO_HANDLER, Plan, save_for_undo, write_plan
from .params import DedupParams, last_params
from .plan import plan_full, plan_incremental
from .report import DedupReport
from .signatures import Sigs, compute_missing, merge, store_signatures, stored_signatures


def _details(params: DedupParams, report: DedupReport, incremental: bool) -> dict[str, Any]:
    return {
        "threshold": params.threshold, "fields": params.fields, "num_perm": params.num_perm,
        "shingle": params.shingle, "verify": params.verify, "incremental": incremental,
        "undo_handler": UNDO_HANDLER,
        "undo_note": "restores dup_clusters, dup_members and samples.cluster_id/duplicate_of from the "
                     "dup_undo_* rows with this op_id; stored signatures stay (a cache)",
    }


def find_duplicates(ws, params: DedupParams, job: Job | None = None, *, workers: int | None = None) -> DedupReport:
    """Find exact and near duplicates over all samples and replace the workspace's clusters.

    `workers`: processes for hashing and verification (default: all cores when there is enough
    work; it changes the speed, never the clusters). Returns a `DedupReport`; the run is one
    undoable operation of kind 'dedup'."""
    job = job or null_job("dedup")
    started = time.monotonic()
    report = DedupReport(op_id=None, params=asdict(params))
    con = ws.con
    job.set_total(int(con.execute("SELECT count(*) FROM samples").fetchall()[0][0]))
    holder: list[Workers] = []
    try:
        stored = stored_signatures(con, params, spill_dir=ws.root)
        job.advance(stored.ids.size)
        fresh = compute_missing(ws, params, job, workers, None, holder)
        pool = holder[0]
        data = merge(stored, fresh, ws.root)
        report.samples = int(data.ids.size)
        report.signatures_computed = int(fresh.ids.size)
        report.signatures_reused = int(stored.ids.size)
        plan = plan_full(ws, data, params, pool, job, report)
        job.check()
    finally:
        for p in holder:
            p.close(terminate=True)
    job.set_message("writing clusters")
    with ws.transaction() as c:
        if _same_clusters(c, plan, params):
            # A rerun that finds what is there already: record no operation (undo must revert the
            # last real change), keep only the new signatures (a cache).
            store_signatures(c, params, fresh)
            report.clusters, report.duplicates = len(plan.method), int((plan.member != plan.keeper).sum())
            op_id = None
        else:
            op_id = _full_run_write(ws, c, plan, params, report, fresh)
    report.op_id = op_id
    report.exact_clusters = sum(1 for m in plan.method if m == "exact")
    report.near_clusters = report.clusters - report.exact_clusters
    report.seconds = time.monotonic() - started
    return report


def _same_clusters(c, plan: Plan, params: DedupParams) -> bool:
    """Whether a full run's plan equals the stored clusters (members, keepers, similarities,
    methods, who chose the keeper, duplicate_of) and the last run used the same parameters."""
    if last_params(c) != params:
        return False
    new = table_of({"sample_id": plan.member, "keeper_id": plan.keeper, "similarity": plan.similarity,
                    "method": [plan.method[i] for i in plan.label.tolist()],
                    "chosen": [plan.chosen_by[i] for i in plan.label.tolist()]},
                   schema=pa.schema([("sample_id", pa.int64()), ("keeper_id", pa.int64()), ("similarity", pa.float64()),
                                     ("method", pa.string()), ("chosen", pa.string())]))
    stored = ("SELECT m.sample_id, c.keeper_id, m.similarity, c.method, c.keeper_chosen_by, c.fields, c.resolved, s.duplicate_of "
              "FROM dup_members m JOIN dup_clusters c ON c.id = m.cluster_id JOIN samples s ON s.id = m.sample_id "
              "AND s.cluster_id = m.cluster_id")
    planned = ("SELECT sample_id, keeper_id, similarity, method, chosen, ?, chosen = 'reviewer', "
               "CASE WHEN sample_id = keeper_id THEN NULL ELSE keeper_id END FROM _plan_new")
    c.register("_plan_new", new)
    try:
        diff = c.execute(
            f"""SELECT (SELECT count(*) FROM ({stored} EXCEPT ALL {planned}))
                     + (SELECT count(*) FROM ({planned} EXCEPT ALL {stored}))
                     + (SELECT count(*) FROM samples s WHERE (s.cluster_id IS NOT NULL OR s.duplicate_of IS NOT NULL)
                        AND NOT EXISTS (SELECT 1 FROM dup_members m WHERE m.sample_id = s.id AND m.cluster_id = s.cluster_id))
                     + (SELECT count(*) FROM dup_clusters c
                        WHERE c.size <> (SELECT count(*) FROM dup_members m WHERE m.cluster_id = c.id))""",
            [params.fields, params.fields]).fetchall()[0][0]
    finally:
        c.unregister("_plan_new")
    return int(diff) == 0


def _full_run_write(ws, c, plan: Plan, params: DedupParams, report: DedupReport, fresh: Sigs) -> int:
    """Record a full run's operation and replace every cluster with the plan's; its id."""
    op_id = ws.record_operation("dedup", details=_details(params, report, False),
                                sample_count=int((plan.member != plan.keeper).sum()))
    save_for_undo(c, op_id, None, None)
    c.execute("DELETE FROM dup_members")
    c.execute("DELETE FROM dup_clusters")
    c.execute("UPDATE samples SET cluster_id = NULL, duplicate_of = NULL "
              "WHERE cluster_id IS NOT NULL OR duplicate_of IS NOT NULL")
    report.clusters, report.duplicates = write_plan(c, op_id, plan, params)
    store_signatures(c, params, fresh)
    c.execute("UPDATE operations SET details = ? WHERE id = ?",
              [json.dumps({**_details(params, report, False), "clusters": report.clusters,
                           "duplicates": report.duplicates}), op_id])
    return op_id


def check_incremental(ws, sample_ids: Iterable[int] | None = None, job: Job | None = None, *,
                      params: DedupParams | None = None, workers: int | None = None,
                      ignore_pairs: Mapping[int, Iterable[int]] | None = None) -> DedupReport:
    """Check new samples against everything already hashed, without re-hashing old samples.

    New samples: `sample_ids` if given, else every sample without a valid stored signature for
    `params` (default: those of the last dedup run that stands, else DedupParams()). Their signatures are
    computed and stored; the LSH bands of the stored signatures are rebuilt from the table (a
    sort, no hashing). A new sample that duplicates samples in an existing cluster joins that
    cluster (the one of its most similar partner) as a duplicate of its keeper; otherwise the new
    sample and its partners form a new cluster with a keeper chosen by the policy.

    `ignore_pairs`: new sample id -> ids it must not be matched against (either way round; an
    augmentation passes each new sample's parent and siblings, which share its answer or its
    instruction by design and are judged on the changed field instead: curation.augment.jobs).
    Ignoring a sample also ignores its exact copies (same normalised text). The sample can still
    reach an ignored one through a third sample it duplicates (clusters are connected
    components). Without it (None), nothing changes."""
    params = params or last_params(ws.con) or DedupParams()
    job = job or null_job("dedup")
    started = time.monotonic()
    report = DedupReport(op_id=None, params=asdict(params), incremental=True)
    con = ws.con
    only = None if sample_ids is None else distinct(np.fromiter(sample_ids, dtype=np.int64))
    holder: list[Workers] = []
    try:
        fresh = compute_missing(ws, params, job, workers, only, holder)
        pool = holder[0]
        stored = stored_signatures(con, params, spill_dir=ws.root)
        # The new samples: those hashed now and, when ids were given, requested samples that
        # already had a signature. Flags over one merged set, no copies of the signature matrix
        # (at 10M samples it is 5 GB, mapped from a file).
        new_ids = fresh.ids if only is None else distinct(np.concatenate([fresh.ids, stored.ids[np.isin(stored.ids, only)]]))
        # Samples already placed in a cluster stay where they are: such a "new" sample takes no
        # part in this check (an exact key of 0 leaves a row out of every group and band).
        placed = {r[0] for r in con.execute("SELECT id FROM samples WHERE cluster_id IS NOT NULL").fetchall()}
        left_out = new_ids[np.isin(new_ids, np.fromiter(placed, np.int64, len(placed)))] if placed else new_ids[:0]
        new_ids = distinct(new_ids[~np.isin(new_ids, left_out)])  # np.setdiff1d, without np.unique's hashing
        report.signatures_computed = int(fresh.ids.size)
        report.signatures_reused = int(stored.ids.size) - (int(np.isin(stored.ids, only).sum()) if only is not None else 0)
        report.samples = int(new_ids.size)
        data = merge(stored, fresh, ws.root)
        if left_out.size:  # a new Sigs: `data` may be `fresh` itself, whose keys are stored below
            data = replace(data, keys=np.where(np.isin(data.ids, left_out), 0, data.keys))
        is_new = np.isin(data.ids, new_ids)
        plan = plan_incremental(ws, data, is_new, params, pool, job, report, ignore_pairs)
        job.check()
    finally:
        for p in holder:
            p.close(terminate=True)
    op_id = None
    with ws.transaction() as c:
        if plan.member.size:
            op_id = ws.record_operation("dedup", details=_details(params, report, True),
                                        sample_count=int((plan.member != plan.keeper).sum()))
            touched = [e for e in plan.existing_id if e is not None]
            save_for_undo(c, op_id, touched, plan.member)
            report.clusters, report.duplicates = write_plan(c, op_id, plan, params)
        # else no new sample is a duplicate: nothing changes, no operation (undo must revert the
        # last real change); the new signatures are kept all the same (a cache).
        store_signatures(c, params, fresh)
    report.op_id = op_id
    report.exact_clusters = sum(1 for m, e in zip(plan.method, plan.existing_id) if m == "exact" and e is None)
    report.near_clusters = sum(1 for m, e in zip(plan.method, plan.existing_id) if m == "near" and e is None)
    report.seconds = time.monotonic() - started
    return report


