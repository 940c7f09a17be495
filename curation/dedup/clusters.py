"""Duplicate clusters in the workspace: the keeper policy, writing a planned set of clusters, a
reviewer's keeper choice, listing, and undo of a dedup or keeper operation.

Keeper policy, applied in this order until one member wins:
  1. a reviewer's choice (`set_keeper`; kept across re-runs),
  2. status: approved, then pending, then rejected,
  3. quality: fewer quality flags, then higher judge_score (no score counts as lowest),
  4. the longer answer (characters),
  5. the earlier import (smaller sample id).
Every other member gets samples.duplicate_of = keeper: it stays in the workspace and leaves every
split (export skips duplicate_of). dup_members.similarity is each member's similarity to the
keeper (exact Jaccard when verified, else the MinHash estimate; 1.0 for exact duplicates).

Each dedup run or keeper choice is one operation, undoable: it saves what it replaces in the
dup_undo_* tables and names `undo_operation` (as curation.dedup.undo_operation) as its undo handler.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..arrow_buffers import float64s, int64s, table_of
from ..errors import NotFound, StudioError
from .params import DEFAULT_SHINGLE, DedupParams
from .shingle_sets import fetch_texts
from .similarity import jaccard_chunk

UNDO_HANDLER = "curation.dedup:undo_operation"
_STATUS_RANK = {"approved": 0, "pending": 1, "rejected": 2}


def keeper_rank(con, member_ids: np.ndarray, reviewer: set[int]) -> tuple[np.ndarray, np.ndarray]:
    """Each member's rank by the keeper policy (0: the best keeper; distinct ids, distinct ranks)
    and its tier: members of equal tier tie on policy steps 1-3 (reviewer, status, quality), so
    only answer length and import order tell them apart."""
    con.register("_members", table_of({"id": np.asarray(member_ids, np.int64)}))
    try:
        t = con.sql(
            "SELECT m.id, s.status, s.judge_score, length(coalesce(s.answer, s.text, '')) AS alen, "
            "coalesce(q.n, 0) AS nflags FROM _members m JOIN samples s ON s.id = m.id "
            "LEFT JOIN (SELECT sample_id, count(*) AS n FROM quality_flags GROUP BY sample_id) q "
            "ON q.sample_id = m.id ORDER BY m.id"
        ).to_arrow_table()
    finally:
        con.unregister("_members")
    ids = int64s(t.column("id"))
    pos = np.searchsorted(ids, member_ids)
    status = np.array([_STATUS_RANK.get(s, 1) for s in t.column("status").to_pylist()], dtype=np.int64)[pos]
    judge = float64s(t.column("judge_score"))[pos]
    judge = np.where(np.isnan(judge), -np.inf, judge)
    alen = int64s(t.column("alen"))[pos]
    nflags = int64s(t.column("nflags"))[pos]
    chosen = np.isin(member_ids, np.fromiter(reviewer, dtype=np.int64, count=len(reviewer)))
    # np.lexsort: the last key is the primary one.
    order = np.lexsort((member_ids, -alen, -judge, nflags, status, ~chosen))
    rank = np.empty(member_ids.size, np.int64)
    rank[order] = np.arange(member_ids.size)
    _, tier = np.unique(np.stack([~chosen, status, nflags, -judge]).T, axis=0, return_inverse=True)
    return rank, tier.reshape(-1)


def reviewer_keepers(con) -> set[int]:
    return {r[0] for r in con.execute("SELECT keeper_id FROM dup_clusters WHERE keeper_chosen_by = 'reviewer'").fetchall()}


@dataclass
class Plan:
    """Clusters to write: parallel arrays over members."""

    member: np.ndarray      # sample ids
    label: np.ndarray       # cluster label per member (0..clusters-1)
    keeper: np.ndarray      # keeper sample id per member
    similarity: np.ndarray  # to the keeper
    method: list[str]       # per label
    chosen_by: list[str]    # per label
    existing_id: list[int | None] = field(default_factory=list)  # incremental: cluster joined


def save_for_undo(con, op_id: int, cluster_ids: list[int] | None, sample_ids: np.ndarray | None) -> None:
    """Copy clusters (all when cluster_ids is None), their members and the samples' assignments."""
    if cluster_ids is None:
        where, args = "TRUE", []
    else:
        where, args = "id IN (SELECT unnest(?))", [cluster_ids]
    con.execute(
        "INSERT INTO dup_undo_clusters SELECT ?, TRUE, id, method, fields, keeper_id, keeper_chosen_by, size, op_id, resolved "
        f"FROM dup_clusters WHERE {where}", [op_id, *args])
    con.execute(
        f"INSERT INTO dup_undo_members SELECT ?, cluster_id, sample_id, similarity FROM dup_members "
        f"WHERE cluster_id IN (SELECT id FROM dup_clusters WHERE {where})", [op_id, *args])
    if sample_ids is None:
        con.execute("INSERT INTO dup_undo_samples SELECT ?, id, cluster_id, duplicate_of FROM samples "
                    "WHERE cluster_id IS NOT NULL OR duplicate_of IS NOT NULL", [op_id])
    else:
        con.execute("INSERT INTO dup_undo_samples SELECT ?, id, cluster_id, duplicate_of FROM samples "
                    "WHERE id IN (SELECT unnest(?)) AND (cluster_id IS NOT NULL OR duplicate_of IS NOT NULL)",
                    [op_id, sample_ids.tolist()])


def _reserve_cluster_ids(con, n: int) -> np.ndarray:
    if n == 0:
        return np.zeros(0, np.int64)
    first = con.execute("SELECT nextval('cluster_id_seq')").fetchall()[0][0]
    if n > 1:
        con.execute(f"SELECT max(nextval('cluster_id_seq')) FROM range({n - 1})").fetchall()
    return np.arange(first, first + n, dtype=np.int64)


def write_plan(con, op_id: int, plan: Plan, params: DedupParams) -> tuple[int, int]:
    """Insert the planned clusters (new ones get ids; incremental joins reuse existing ids);
    returns (clusters written, duplicates marked)."""
    nlab = len(plan.method)
    if nlab == 0:
        return 0, 0
    existing = plan.existing_id or [None] * nlab
    new_labels = [i for i in range(nlab) if existing[i] is None]
    new_ids = _reserve_cluster_ids(con, len(new_labels))
    cid = np.zeros(nlab, np.int64)
    for lab, i in zip(new_labels, new_ids):
        cid[lab] = i
    for lab in range(nlab):
        known = existing[lab]
        if known is not None:
            cid[lab] = known
    member_cid = cid[plan.label]
    sizes = np.bincount(plan.label, minlength=nlab)
    keeper_of = np.zeros(nlab, np.int64)
    keeper_of[plan.label] = plan.keeper
    new_mask = np.array([e is None for e in existing])
    if new_mask.any():
        clusters = table_of({
            "id": cid[new_mask], "method": [m for m, k in zip(plan.method, new_mask) if k],
            "keeper_id": keeper_of[new_mask], "chosen": [c for c, k in zip(plan.chosen_by, new_mask) if k],
            "size": sizes[new_mask].astype(np.int32),
        })
        con.register("_clusters", clusters)
        try:
            con.execute("INSERT INTO dup_clusters (id, method, fields, keeper_id, keeper_chosen_by, size, op_id, resolved) "
                        "SELECT id, method, ?, keeper_id, chosen, size, ?, chosen = 'reviewer' FROM _clusters",
                        [params.fields, op_id])
            con.execute("INSERT INTO dup_undo_clusters (op_id, existed, id) SELECT ?, FALSE, id FROM _clusters", [op_id])
        finally:
            con.unregister("_clusters")
    members = table_of({
        "cluster_id": member_cid, "sample_id": plan.member, "similarity": plan.similarity,
        "duplicate_of": np.where(plan.member == plan.keeper, -1, plan.keeper),
    })
    con.register("_members", members)
    try:
        # Incremental: members already in a joined cluster are in `members` again; add only new ones.
        con.execute("INSERT INTO dup_members SELECT m.cluster_id, m.sample_id, m.similarity FROM _members m "
                    "WHERE NOT EXISTS (SELECT 1 FROM dup_members d WHERE d.cluster_id = m.cluster_id AND d.sample_id = m.sample_id)")
        con.execute("UPDATE samples SET cluster_id = m.cluster_id, "
                    "duplicate_of = CASE WHEN m.duplicate_of < 0 THEN NULL ELSE m.duplicate_of END "
                    "FROM _members m WHERE samples.id = m.sample_id")
    finally:
        con.unregister("_members")
    if (~new_mask).any():
        now_near = [int(cid[i]) for i in range(nlab) if not new_mask[i] and plan.method[i] == "near"]
        if now_near:
            con.execute("UPDATE dup_clusters SET method = 'near' WHERE id IN (SELECT unnest(?))", [now_near])
        con.execute("UPDATE dup_clusters SET size = (SELECT count(*) FROM dup_members d WHERE d.cluster_id = dup_clusters.id) "
                    "WHERE id IN (SELECT unnest(?))", [cid[~new_mask].tolist()])
    return nlab, int((plan.member != plan.keeper).sum())


def _cluster_shingle(con, cluster_op: int | None) -> int:
    if cluster_op is None:
        return DEFAULT_SHINGLE
    rows = con.execute("SELECT details FROM operations WHERE id = ?", [cluster_op]).fetchall()
    row = rows[0] if rows else None
    if not row or row[0] is None:
        return DEFAULT_SHINGLE
    d = json.loads(row[0]) if isinstance(row[0], str) else row[0]
    return int(d.get("shingle", DEFAULT_SHINGLE))


def set_keeper(ws, cluster_id: int, sample_id: int, *, reason: str | None = None) -> int | None:
    """A person's choice of keeper for a cluster (keeper_chosen_by='reviewer', resolved). Other
    members become duplicates of it; similarities are recomputed against it. Kept by later
    dedup runs; one undoable operation (kind 'keeper'); returns its id, or None when the cluster
    already had that keeper from a reviewer (nothing changes, nothing is recorded)."""
    con = ws.con
    rows = con.execute("SELECT method, fields, op_id FROM dup_clusters WHERE id = ?", [int(cluster_id)]).fetchall()
    row = rows[0] if rows else None
    if row is None:
        raise NotFound(f"no duplicate cluster {cluster_id}. `studio dedup --json` lists the clusters.")
    method, fields, cluster_op = row
    members = [r[0] for r in con.execute("SELECT sample_id FROM dup_members WHERE cluster_id = ? ORDER BY sample_id",
                                        [int(cluster_id)]).fetchall()]
    if int(sample_id) not in members:
        raise StudioError(f"sample {sample_id} is not in cluster {cluster_id} (members: "
                          f"{', '.join(map(str, members[:20]))}{' ...' if len(members) > 20 else ''}).")
    ids = np.array(members, np.int64)
    if method == "exact":
        sims = np.ones(ids.size)
    else:
        params = DedupParams(fields=fields, shingle=_cluster_shingle(con, cluster_op))
        texts = fetch_texts(con, params, ids)
        k = members.index(int(sample_id))
        sims = jaccard_chunk(texts, np.full(ids.size, k), np.arange(ids.size), params.shingle)
        sims[k] = 1.0
    if _keeper_unchanged(con, int(cluster_id), int(sample_id), ids, sims):
        return None  # already this keeper, chosen by a reviewer: no operation for undo to meet
    with ws.transaction() as c:
        op_id = ws.record_operation("keeper", reason=reason, sample_count=len(members),
                                    details={"cluster_id": int(cluster_id), "keeper_id": int(sample_id),
                                             "undo_handler": UNDO_HANDLER})
        save_for_undo(c, op_id, [int(cluster_id)], ids)
        c.execute("UPDATE dup_clusters SET keeper_id = ?, keeper_chosen_by = 'reviewer', resolved = TRUE WHERE id = ?",
                  [int(sample_id), int(cluster_id)])
        c.register("_sims", table_of({"sample_id": np.asarray(ids, np.int64), "similarity": np.asarray(sims, np.float64)}))
        try:
            c.execute("UPDATE dup_members SET similarity = s.similarity FROM _sims s "
                      "WHERE dup_members.cluster_id = ? AND dup_members.sample_id = s.sample_id", [int(cluster_id)])
        finally:
            c.unregister("_sims")
        c.execute("UPDATE samples SET duplicate_of = CASE WHEN id = ? THEN NULL ELSE ? END, cluster_id = ? "
                  "WHERE id IN (SELECT unnest(?))", [int(sample_id), int(sample_id), int(cluster_id), members])
    return op_id


def _keeper_unchanged(con, cluster_id: int, sample_id: int, ids: np.ndarray, sims: np.ndarray) -> bool:
    """Whether set_keeper would leave the cluster as it is."""
    row = con.execute("SELECT keeper_id, keeper_chosen_by, resolved FROM dup_clusters WHERE id = ?", [cluster_id]).fetchall()
    if not row or tuple(row[0]) != (sample_id, "reviewer", True):
        return False
    stored = dict(con.execute(
        "SELECT m.sample_id, m.similarity FROM dup_members m JOIN samples s ON s.id = m.sample_id "
        "WHERE m.cluster_id = ? AND s.cluster_id = m.cluster_id "
        "AND s.duplicate_of IS NOT DISTINCT FROM CASE WHEN s.id = ? THEN NULL ELSE ? END",
        [cluster_id, sample_id, sample_id]).fetchall())
    return len(stored) == ids.size and all(stored.get(int(i)) == float(v) for i, v in zip(ids.tolist(), sims.tolist()))


def undo_operation(ws, op) -> None:
    """Undo handler for 'dedup' and 'keeper' operations (runs inside curation.undo's transaction):
    drop the clusters the op touched and put back what it saved."""
    con = ws.con
    op_id = op.id if hasattr(op, "id") else int(op)
    touched = [r[0] for r in con.execute("SELECT id FROM dup_undo_clusters WHERE op_id = ?", [op_id]).fetchall()]
    if touched:
        con.execute("UPDATE samples SET cluster_id = NULL, duplicate_of = NULL WHERE cluster_id IN (SELECT unnest(?))", [touched])
        con.execute("DELETE FROM dup_members WHERE cluster_id IN (SELECT unnest(?))", [touched])
        con.execute("DELETE FROM dup_clusters WHERE id IN (SELECT unnest(?))", [touched])
    con.execute("INSERT INTO dup_clusters SELECT id, method, fields, keeper_id, keeper_chosen_by, size, cluster_op_id, resolved "
                "FROM dup_undo_clusters WHERE op_id = ? AND existed", [op_id])
    con.execute("INSERT INTO dup_members SELECT cluster_id, sample_id, similarity FROM dup_undo_members WHERE op_id = ?", [op_id])
    con.execute("UPDATE samples SET cluster_id = u.cluster_id, duplicate_of = u.duplicate_of FROM dup_undo_samples u "
                "WHERE u.op_id = ? AND samples.id = u.sample_id", [op_id])


def list_clusters(con, *, limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
    """Clusters with their members (sample id, source id, similarity, keeper flag), largest first."""
    sql = ("SELECT id, method, fields, keeper_id, keeper_chosen_by, size, resolved FROM dup_clusters "
           "ORDER BY size DESC, id")
    args: list[Any] = []
    if limit is not None:
        sql += " LIMIT ? OFFSET ?"
        args = [int(limit), int(offset)]
    clusters = con.execute(sql, args).fetchall()
    if not clusters:
        return []
    ids = [c[0] for c in clusters]
    members: dict[int, list[dict[str, Any]]] = {}
    for cid, sid, sim, src in con.execute(
        "SELECT m.cluster_id, m.sample_id, m.similarity, s.source_id FROM dup_members m JOIN samples s ON s.id = m.sample_id "
        "WHERE m.cluster_id IN (SELECT unnest(?)) ORDER BY m.cluster_id, m.similarity DESC, m.sample_id", [ids]
    ).fetchall():
        members.setdefault(cid, []).append({"sample_id": sid, "source_id": src, "similarity": round(float(sim), 4)
                                            if sim is not None else None})
    out = []
    for cid, method, fields, keeper, chosen, size, resolved in clusters:
        ms = members.get(cid, [])
        for m in ms:
            m["keeper"] = m["sample_id"] == keeper
        out.append({"cluster_id": cid, "method": method, "fields": fields, "keeper_id": keeper,
                    "keeper_chosen_by": chosen, "size": size, "resolved": bool(resolved), "members": ms})
    return out
