"""Planning clusters from signatures: which samples are duplicates of which, and who keeps.

Exact duplicates have equal normalised text and are grouped first; one representative of each
group enters the LSH (curation.dedup.lsh). Candidate pairs are checked against the threshold
(curation.dedup.similarity), and clusters are the connected components of the pairs that pass,
each with a keeper by the policy (curation.dedup.clusters). A full run plans every cluster; an
incremental check plans only what new samples change: a new sample joins the existing cluster
of its most similar partner, or forms a new cluster with its partners.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Mapping

import numpy as np

from ..jobs import Job
from ..workers import Workers
from .clusters import Plan, keeper_order, reviewer_keepers
from .lsh import band_keys, candidate_pairs, group_pairs, lsh_params, unique_pairs
from .params import DedupParams
from .signatures import Sigs
from .similarity import PairLookup, similarities

if TYPE_CHECKING:
    from .run import DedupReport


def components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Union-find over n nodes and the given edges: a component label per node."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    g = coo_matrix((np.ones(a.size, np.int8), (a, b)), shape=(n, n))
    return connected_components(g, directed=False)[1]


def exact_groups(keys: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """rep[i]: the first (smallest id) position with the same exact key; returns (rep, is_rep)."""
    n = keys.size
    rep = np.arange(n)
    idx = np.flatnonzero(valid)
    order = idx[np.argsort(keys[idx], kind="stable")]
    sk = keys[order]
    start = np.ones(order.size, dtype=bool)
    start[1:] = sk[1:] != sk[:-1]
    first = order[np.maximum.accumulate(np.where(start, np.arange(order.size), 0))] if order.size else order
    rep[order] = first
    return rep, (rep == np.arange(n)) & valid


def plan_full(ws, data: Sigs, params: DedupParams, pool: Workers, job: Job, report: DedupReport) -> Plan:
    n = data.ids.size
    valid = data.keys != 0
    rep, is_rep = exact_groups(data.keys, valid)
    dup_pos = np.flatnonzero(valid & ~is_rep)
    lookup = PairLookup(n)
    near_pos = np.flatnonzero(is_rep & (data.counts > 0))
    job.set_message("finding candidate pairs")
    ca, cb = candidate_pairs(data.sigs[near_pos], params.threshold, params.num_perm)
    ca, cb = near_pos[ca], near_pos[cb]
    report.candidate_pairs = int(ca.size)
    job.set_message(f"checking {ca.size:,} candidate pairs")
    sims = similarities(ws, params, data.ids[ca], data.ids[cb], data, pool, job)
    lookup.add(ca, cb, sims)
    keep = sims >= params.threshold - 1e-9
    report.verified_pairs = int(keep.sum())
    ea = np.concatenate([rep[dup_pos], ca[keep]])
    eb = np.concatenate([dup_pos, cb[keep]])
    return _plan_from_edges(ws, data, params, pool, job, rep, ea, eb, lookup)


def _plan_from_edges(ws, data: Sigs, params: DedupParams, pool: Workers, job: Job, rep: np.ndarray,
                     ea: np.ndarray, eb: np.ndarray, lookup: PairLookup) -> Plan:
    n = data.ids.size
    labels = components(n, ea, eb)
    sizes = np.bincount(labels, minlength=n)
    members = np.flatnonzero(sizes[labels] > 1)
    _, lab = np.unique(labels[members], return_inverse=True)
    reviewer = reviewer_keepers(ws.con)
    order = keeper_order(ws.con, data.ids[members], lab, reviewer)
    members, lab = members[order], lab[order]
    first = np.ones(members.size, dtype=bool)
    first[1:] = lab[1:] != lab[:-1]
    keeper_pos = members[first][lab]
    # Similarity to the keeper: 1.0 within an exact group, else the pair of representatives.
    sim = np.ones(members.size, np.float64)
    ra, rb = rep[members], rep[keeper_pos]
    differ = ra != rb
    found, vals = lookup.get(ra[differ], rb[differ])
    missing = ~found
    if missing.any():
        ma, mb = ra[differ][missing], rb[differ][missing]
        vals[missing] = similarities(ws, params, data.ids[ma], data.ids[mb], data, pool, job)
    sim[differ] = vals
    exact = np.ones(int(lab.max()) + 1 if lab.size else 0, dtype=bool)
    np.logical_and.at(exact, lab, ~differ)
    chosen = np.isin(data.ids[keeper_pos[first]], np.fromiter(reviewer, np.int64, len(reviewer)))
    return Plan(
        member=data.ids[members], label=lab, keeper=data.ids[keeper_pos], similarity=sim,
        method=["exact" if e else "near" for e in exact],
        chosen_by=["reviewer" if c else "policy" for c in chosen],
    )


def _ignored_codes(data: Sigs, rep: np.ndarray, ignore_pairs: Mapping[int, Iterable[int]] | None) -> np.ndarray:
    """Sorted codes (a * n + rep[b], positions in `data`) of the ignored pairs, both ways round, each
    against the other side's exact group (its representative): ignoring a sample ignores its exact
    copies too, which stand in for it in the LSH. Ids without a signature here are left out."""
    n = data.ids.size
    if not ignore_pairs or n == 0:
        return np.zeros(0, np.int64)
    a_ids = np.fromiter((int(k) for k, vs in ignore_pairs.items() for _ in vs), np.int64)
    b_ids = np.fromiter((int(v) for vs in ignore_pairs.values() for v in vs), np.int64)
    a, b = np.clip(data.index_of(a_ids), 0, n - 1), np.clip(data.index_of(b_ids), 0, n - 1)
    ok = (data.ids[a] == a_ids) & (data.ids[b] == b_ids)
    a, b = a[ok], b[ok]
    return np.unique(np.concatenate([a.astype(np.int64) * n + rep[b], b.astype(np.int64) * n + rep[a]]))


def _is_ignored(codes: np.ndarray, rep: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether each pair of positions (a, b) is ignored (see _ignored_codes)."""
    if codes.size == 0 or a.size == 0:
        return np.zeros(a.size, bool)
    n = rep.size
    return np.isin(a.astype(np.int64) * n + rep[b], codes) | np.isin(b.astype(np.int64) * n + rep[a], codes)


def plan_incremental(ws, data: Sigs, is_new: np.ndarray, params: DedupParams, pool: Workers, job: Job,
                      report: DedupReport, ignore_pairs: Mapping[int, Iterable[int]] | None = None) -> Plan:
    n = data.ids.size
    valid = data.keys != 0
    new_pos = np.flatnonzero(is_new & valid)
    empty = Plan(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), [], [], [])
    if new_pos.size == 0:
        return empty
    # Exact: a new sample equal to any sample (old or new) links to the first such sample.
    rep, _ = exact_groups(data.keys, valid)
    ignored = _ignored_codes(data, rep, ignore_pairs)
    exact_new = new_pos[rep[new_pos] != new_pos]
    # (A new sample that ignores a sample ignores that sample's whole exact group: no edge then.)
    exact_new = exact_new[~_is_ignored(ignored, rep, rep[exact_new], exact_new)]
    ea, eb = [rep[exact_new]], [exact_new]
    # Near: bands of all signatures; keep only pairs that involve a new sample.
    near_pos = np.flatnonzero(valid & (data.counts > 0) & ((rep == np.arange(n)) | is_new))
    bands, rows = lsh_params(params.threshold, params.num_perm)
    keys = band_keys(data.sigs[near_pos], bands, rows)
    pa_, pb_ = [], []
    new_local = is_new[near_pos]
    for k in keys:
        # Only groups that hold a new sample matter: select them before pairing.
        hot = np.isin(k, k[new_local])
        sub = np.flatnonzero(hot)
        a, b = group_pairs(k[sub])
        a, b = sub[a], sub[b]
        m = new_local[a] | new_local[b]
        pa_.append(a[m])
        pb_.append(b[m])
    ca, cb = unique_pairs(np.concatenate(pa_), np.concatenate(pb_), max(near_pos.size, 1)) if pa_ else (np.zeros(0, np.int64),) * 2
    ca, cb = near_pos[ca], near_pos[cb]
    # Exact-duplicate pairs already link these; skip pairs inside one exact group, and ignored pairs.
    m = (rep[ca] != rep[cb]) & ~_is_ignored(ignored, rep, ca, cb)
    ca, cb = ca[m], cb[m]
    report.candidate_pairs = int(ca.size)
    sims = similarities(ws, params, data.ids[ca], data.ids[cb], data, pool, job)
    lookup = PairLookup(n)
    lookup.add(ca, cb, sims)
    keep = sims >= params.threshold - 1e-9
    report.verified_pairs = int(keep.sum())
    ea.append(ca[keep])
    eb.append(cb[keep])
    ea_, eb_ = np.concatenate(ea), np.concatenate(eb)
    if ea_.size == 0:
        return empty
    # Old samples already in clusters: which cluster, and its keeper.
    con = ws.con
    rows = con.execute("SELECT s.id, s.cluster_id, c.keeper_id FROM samples s JOIN dup_clusters c ON c.id = s.cluster_id "
                       "WHERE s.cluster_id IS NOT NULL").fetchall()
    cluster_of = {r[0]: (r[1], r[2]) for r in rows}
    labels = components(n, ea_, eb_)
    # Best edge per component into a clustered old sample decides which cluster it joins.
    edge_sim = np.concatenate([np.ones(ea_.size - keep.sum()), sims[keep]])
    join: dict[int, tuple[float, int]] = {}
    for a, b, s in zip(ea_.tolist(), eb_.tolist(), edge_sim.tolist()):
        for x in (a, b):
            sid = int(data.ids[x])
            if not is_new[x] and sid in cluster_of:
                lab = int(labels[x])
                if lab not in join or s > join[lab][0]:
                    join[lab] = (s, cluster_of[sid][0])
    sizes = np.bincount(labels, minlength=n)
    comp_members = np.flatnonzero(sizes[labels] > 1)
    # Old members that already sit in a cluster are not re-planned, except as the joined cluster.
    movable = np.array([is_new[p] or int(data.ids[p]) not in cluster_of for p in comp_members], dtype=bool)
    comp_members = comp_members[movable] if comp_members.size else comp_members
    groups: dict[int, list[int]] = {}
    for p in comp_members.tolist():
        groups.setdefault(int(labels[p]), []).append(p)
    keeper_by_cluster = {cid: keeper for cid, keeper in cluster_of.values()}
    plan_member, plan_label, plan_keeper, method, chosen, existing = [], [], [], [], [], []
    pending_policy: list[tuple[int, list[int]]] = []
    for lab, ps in groups.items():
        if lab in join:
            cid = join[lab][1]
            li = len(method)
            method.append("near")
            chosen.append("policy")  # not written: the joined cluster keeps its keeper
            existing.append(cid)
            for p in ps:
                plan_member.append(int(data.ids[p]))
                plan_label.append(li)
                plan_keeper.append(keeper_by_cluster[cid])
            report.joined_existing += sum(1 for p in ps if is_new[p])
        elif len(ps) > 1:
            pending_policy.append((lab, ps))
    # New clusters: keeper by policy.
    if pending_policy:
        pos = np.array([p for _, ps in pending_policy for p in ps], dtype=np.int64)
        lab_local = np.array([i for i, (_, ps) in enumerate(pending_policy) for _ in ps], dtype=np.int64)
        order = keeper_order(con, data.ids[pos], lab_local, reviewer_keepers(con))
        pos, lab_local = pos[order], lab_local[order]
        first = np.ones(pos.size, bool)
        first[1:] = lab_local[1:] != lab_local[:-1]
        keeper_pos = pos[first][lab_local]
        base = len(method)
        for i in range(len(pending_policy)):
            method.append("near")
            chosen.append("policy")
            existing.append(None)
        plan_member.extend(data.ids[pos].tolist())
        plan_label.extend((lab_local + base).tolist())
        plan_keeper.extend(data.ids[keeper_pos].tolist())
    if not plan_member:
        return empty
    member = np.array(plan_member, np.int64)
    keeper = np.array(plan_keeper, np.int64)
    label = np.array(plan_label, np.int64)
    # Similarities to keepers; method 'exact' when every member equals its keeper's text.
    mpos, kpos = data.index_of(member), data.index_of(keeper)
    keeper_known = np.isin(keeper, data.ids)
    sim = np.ones(member.size)
    ra = rep[mpos]
    rb = np.where(keeper_known, rep[np.clip(kpos, 0, n - 1)], -1)
    differ = (ra != rb) & (member != keeper)
    if differ.any():
        found, vals = lookup.get(ra[differ], np.maximum(rb[differ], 0))
        found &= rb[differ] >= 0
        miss = ~found
        if miss.any():
            vals[miss] = similarities(ws, params, member[differ][miss], keeper[differ][miss], data, pool, job) \
                if params.verify else _estimate_with_keepers(con, params, data, member[differ][miss], keeper[differ][miss])
        sim[differ] = vals
    exact = np.ones(len(method), bool)
    np.logical_and.at(exact, label, ~differ)
    method = ["exact" if e else "near" for e in exact]
    return Plan(member, label, keeper, sim, method, chosen, existing)


def _estimate_with_keepers(con, params: DedupParams, data: Sigs, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """MinHash estimates where a keeper's signature may not be loaded (it always is: all stored)."""
    ia, ib = data.index_of(a), np.clip(data.index_of(b), 0, data.ids.size - 1)
    return (data.sigs[ia] == data.sigs[ib]).mean(axis=1)


