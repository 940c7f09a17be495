"""Planning clusters from signatures: which samples are duplicates of which, and who keeps.

Exact duplicates have equal normalised text and are grouped first; one representative of each
group enters the LSH (curation.dedup.lsh). Candidate pairs are checked against the threshold
(curation.dedup.similarity). The connected components of the pairs that pass are then made into
clusters whose every member reaches the threshold to the keeper, not only to some other member
(`keeper_clusters`: chains split). A full run plans every cluster; an incremental check plans
only what new samples change: a new sample joins the existing cluster of its most similar partner
when it reaches that cluster's keeper, else it forms a new cluster with its partners.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Mapping

import numpy as np

from ..distinct import distinct
from ..jobs import Job
from ..workers import Workers
from .clusters import Plan, keeper_rank, reviewer_keepers
from .lsh import band_widths, candidate_pairs, group_pairs, keys_of_band, unique_pairs
from .params import DedupParams
from .signatures import Sigs, gather_rows
from .similarity import COVERAGE_MARGIN, PairLookup, estimates_at, similarities

if TYPE_CHECKING:
    from .report import DedupReport


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
    ca, cb = candidate_pairs(data.sigs, params.threshold, params.num_perm, near_pos, data.bands)
    ca, cb = near_pos[ca], near_pos[cb]
    report.candidate_pairs = int(ca.size)
    job.set_message(f"checking {ca.size:,} candidate pairs")
    sims = similarities(ws, params, data.ids[ca], data.ids[cb], data, pool, job)
    lookup.add(ca, cb, sims)
    keep = sims >= params.threshold - 1e-9
    report.verified_pairs = int(keep.sum())
    ea = np.concatenate([rep[dup_pos], ca[keep]])
    eb = np.concatenate([dup_pos, cb[keep]])
    return _plan_from_edges(ws, data, params, pool, job, rep, ea, eb, lookup, report)


def _plan_from_edges(ws, data: Sigs, params: DedupParams, pool: Workers, job: Job, rep: np.ndarray,
                     ea: np.ndarray, eb: np.ndarray, lookup: PairLookup, report: DedupReport) -> Plan:
    n = data.ids.size
    labels = components(n, ea, eb)
    sizes = np.bincount(labels, minlength=n)
    members = np.flatnonzero(sizes[labels] > 1)
    _, lab = np.unique(labels[members], return_inverse=True)
    reviewer = reviewer_keepers(ws.con)
    members, lab, keeper_pos, sim, report.chains_split = keeper_clusters(
        ws, data, params, pool, job, rep, lookup, members, lab, reviewer)
    nlab = int(lab.max()) + 1 if lab.size else 0
    exact = np.ones(nlab, dtype=bool)
    np.logical_and.at(exact, lab, rep[members] == rep[keeper_pos])
    keeper_of = np.zeros(nlab, np.int64)
    keeper_of[lab] = data.ids[keeper_pos]
    chosen = np.isin(keeper_of, np.fromiter(reviewer, np.int64, len(reviewer)))
    return Plan(
        member=data.ids[members], label=lab, keeper=data.ids[keeper_pos], similarity=sim,
        method=["exact" if e else "near" for e in exact],
        chosen_by=["reviewer" if c else "policy" for c in chosen],
    )


def keeper_clusters(ws, data: Sigs, params: DedupParams, pool: Workers, job: Job, rep: np.ndarray,
                    lookup: PairLookup, members: np.ndarray, group: np.ndarray, reviewer: set[int],
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Clusters whose every member reaches the threshold to its keeper, from groups of linked
    samples (positions `members`, a group label each: connected components of verified pairs).

    A component can be a chain (A~B, B~C, A and C far apart): linked through other members, not
    similar to the keeper. So each group takes its keeper by the policy and keeps the members at
    or above the threshold to it (the same similarity as for any pair: exact Jaccard with
    `verify`, else the MinHash estimate); those below leave together as a group of their own that
    picks its keeper the same way, until no group of two or more is left. A member left alone
    is no duplicate.

    When the policy's keeper leaves members out, the member of its tier (equal on reviewer,
    status and quality) that reaches the most of the group keeps instead (_widest_keeper):
    otherwise the longest copy of a sample, whose edits differ from the other copies' edits,
    would keep only the original and leave the other copies in the data as clusters of one.
    Groups whose keeper reaches everyone keep the policy's keeper, as before.

    Returns (members, cluster labels 0..k-1, keeper positions, similarities to the keeper, how
    many groups were split)."""
    threshold = params.threshold - 1e-9
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    labels_used, split = 0, None
    rank, tier = keeper_rank(ws.con, data.ids[members], reviewer)
    cache = PairLookup(data.ids.size)  # pairs computed while splitting (kept apart from the big `lookup`)
    while members.size:
        order = np.lexsort((rank, group))
        members, group, rank, tier = members[order], group[order], rank[order], tier[order]
        first = np.ones(members.size, dtype=bool)
        first[1:] = group[1:] != group[:-1]
        g = np.cumsum(first) - 1                     # dense group index, keeper first in each
        keeper = members[first][g]
        sim = pair_similarity(ws, data, params, pool, job, rep, (lookup, cache), members, keeper)
        near = sim >= threshold                      # the keeper itself: 1.0
        short = distinct(g[~near])
        if short.size:
            keeper = _widest_keeper(ws, data, params, pool, job, rep, (lookup, cache), members, g, tier,
                                    np.flatnonzero(first), short, keeper)
            moved = keeper != members[first][g]
            if moved.any():
                sim[moved] = pair_similarity(ws, data, params, pool, job, rep, (lookup, cache), members[moved],
                                             keeper[moved])
                near = sim >= threshold
        n_near = np.bincount(g[near], minlength=int(g[-1]) + 1)
        n_far = np.bincount(g[~near], minlength=int(g[-1]) + 1)
        if split is None:
            split = int((n_far > 0).sum())
        take = near & (n_near[g] > 1)
        _, lab = np.unique(g[take], return_inverse=True)
        parts.append((members[take], lab + labels_used, keeper[take], sim[take]))
        labels_used += int(lab.max()) + 1 if lab.size else 0
        again = ~near & (n_far[g] > 1)
        members, group, rank, tier = members[again], g[again], rank[again], tier[again]
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), 0
    return (*(np.concatenate(cols) for cols in zip(*parts)), split or 0)  # type: ignore[return-value]


COVERAGE_PAIRS = 1 << 16   # candidate-member pairs estimated per group in _widest_keeper (more: fewer candidates)


def _widest_keeper(ws, data: Sigs, params: DedupParams, pool: Workers, job: Job, rep: np.ndarray,
                   lookups: tuple[PairLookup, PairLookup], members: np.ndarray, g: np.ndarray, tier: np.ndarray,
                   starts: np.ndarray,
                   short: np.ndarray, keeper: np.ndarray) -> np.ndarray:
    """Keepers (per member, as `keeper`) where each group in `short` takes the member of its
    keeper's tier that reaches the threshold to the most members of the group (the same
    similarity as for pairs; pairs whose MinHash estimate is far below are not computed). Ties go
    to the earlier one in policy order (longer answer, then earlier import)."""
    ends = np.append(starts[1:], members.size)
    cands: list[np.ndarray] = []
    pair_a: list[np.ndarray] = []
    pair_b: list[np.ndarray] = []
    for gi in short.tolist():
        lo, hi = int(starts[gi]), int(ends[gi])
        cand = lo + np.flatnonzero(tier[lo:hi] == tier[lo])
        cand = cand[:max(1, COVERAGE_PAIRS // (hi - lo))]
        if cand.size < 2:
            continue
        rows = gather_rows(data.sigs, members[lo:hi])
        agree = np.count_nonzero(rows[cand - lo][:, None, :] == rows[None, :, :], axis=2)
        ci, mi = np.nonzero(agree >= (params.threshold - COVERAGE_MARGIN) * params.num_perm)
        cands.append(cand)
        pair_a.append(cand[ci])
        pair_b.append(lo + mi)
    if not cands:
        return keeper
    a, b = np.concatenate(pair_a), np.concatenate(pair_b)
    sim = pair_similarity(ws, data, params, pool, job, rep, lookups, members[a], members[b])
    reach = np.bincount(a[sim >= params.threshold - 1e-9], minlength=members.size)
    keeper = keeper.copy()
    for cand in cands:
        lo = int(starts[g[cand[0]]])
        hi = int(ends[g[cand[0]]])
        keeper[lo:hi] = members[cand[int(np.argmax(reach[cand]))]]
    return keeper


def pair_similarity(ws, data: Sigs, params: DedupParams, pool: Workers, job: Job, rep: np.ndarray,
                    lookups: tuple[PairLookup, PairLookup], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Similarity of each pair of positions: 1.0 within an exact group, else that of the groups'
    representatives, from `lookups` (the run's verified pairs, then a cache) or computed and
    added to the cache. Pairs not looked up whose MinHash estimate is more than COVERAGE_MARGIN
    from the threshold get the estimate, not the exact Jaccard (`similarities`): on the same side
    of it either way."""
    sim = np.ones(a.size, np.float64)
    ra, rb = rep[a], rep[b]
    differ = ra != rb
    if not differ.any():
        return sim
    da, db = ra[differ], rb[differ]
    verified, cache = lookups
    found, vals = verified.get(da, db)
    if not found.all():
        in_cache, cached = cache.get(da, db)
        vals = np.where(found, vals, cached)
        missing = ~found & ~in_cache
        if missing.any():
            code = np.minimum(da[missing], db[missing]).astype(np.int64) * rep.size + np.maximum(da[missing], db[missing])
            uniq, inv = np.unique(code, return_inverse=True)
            ua, ub = uniq // rep.size, uniq % rep.size
            computed = estimates_at(data.sigs, ua, ub)
            close = computed >= params.threshold - COVERAGE_MARGIN
            if params.verify and close.any():
                computed[close] = similarities(ws, params, data.ids[ua[close]], data.ids[ub[close]], data, pool, job)
            cache.add(ua, ub, computed)
            vals[missing] = computed[inv]
    sim[differ] = vals
    return sim


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
    return distinct(np.concatenate([a.astype(np.int64) * n + rep[b], b.astype(np.int64) * n + rep[a]]))


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
    widths = band_widths(params.threshold, params.num_perm)
    pa_, pb_ = [], []
    new_local = is_new[near_pos]
    for band in range(len(widths)):  # one band's keys at a time, gathered from the rows near_pos (no copy)
        k = keys_of_band(data.sigs, data.bands, band, widths, near_pos)
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
    threshold = params.threshold - 1e-9
    member_parts: list[np.ndarray] = []
    label_parts: list[np.ndarray] = []
    keeper_parts: list[np.ndarray] = []
    sim_parts: list[np.ndarray] = []
    existing: list[int | None] = []
    policy_groups = [ps for lab, ps in groups.items() if lab not in join and len(ps) > 1]
    # Joining an existing cluster: each member must reach the threshold to that cluster's keeper;
    # the others leave together as a new group (below), as in a full run.
    join_labs = [lab for lab in groups if lab in join]
    if join_labs:
        jpos = np.array([p for lab in join_labs for p in groups[lab]], np.int64)
        jlab = np.array([i for i, lab in enumerate(join_labs) for _ in groups[lab]], np.int64)
        jkeeper = np.array([keeper_by_cluster[join[lab][1]] for lab in join_labs for _ in groups[lab]], np.int64)
        jsim = _similarity_to_keepers(ws, data, params, pool, job, rep, lookup, jpos, jkeeper)
        near = (jsim >= threshold) | (data.ids[jpos] == jkeeper)
        kept_labs = distinct(jlab[near])
        local = np.searchsorted(kept_labs, jlab[near])
        member_parts.append(data.ids[jpos[near]])
        label_parts.append(local)
        keeper_parts.append(jkeeper[near])
        sim_parts.append(jsim[near])
        existing.extend(join[join_labs[k]][1] for k in kept_labs.tolist())
        report.joined_existing += int(is_new[jpos[near]].sum())
        split_labs = distinct(jlab[~near])
        report.chains_split += int(split_labs.size)
        for k in split_labs.tolist():
            split_pos = jpos[~near & (jlab == k)]
            if split_pos.size > 1:
                policy_groups.append(split_pos.tolist())
    # New clusters: keepers by policy, every member at or above the threshold to its keeper.
    if policy_groups:
        pos = np.array([p for ps in policy_groups for p in ps], dtype=np.int64)
        group = np.array([i for i, ps in enumerate(policy_groups) for _ in ps], dtype=np.int64)
        pos, new_lab, keeper_pos, sim, split = keeper_clusters(
            ws, data, params, pool, job, rep, lookup, pos, group, reviewer_keepers(con))
        report.chains_split += split
        member_parts.append(data.ids[pos])
        label_parts.append(new_lab + len(existing))
        keeper_parts.append(data.ids[keeper_pos])
        sim_parts.append(sim)
        existing.extend([None] * (int(new_lab.max()) + 1 if new_lab.size else 0))
    if not existing:
        return empty
    member, label = np.concatenate(member_parts), np.concatenate(label_parts)
    keeper, sim = np.concatenate(keeper_parts), np.concatenate(sim_parts)
    # Method 'exact' when every member equals its keeper's text.
    mpos, kpos = data.index_of(member), np.clip(data.index_of(keeper), 0, n - 1)
    same = (member == keeper) | ((data.ids[kpos] == keeper) & (rep[mpos] == rep[kpos]))
    exact = np.ones(len(existing), bool)
    np.logical_and.at(exact, label, same)
    method = ["exact" if e else "near" for e in exact]
    # chosen_by is not written for joined clusters (they keep theirs); new ones are the policy's.
    return Plan(member, label, keeper, sim, method, ["policy"] * len(existing), existing)


def _similarity_to_keepers(ws, data: Sigs, params: DedupParams, pool: Workers, job: Job, rep: np.ndarray,
                           lookup: PairLookup, member_pos: np.ndarray, keeper_ids: np.ndarray) -> np.ndarray:
    """Similarity of members (positions) to the keepers of existing clusters (sample ids; a keeper
    without a valid signature here is compared by id)."""
    n = data.ids.size
    member = data.ids[member_pos]
    kpos = data.index_of(keeper_ids)
    keeper_known = (kpos < n) & (data.ids[np.clip(kpos, 0, n - 1)] == keeper_ids)
    sim = np.ones(member.size)
    ra = rep[member_pos]
    rb = np.where(keeper_known, rep[np.clip(kpos, 0, n - 1)], -1)
    differ = (ra != rb) & (member != keeper_ids)
    if differ.any():
        found, vals = lookup.get(ra[differ], np.maximum(rb[differ], 0))
        found &= rb[differ] >= 0
        miss = ~found
        if miss.any():
            vals[miss] = similarities(ws, params, member[differ][miss], keeper_ids[differ][miss], data, pool, job) \
                if params.verify else _estimate_with_keepers(ws.con, params, data, member[differ][miss], keeper_ids[differ][miss])
        sim[differ] = vals
    return sim


def _estimate_with_keepers(con, params: DedupParams, data: Sigs, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """MinHash estimates where a keeper's signature may not be loaded (it always is: all stored)."""
    ia, ib = data.index_of(a), np.clip(data.index_of(b), 0, data.ids.size - 1)
    return estimates_at(data.sigs, ia, ib)


