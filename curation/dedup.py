"""Exact and near duplicates: find them, group them into clusters, pick the keeper of each.

Exact duplicates have equal normalised text (curation.normalize: NFKC, casefold, whitespace,
full/half-width punctuation). Near duplicates have a Jaccard similarity of their shingle sets
(curation.shingles: CJK character n-grams, word n-grams elsewhere) of at least `threshold`:
MinHash signatures (datasketch's affine32 scheme, computed in bulk with numpy in worker
processes) go through LSH banding (bands and rows chosen for recall at the threshold, see
`lsh_params`); each candidate pair is then checked by exact Jaccard on the same shingles
(`verify`, on by default) so a chance collision never merges two different samples.
Exact duplicates are grouped first and only one representative of each group enters the LSH.

Why not MinHashLSH itself for the bulk run: it keeps a Python dict entry per key and band (about
2 KB a sample: 2 GB at a million samples) and inserts ~80k keys/s. The banding here sorts one
uint64 key per sample and band with numpy, which finds the same candidate pairs (every pair that
shares a band's values) at a fraction of the memory; tests/test_dedup.py checks it against
MinHashLSH on the same signatures.

Clusters are connected components of the verified pairs (union-find). Keeper policy, applied in
this order until one member wins:
  1. a reviewer's choice (`set_keeper`; kept across re-runs),
  2. status: approved, then pending, then rejected,
  3. quality: fewer quality flags, then higher judge_score (no score counts as lowest),
  4. the longer answer (characters),
  5. the earlier import (smaller sample id).
Every other member gets samples.duplicate_of = keeper: it stays in the workspace and leaves every
split (export skips duplicate_of). dup_members.similarity is each member's Jaccard similarity to
the keeper (exact when verified, else the MinHash estimate; 1.0 for exact duplicates).

Each run is one operation (kind 'dedup') and undoable: it saves what it replaces in the
dup_undo_* tables and names `undo_operation` as its undo handler. A full run replaces every
earlier cluster (whatever fields they used) but keeps reviewer keeper choices. A run that would
change nothing (the same clusters with the same parameters, an incremental check that finds no new
duplicate, a keeper already chosen) records no operation: its op_id is None. Signatures are
stored in minhash_signatures keyed by the parameters, so re-runs and `check_incremental` only
hash samples that are new or edited. Only the main process touches DuckDB; all writes happen in
one transaction at the end, so a cancelled or interrupted run leaves the workspace as it was.
"""
from __future__ import annotations

import functools
import json
import multiprocessing
import os
import signal
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa

from . import normalize as norm
from . import shingles as sh
from .errors import NotFound, StudioError
from .jobs import Job, null_job

if TYPE_CHECKING:
    from .workspace import Workspace

DEFAULT_THRESHOLD = 0.8
DEFAULT_NUM_PERM = 128
DEFAULT_SHINGLE = sh.DEFAULT_SHINGLE
CHUNK = 4000            # samples per worker task (a few MB of text)
PAIR_CHUNK = 10000      # candidate pairs per verification task
POOL_MIN = 20000        # below this many samples to hash, work in this process (spawning costs ~0.5 s)
UNDO_HANDLER = "curation.dedup:undo_operation"
_STATUS_RANK = {"approved": 0, "pending": 1, "rejected": 2}


@dataclass(frozen=True)
class DedupParams:
    threshold: float = DEFAULT_THRESHOLD
    fields: str = "sample"
    num_perm: int = DEFAULT_NUM_PERM
    shingle: int = DEFAULT_SHINGLE
    verify: bool = True

    def __post_init__(self) -> None:
        norm.check_fields(self.fields)
        if not 0.0 < self.threshold <= 1.0:
            raise StudioError(f"dedup threshold must be in (0, 1], got {self.threshold}.")
        if not 16 <= self.num_perm <= 1024:
            raise StudioError(f"--num-perm must be between 16 and 1024, got {self.num_perm}.")
        if not 1 <= self.shingle <= 16:
            raise StudioError(f"--shingle must be between 1 and 16, got {self.shingle}.")

    @property
    def signature_key(self) -> str:
        """What a stored signature depends on (threshold and verify do not change it)."""
        # v2: whole samples are shingled turn by turn with role marks (curation/normalize.py)
        return f"v2 fields={self.fields} num_perm={self.num_perm} shingle={self.shingle} seed={sh.SEED} scheme=affine32"


@dataclass
class DedupReport:
    op_id: int | None
    params: dict[str, Any]
    incremental: bool = False
    samples: int = 0              # samples compared
    signatures_computed: int = 0
    signatures_reused: int = 0
    candidate_pairs: int = 0
    verified_pairs: int = 0       # pairs at or above the threshold
    clusters: int = 0
    exact_clusters: int = 0
    near_clusters: int = 0
    duplicates: int = 0           # samples marked duplicate_of a keeper
    joined_existing: int = 0      # incremental: new samples added to clusters that existed
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- worker side (no DuckDB here) ------------------------------------------------------------------
def _ignore_sigint() -> None:
    # Ctrl-C goes to the whole process group; the main process cancels and terminates the pool.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _hash_chunk(texts: Sequence[str], shingle: int, num_perm: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(exact keys, signatures, shingle counts) of raw texts."""
    normalized = [norm.normalize(t) for t in texts]
    keys = np.fromiter((norm.exact_key(t) if t else 0 for t in normalized), dtype=np.int64, count=len(normalized))
    hashes, offsets = sh.shingle_hashes(normalized, shingle)
    sigs = sh.signatures(hashes, offsets, num_perm)
    return keys, sigs, np.diff(offsets).astype(np.int32)


def _jaccard_chunk(texts: Sequence[str], left: np.ndarray, right: np.ndarray, shingle: int) -> np.ndarray:
    """Exact Jaccard of text pairs (indices into `texts`)."""
    sets: list[np.ndarray] = []  # the sorted unique shingle hashes of each text
    # Shingle in slices: shingle_hashes holds ~60 bytes per character of its input at its peak.
    for s in range(0, len(texts), 2000):
        hashes, offsets = sh.shingle_hashes([norm.normalize(t) for t in texts[s:s + 2000]], shingle)
        sets.extend(np.unique(hashes[offsets[i]:offsets[i + 1]]) for i in range(offsets.size - 1))
    return np.fromiter((sh.jaccard(sets[a], sets[b]) for a, b in zip(left, right)), dtype=np.float64, count=len(left))


class _Workers:
    """A spawn pool (fork is unsafe beside DuckDB's and Textual's threads) or, for small work,
    this process. `stream` keeps a few tasks in flight and yields results in order; the
    arguments are produced lazily in the calling thread, so DuckDB stays in the main process."""

    def __init__(self, processes: int):
        self.processes = processes
        self.pool: Any = None  # a multiprocessing Pool once started

    def _ensure(self):
        if self.pool is None and self.processes > 1:
            ctx = multiprocessing.get_context("spawn")
            self.pool = ctx.Pool(self.processes, initializer=_ignore_sigint)
        return self.pool

    def stream(self, fn: Callable, args: Iterable[tuple], job: Job) -> Iterator[Any]:
        pool = self._ensure()
        if pool is None:
            for a in args:
                job.check()
                yield fn(*a)
            return
        pending: deque = deque()
        it = iter(args)
        exhausted = False
        while True:
            while not exhausted and len(pending) < self.processes * 2:
                try:
                    pending.append(pool.apply_async(fn, next(it)))
                except StopIteration:
                    exhausted = True
            if not pending:
                return
            res = pending.popleft()
            while True:
                job.check()
                try:
                    yield res.get(timeout=0.2)
                    break
                except multiprocessing.TimeoutError:
                    continue

    def close(self, terminate: bool = False) -> None:
        if self.pool is not None:
            if terminate:
                self.pool.terminate()
            else:
                self.pool.close()
            self.pool.join()
            self.pool = None

    def __enter__(self) -> "_Workers":
        return self

    def __exit__(self, exc_type, *exc: object) -> None:
        self.close(terminate=exc_type is not None)


def _worker_count(workers: int | None, todo: int) -> int:
    if workers is not None:
        return max(1, workers)
    return 1 if todo < POOL_MIN else max(1, os.cpu_count() or 1)


# -- LSH banding --------------------------------------------------------------------------------
CANDIDATE_RECALL = 0.99  # chance that a pair exactly at the threshold becomes a candidate


@functools.lru_cache(maxsize=32)
def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) for the LSH: the most rows per band (fewest chance candidates) that still
    makes a pair at exactly `threshold` a candidate with probability >= CANDIDATE_RECALL.

    Not datasketch's MinHashLSH default on purpose: its equal-weight optimum for 0.8 and 128
    permutations is (9, 13), which makes a pair at 0.8 a candidate only 40% of the time (69% at
    0.85); candidates are checked against the threshold afterwards anyway (exact Jaccard, or the
    MinHash estimate with --no-verify), so extra candidates cost a little time, never accuracy."""
    for rows in range(num_perm // 2, 0, -1):
        bands = num_perm // rows
        if bands >= 2 and 1 - (1 - threshold ** rows) ** bands >= CANDIDATE_RECALL:
            return bands, rows
    return num_perm, 1


def band_keys(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One uint64 key per signature and band, shape (bands, n): equal band values, equal key."""
    out = np.empty((bands, sigs.shape[0]), dtype=np.uint64)
    for b in range(bands):
        k = np.zeros(sigs.shape[0], dtype=np.uint64)
        for j in range(b * rows, (b + 1) * rows):
            k = (k ^ sigs[:, j].astype(np.uint64)) * np.uint64(0x100000001B3)
        out[b] = sh.fmix64(k + np.uint64(b))
    return out


def _group_pairs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of positions sharing a key: each member with the group's first and with its
    predecessor (enough for connected components, at most 2(g-1) pairs per group of g)."""
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    same = np.flatnonzero(sk[1:] == sk[:-1]) + 1
    if same.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.ones(sk.size, dtype=bool)
    starts[1:] = sk[1:] != sk[:-1]
    first = np.maximum.accumulate(np.where(starts, np.arange(sk.size), 0))
    a = np.concatenate([order[same - 1], order[first[same]]])
    b = np.concatenate([order[same], order[same]])
    keep = a != b
    return a[keep], b[keep]


def _unique_pairs(a: np.ndarray, b: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    code = np.unique(lo.astype(np.int64) * n + hi)
    return code // n, code % n


def candidate_pairs(sigs: np.ndarray, threshold: float, num_perm: int) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs (i < j) among signature rows: they agree on every row of some band."""
    bands, rows = lsh_params(threshold, num_perm)
    n = sigs.shape[0]
    parts_a, parts_b = [], []
    for keys in band_keys(sigs, bands, rows):
        a, b = _group_pairs(keys)
        parts_a.append(a)
        parts_b.append(b)
    if not parts_a:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return _unique_pairs(np.concatenate(parts_a), np.concatenate(parts_b), max(n, 1))


# -- reading from the workspace (main process only) ----------------------------------------------
@dataclass
class _Sigs:
    """Per-sample hashing results, sorted by sample id."""

    ids: np.ndarray
    keys: np.ndarray
    sigs: np.ndarray
    counts: np.ndarray
    computed: np.ndarray  # bool: hashed in this run (to store)
    hashes: pa.Array | None = None  # content_hash of each sample (to store with new signatures)

    def index_of(self, sample_ids: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.ids, sample_ids)


def _stored_signatures(con, params: DedupParams, only_ids: np.ndarray | None = None) -> _Sigs:
    sql = ("SELECT m.sample_id, m.exact_key, m.shingles, m.signature FROM minhash_signatures m "
           "JOIN samples s ON s.id = m.sample_id AND s.content_hash = m.content_hash WHERE m.params = ?")
    args: list[Any] = [params.signature_key]
    if only_ids is not None:
        sql += " AND m.sample_id IN (SELECT unnest(?))"
        args.append(only_ids.tolist())
    t = con.sql(sql + " ORDER BY m.sample_id", params=args).to_arrow_table()
    n = t.num_rows
    ids = t.column(0).to_numpy().astype(np.int64) if n else np.zeros(0, np.int64)
    sigs = np.zeros((0, params.num_perm), np.uint32)
    if n:
        # Read the BLOBs straight from Arrow's buffers: every signature has the same length, so
        # a chunk's data buffer is already the (rows, num_perm) matrix.
        parts = []
        for chunk in t.column(3).chunks:
            if len(chunk) == 0:
                continue
            odt = np.int64 if pa.types.is_large_binary(chunk.type) else np.int32
            off = np.frombuffer(chunk.buffers()[1], dtype=odt)[chunk.offset:chunk.offset + len(chunk) + 1]
            raw = np.frombuffer(chunk.buffers()[2], dtype=np.uint8)[off[0]:off[-1]]
            parts.append(raw.view(np.uint32).reshape(len(chunk), params.num_perm))
        sigs = np.concatenate(parts) if len(parts) > 1 else parts[0].copy()
    return _Sigs(
        ids=ids,
        keys=t.column(1).to_numpy().astype(np.int64) if n else np.zeros(0, np.int64),
        sigs=sigs,
        counts=t.column(2).to_numpy().astype(np.int32) if n else np.zeros(0, np.int32),
        computed=np.zeros(n, dtype=bool),
    )


def _missing_sql(params: DedupParams, restrict: bool) -> str:
    sql = (f"SELECT s.id, s.content_hash, {norm.field_text_sql(params.fields)} AS t FROM samples s "
           "WHERE NOT EXISTS (SELECT 1 FROM minhash_signatures m WHERE m.sample_id = s.id "
           "AND m.params = ? AND m.content_hash = s.content_hash)")
    if restrict:
        sql += " AND s.id IN (SELECT unnest(?))"
    return sql + " ORDER BY s.id"


def _compute_missing(ws: Workspace, params: DedupParams, job: Job, workers: int | None, only_ids: np.ndarray | None,
                     pool_holder: list) -> _Sigs:
    con = ws.con
    args: list[Any] = [params.signature_key]
    if only_ids is not None:
        args.append(only_ids.tolist())
    todo = int(con.execute(f"SELECT count(*) FROM ({_missing_sql(params, only_ids is not None)})", args).fetchall()[0][0])
    job.set_message(f"hashing {todo:,} samples")
    pool = _Workers(_worker_count(workers, todo))
    pool_holder.append(pool)
    ids_parts: list[np.ndarray] = []
    hash_parts: list[pa.Array] = []

    def tasks() -> Iterator[tuple]:
        reader = con.sql(_missing_sql(params, only_ids is not None), params=args).to_arrow_reader(CHUNK)
        for batch in reader:
            ids_parts.append(batch.column(0).to_numpy().astype(np.int64))
            hash_parts.append(batch.column(1))
            yield (batch.column(2).to_pylist(), params.shingle, params.num_perm)

    # Preallocated: at a million samples the signatures are 512 MB; a list of chunks plus a
    # concatenate would hold them twice.
    keys = np.zeros(todo, np.int64)
    sigs = np.empty((todo, params.num_perm), np.uint32)
    counts = np.zeros(todo, np.int32)
    done = 0
    for k, s, c in pool.stream(_hash_chunk, tasks(), job):
        if done + k.size > todo:  # samples added meanwhile (another thread): grow
            extra = done + k.size - todo
            keys = np.concatenate([keys, np.zeros(extra, np.int64)])
            sigs = np.concatenate([sigs, np.empty((extra, params.num_perm), np.uint32)])
            counts = np.concatenate([counts, np.zeros(extra, np.int32)])
            todo += extra
        keys[done:done + k.size] = k
        sigs[done:done + k.size] = s
        counts[done:done + k.size] = c
        done += k.size
        job.advance(len(k))
    ids = np.concatenate(ids_parts) if ids_parts else np.zeros(0, np.int64)
    hashes = pa.concat_arrays(hash_parts) if hash_parts else pa.array([], pa.string())
    return _Sigs(ids, keys[:done], sigs[:done], counts[:done], np.ones(done, dtype=bool), hashes)


def _merge(a: _Sigs, b: _Sigs) -> _Sigs:
    if a.ids.size == 0:
        return b
    if b.ids.size == 0:
        return a
    ids = np.concatenate([a.ids, b.ids])
    order = np.argsort(ids, kind="stable")
    return _Sigs(ids[order], np.concatenate([a.keys, b.keys])[order], np.concatenate([a.sigs, b.sigs])[order],
                 np.concatenate([a.counts, b.counts])[order], np.concatenate([a.computed, b.computed])[order])


def _fetch_texts(con, params: DedupParams, ids: np.ndarray) -> list[str]:
    rows = con.execute(
        f"SELECT s.id, {norm.field_text_sql(params.fields)} FROM samples s WHERE s.id IN (SELECT unnest(?))",
        [ids.tolist()],
    ).fetchall()
    by_id = {r[0]: r[1] or "" for r in rows}
    return [by_id.get(int(i), "") for i in ids]


def _similarities(ws: Workspace, params: DedupParams, a_ids: np.ndarray, b_ids: np.ndarray, data: _Sigs,
                  pool: _Workers, job: Job) -> np.ndarray:
    """Similarity of each pair of sample ids: exact Jaccard with `verify`, else the MinHash estimate."""
    if a_ids.size == 0:
        return np.zeros(0, np.float64)
    if not params.verify:
        ia, ib = data.index_of(a_ids), data.index_of(b_ids)
        out = np.empty(a_ids.size, np.float64)
        for s in range(0, a_ids.size, 65536):
            out[s:s + 65536] = (data.sigs[ia[s:s + 65536]] == data.sigs[ib[s:s + 65536]]).mean(axis=1)
        return out

    def tasks() -> Iterator[tuple]:
        for s in range(0, a_ids.size, PAIR_CHUNK):
            pa_, pb_ = a_ids[s:s + PAIR_CHUNK], b_ids[s:s + PAIR_CHUNK]
            uniq, inv = np.unique(np.concatenate([pa_, pb_]), return_inverse=True)
            yield (_fetch_texts(ws.con, params, uniq), inv[:pa_.size], inv[pa_.size:], params.shingle)

    return np.concatenate(list(pool.stream(_jaccard_chunk, tasks(), job)))


# -- clustering ---------------------------------------------------------------------------------
def _components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Union-find over n nodes and the given edges: a component label per node."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    g = coo_matrix((np.ones(a.size, np.int8), (a, b)), shape=(n, n))
    return connected_components(g, directed=False)[1]


def _exact_groups(keys: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


class _PairLookup:
    """Similarities of computed pairs, looked up by (position, position)."""

    def __init__(self, n: int):
        self.n = max(n, 1)
        self.codes = np.zeros(0, np.int64)
        self.values = np.zeros(0, np.float64)

    def add(self, a: np.ndarray, b: np.ndarray, v: np.ndarray) -> None:
        code = np.minimum(a, b).astype(np.int64) * self.n + np.maximum(a, b)
        codes = np.concatenate([self.codes, code])
        values = np.concatenate([self.values, v])
        self.codes, first = np.unique(codes, return_index=True)
        self.values = values[first]

    def get(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        code = np.minimum(a, b).astype(np.int64) * self.n + np.maximum(a, b)
        pos = np.clip(np.searchsorted(self.codes, code), 0, max(self.codes.size - 1, 0))
        found = (self.codes.size > 0) & (self.codes[pos] == code) if self.codes.size else np.zeros(code.size, bool)
        return found, np.where(found, self.values[pos] if self.codes.size else 0.0, np.nan)


def _keeper_order(con, member_ids: np.ndarray, labels: np.ndarray, reviewer: set[int]) -> np.ndarray:
    """Positions of member_ids sorted by (label, keeper policy rank): the first of each label wins."""
    con.register("_members", pa.table({"id": member_ids}))
    try:
        t = con.sql(
            "SELECT m.id, s.status, s.judge_score, length(coalesce(s.answer, s.text, '')) AS alen, "
            "coalesce(q.n, 0) AS nflags FROM _members m JOIN samples s ON s.id = m.id "
            "LEFT JOIN (SELECT sample_id, count(*) AS n FROM quality_flags GROUP BY sample_id) q "
            "ON q.sample_id = m.id ORDER BY m.id"
        ).to_arrow_table()
    finally:
        con.unregister("_members")
    ids = t.column("id").to_numpy()
    pos = np.searchsorted(ids, member_ids)
    status = np.array([_STATUS_RANK.get(s, 1) for s in t.column("status").to_pylist()], dtype=np.int64)[pos]
    judge = t.column("judge_score").to_numpy(zero_copy_only=False).astype(np.float64)[pos]
    judge = np.where(np.isnan(judge), -np.inf, judge)
    alen = t.column("alen").to_numpy().astype(np.int64)[pos]
    nflags = t.column("nflags").to_numpy().astype(np.int64)[pos]
    chosen = np.isin(member_ids, np.fromiter(reviewer, dtype=np.int64, count=len(reviewer)))
    # np.lexsort: the last key is the primary one.
    return np.lexsort((member_ids, -alen, -judge, nflags, status, ~chosen, labels))


def _reviewer_keepers(con) -> set[int]:
    return {r[0] for r in con.execute("SELECT keeper_id FROM dup_clusters WHERE keeper_chosen_by = 'reviewer'").fetchall()}


@dataclass
class _Plan:
    """Clusters to write: parallel arrays over members."""

    member: np.ndarray      # sample ids
    label: np.ndarray       # cluster label per member (0..clusters-1)
    keeper: np.ndarray      # keeper sample id per member
    similarity: np.ndarray  # to the keeper
    method: list[str]       # per label
    chosen_by: list[str]    # per label
    existing_id: list[int | None] = field(default_factory=list)  # incremental: cluster joined


def _plan_full(ws: Workspace, data: _Sigs, params: DedupParams, pool: _Workers, job: Job, report: DedupReport) -> _Plan:
    n = data.ids.size
    valid = data.keys != 0
    rep, is_rep = _exact_groups(data.keys, valid)
    dup_pos = np.flatnonzero(valid & ~is_rep)
    lookup = _PairLookup(n)
    near_pos = np.flatnonzero(is_rep & (data.counts > 0))
    job.set_message("finding candidate pairs")
    ca, cb = candidate_pairs(data.sigs[near_pos], params.threshold, params.num_perm)
    ca, cb = near_pos[ca], near_pos[cb]
    report.candidate_pairs = int(ca.size)
    job.set_message(f"checking {ca.size:,} candidate pairs")
    sims = _similarities(ws, params, data.ids[ca], data.ids[cb], data, pool, job)
    lookup.add(ca, cb, sims)
    keep = sims >= params.threshold - 1e-9
    report.verified_pairs = int(keep.sum())
    ea = np.concatenate([rep[dup_pos], ca[keep]])
    eb = np.concatenate([dup_pos, cb[keep]])
    return _plan_from_edges(ws, data, params, pool, job, rep, ea, eb, lookup)


def _plan_from_edges(ws: Workspace, data: _Sigs, params: DedupParams, pool: _Workers, job: Job, rep: np.ndarray,
                     ea: np.ndarray, eb: np.ndarray, lookup: _PairLookup) -> _Plan:
    n = data.ids.size
    labels = _components(n, ea, eb)
    sizes = np.bincount(labels, minlength=n)
    members = np.flatnonzero(sizes[labels] > 1)
    _, lab = np.unique(labels[members], return_inverse=True)
    reviewer = _reviewer_keepers(ws.con)
    order = _keeper_order(ws.con, data.ids[members], lab, reviewer)
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
        vals[missing] = _similarities(ws, params, data.ids[ma], data.ids[mb], data, pool, job)
    sim[differ] = vals
    exact = np.ones(int(lab.max()) + 1 if lab.size else 0, dtype=bool)
    np.logical_and.at(exact, lab, ~differ)
    chosen = np.isin(data.ids[keeper_pos[first]], np.fromiter(reviewer, np.int64, len(reviewer)))
    return _Plan(
        member=data.ids[members], label=lab, keeper=data.ids[keeper_pos], similarity=sim,
        method=["exact" if e else "near" for e in exact],
        chosen_by=["reviewer" if c else "policy" for c in chosen],
    )


# -- writing (one transaction) ------------------------------------------------------------------
def _store_signatures(con, params: DedupParams, data: _Sigs) -> None:
    new = np.flatnonzero(data.computed)
    if new.size == 0:
        return
    ids = data.ids[new]
    con.execute("DELETE FROM minhash_signatures WHERE params = ? AND sample_id IN (SELECT unnest(?))",
                [params.signature_key, ids.tolist()])
    sigs = data.sigs if new.size == data.ids.size else data.sigs[new]
    sigs = np.ascontiguousarray(sigs)  # no copy when already contiguous
    width = params.num_perm * 4
    # Zero-copy: Arrow wraps the numpy buffer as fixed-size binary values; DuckDB stores BLOBs.
    blob = pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), new.size, [None, pa.py_buffer(sigs)])
    tbl = pa.table({"sample_id": ids, "content_hash": data.hashes, "exact_key": data.keys[new],
                    "shingles": data.counts[new], "signature": blob})
    con.register("_sigs", tbl)
    try:
        con.execute("INSERT INTO minhash_signatures (sample_id, params, content_hash, exact_key, shingles, signature) "
                    "SELECT sample_id, ?, content_hash, exact_key, shingles, signature FROM _sigs", [params.signature_key])
    finally:
        con.unregister("_sigs")


def _save_for_undo(con, op_id: int, cluster_ids: list[int] | None, sample_ids: np.ndarray | None) -> None:
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


def _write_plan(con, op_id: int, plan: _Plan, params: DedupParams) -> tuple[int, int]:
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
    for lab, joined in enumerate(existing):
        if joined is not None:
            cid[lab] = joined
    member_cid = cid[plan.label]
    sizes = np.bincount(plan.label, minlength=nlab)
    keeper_of = np.zeros(nlab, np.int64)
    keeper_of[plan.label] = plan.keeper
    new_mask = np.array([e is None for e in existing])
    if new_mask.any():
        clusters = pa.table({
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
    members = pa.table({
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


def _details(params: DedupParams, report: DedupReport, incremental: bool) -> dict[str, Any]:
    return {
        "threshold": params.threshold, "fields": params.fields, "num_perm": params.num_perm,
        "shingle": params.shingle, "verify": params.verify, "incremental": incremental,
        "undo_handler": UNDO_HANDLER,
        "undo_note": "restores dup_clusters, dup_members and samples.cluster_id/duplicate_of from the "
                     "dup_undo_* rows with this op_id; stored signatures stay (a cache)",
    }


# -- public API ---------------------------------------------------------------------------------
def find_duplicates(ws: Workspace, *, threshold: float = DEFAULT_THRESHOLD, fields: str = "sample",
                    num_perm: int = DEFAULT_NUM_PERM, shingle: int = DEFAULT_SHINGLE, verify: bool = True,
                    job: Job | None = None, workers: int | None = None) -> DedupReport:
    """Find exact and near duplicates over all samples and replace the workspace's clusters.

    `fields`: 'sample' (system prompt and every turn), 'instruction' or 'answer'. `workers`:
    processes for hashing (default: all cores when there is enough work). Returns a
    `DedupReport`; the run is one undoable operation of kind 'dedup'."""
    params = DedupParams(threshold, fields, num_perm, shingle, verify)
    job = job or null_job("dedup")
    started = time.monotonic()
    report = DedupReport(op_id=None, params=asdict(params))
    con = ws.con
    job.set_total(int(con.execute("SELECT count(*) FROM samples").fetchall()[0][0]))
    holder: list[_Workers] = []
    try:
        stored = _stored_signatures(con, params)
        job.advance(stored.ids.size)
        fresh = _compute_missing(ws, params, job, workers, None, holder)
        pool = holder[0]
        data = _merge(stored, fresh)
        report.samples = int(data.ids.size)
        report.signatures_computed = int(fresh.ids.size)
        report.signatures_reused = int(stored.ids.size)
        plan = _plan_full(ws, data, params, pool, job, report)
        job.check()
    finally:
        for p in holder:
            p.close(terminate=True)
    job.set_message("writing clusters")
    with ws.transaction() as c:
        if _same_clusters(c, plan, params):
            # A rerun that finds what is there already: record no operation (undo must revert the
            # last real change), keep only the new signatures (a cache).
            _store_signatures(c, params, fresh)
            report.clusters, report.duplicates = len(plan.method), int((plan.member != plan.keeper).sum())
            op_id = None
        else:
            op_id = _full_run_write(ws, c, plan, params, report, fresh)
    report.op_id = op_id
    report.exact_clusters = sum(1 for m in plan.method if m == "exact")
    report.near_clusters = report.clusters - report.exact_clusters
    report.seconds = time.monotonic() - started
    return report


def _same_clusters(c, plan: _Plan, params: DedupParams) -> bool:
    """Whether a full run's plan equals the stored clusters (members, keepers, similarities,
    methods, who chose the keeper, duplicate_of) and the last run used the same parameters."""
    if last_params(c) != params:
        return False
    new = pa.table({"sample_id": plan.member, "keeper_id": plan.keeper, "similarity": plan.similarity,
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


def _full_run_write(ws: Workspace, c, plan: _Plan, params: DedupParams, report: DedupReport, fresh: _Sigs) -> int:
    """Record a full run's operation and replace every cluster with the plan's; its id."""
    op_id = ws.record_operation("dedup", details=_details(params, report, False),
                                sample_count=int((plan.member != plan.keeper).sum()))
    _save_for_undo(c, op_id, None, None)
    c.execute("DELETE FROM dup_members")
    c.execute("DELETE FROM dup_clusters")
    c.execute("UPDATE samples SET cluster_id = NULL, duplicate_of = NULL "
              "WHERE cluster_id IS NOT NULL OR duplicate_of IS NOT NULL")
    report.clusters, report.duplicates = _write_plan(c, op_id, plan, params)
    _store_signatures(c, params, fresh)
    c.execute("UPDATE operations SET details = ? WHERE id = ?",
              [json.dumps({**_details(params, report, False), "clusters": report.clusters,
                           "duplicates": report.duplicates}), op_id])
    return op_id


def last_params(con) -> DedupParams | None:
    """Parameters of the latest dedup run that was not undone."""
    row = con.execute("SELECT details FROM operations WHERE kind = 'dedup' AND undone_by IS NULL "
                      "ORDER BY id DESC LIMIT 1").fetchall()
    if not row:
        return None
    row = row[0]
    d = json.loads(row[0]) if isinstance(row[0], str) else row[0]
    return DedupParams(d.get("threshold", DEFAULT_THRESHOLD), d.get("fields", "sample"),
                       d.get("num_perm", DEFAULT_NUM_PERM), d.get("shingle", DEFAULT_SHINGLE), d.get("verify", True))


def check_incremental(ws: Workspace, sample_ids: Iterable[int] | None = None, job: Job | None = None, *,
                      threshold: float | None = None, fields: str | None = None, num_perm: int | None = None,
                      shingle: int | None = None, verify: bool | None = None,
                      workers: int | None = None,
                      ignore_pairs: Mapping[int, Iterable[int]] | None = None) -> DedupReport:
    """Check new samples against everything already hashed, without re-hashing old samples.

    New samples: `sample_ids` if given, else every sample without a valid stored signature for
    the parameters (those of the last dedup run unless overridden). Their signatures are
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
    base = last_params(ws.con) or DedupParams()
    params = DedupParams(
        base.threshold if threshold is None else threshold, base.fields if fields is None else fields,
        base.num_perm if num_perm is None else num_perm, base.shingle if shingle is None else shingle,
        base.verify if verify is None else verify)
    job = job or null_job("dedup")
    started = time.monotonic()
    report = DedupReport(op_id=None, params=asdict(params), incremental=True)
    con = ws.con
    only = None if sample_ids is None else np.unique(np.fromiter(sample_ids, dtype=np.int64))
    holder: list[_Workers] = []
    try:
        fresh = _compute_missing(ws, params, job, workers, only, holder)
        pool = holder[0]
        stored = _stored_signatures(con, params)
        if only is not None:
            # Requested samples that already had a signature count as new too.
            mask = np.isin(stored.ids, only)
            new_stored = _Sigs(stored.ids[mask], stored.keys[mask], stored.sigs[mask], stored.counts[mask], stored.computed[mask])
            stored = _Sigs(stored.ids[~mask], stored.keys[~mask], stored.sigs[~mask], stored.counts[~mask], stored.computed[~mask])
            new = _merge(fresh, new_stored)
        else:
            new = _Sigs(fresh.ids, fresh.keys, fresh.sigs, fresh.counts, fresh.computed)
        # Samples already placed in a cluster stay where they are.
        placed = {r[0] for r in con.execute("SELECT id FROM samples WHERE cluster_id IS NOT NULL").fetchall()}
        if placed and new.ids.size:
            m = ~np.isin(new.ids, np.fromiter(placed, np.int64, len(placed)))
            new = _Sigs(new.ids[m], new.keys[m], new.sigs[m], new.counts[m], new.computed[m])
        report.signatures_computed = int(fresh.ids.size)
        report.signatures_reused = int(stored.ids.size)
        report.samples = int(new.ids.size)
        data = _merge(stored, new)
        is_new = np.isin(data.ids, new.ids)
        plan = _plan_incremental(ws, data, is_new, params, pool, job, report, ignore_pairs)
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
            _save_for_undo(c, op_id, touched, plan.member)
            report.clusters, report.duplicates = _write_plan(c, op_id, plan, params)
        # else no new sample is a duplicate: nothing changes, no operation (undo must revert the
        # last real change); the new signatures are kept all the same (a cache).
        _store_signatures(c, params, fresh)
    report.op_id = op_id
    report.exact_clusters = sum(1 for m, e in zip(plan.method, plan.existing_id) if m == "exact" and e is None)
    report.near_clusters = sum(1 for m, e in zip(plan.method, plan.existing_id) if m == "near" and e is None)
    report.seconds = time.monotonic() - started
    return report


def _ignored_codes(data: _Sigs, rep: np.ndarray, ignore_pairs: Mapping[int, Iterable[int]] | None) -> np.ndarray:
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


def _plan_incremental(ws: Workspace, data: _Sigs, is_new: np.ndarray, params: DedupParams, pool: _Workers, job: Job,
                      report: DedupReport, ignore_pairs: Mapping[int, Iterable[int]] | None = None) -> _Plan:
    n = data.ids.size
    valid = data.keys != 0
    new_pos = np.flatnonzero(is_new & valid)
    empty = _Plan(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), [], [], [])
    if new_pos.size == 0:
        return empty
    # Exact: a new sample equal to any sample (old or new) links to the first such sample.
    rep, _ = _exact_groups(data.keys, valid)
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
        a, b = _group_pairs(k[sub])
        a, b = sub[a], sub[b]
        m = new_local[a] | new_local[b]
        pa_.append(a[m])
        pb_.append(b[m])
    ca, cb = _unique_pairs(np.concatenate(pa_), np.concatenate(pb_), max(near_pos.size, 1)) if pa_ else (np.zeros(0, np.int64),) * 2
    ca, cb = near_pos[ca], near_pos[cb]
    # Exact-duplicate pairs already link these; skip pairs inside one exact group, and ignored pairs.
    m = (rep[ca] != rep[cb]) & ~_is_ignored(ignored, rep, ca, cb)
    ca, cb = ca[m], cb[m]
    report.candidate_pairs = int(ca.size)
    sims = _similarities(ws, params, data.ids[ca], data.ids[cb], data, pool, job)
    lookup = _PairLookup(n)
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
    clustered = con.execute("SELECT s.id, s.cluster_id, c.keeper_id FROM samples s JOIN dup_clusters c ON c.id = s.cluster_id "
                            "WHERE s.cluster_id IS NOT NULL").fetchall()
    cluster_of = {r[0]: (r[1], r[2]) for r in clustered}
    labels = _components(n, ea_, eb_)
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
    plan_member: list[int] = []
    plan_label: list[int] = []
    plan_keeper: list[int] = []
    method: list[str] = []
    chosen: list[str] = []
    existing: list[int | None] = []
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
        order = _keeper_order(con, data.ids[pos], lab_local, _reviewer_keepers(con))
        pos, lab_local = pos[order], lab_local[order]
        first = np.ones(pos.size, bool)
        first[1:] = lab_local[1:] != lab_local[:-1]
        keeper_pos = pos[first][lab_local]
        base = len(method)
        for _ in range(len(pending_policy)):
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
            vals[miss] = _similarities(ws, params, member[differ][miss], keeper[differ][miss], data, pool, job) \
                if params.verify else _estimate_with_keepers(con, params, data, member[differ][miss], keeper[differ][miss])
        sim[differ] = vals
    exact = np.ones(len(method), bool)
    np.logical_and.at(exact, label, ~differ)
    method = ["exact" if e else "near" for e in exact]
    return _Plan(member, label, keeper, sim, method, chosen, existing)


def _estimate_with_keepers(con, params: DedupParams, data: _Sigs, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """MinHash estimates where a keeper's signature may not be loaded (it always is: all stored)."""
    ia, ib = data.index_of(a), np.clip(data.index_of(b), 0, data.ids.size - 1)
    return (data.sigs[ia] == data.sigs[ib]).mean(axis=1)


def _cluster_shingle(con, cluster_op: int | None) -> int:
    if cluster_op is None:
        return DEFAULT_SHINGLE
    rows = con.execute("SELECT details FROM operations WHERE id = ?", [cluster_op]).fetchall()
    row = rows[0] if rows else None
    if not row or row[0] is None:
        return DEFAULT_SHINGLE
    d = json.loads(row[0]) if isinstance(row[0], str) else row[0]
    return int(d.get("shingle", DEFAULT_SHINGLE))


def set_keeper(ws: Workspace, cluster_id: int, sample_id: int, *, reason: str | None = None) -> int | None:
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
        texts = _fetch_texts(con, params, ids)
        k = members.index(int(sample_id))
        sims = _jaccard_chunk(texts, np.full(ids.size, k), np.arange(ids.size), params.shingle)
        sims[k] = 1.0
    if _keeper_unchanged(con, int(cluster_id), int(sample_id), ids, sims):
        return None  # already this keeper, chosen by a reviewer: no operation for undo to meet
    with ws.transaction() as c:
        op_id = ws.record_operation("keeper", reason=reason, sample_count=len(members),
                                    details={"cluster_id": int(cluster_id), "keeper_id": int(sample_id),
                                             "undo_handler": UNDO_HANDLER})
        _save_for_undo(c, op_id, [int(cluster_id)], ids)
        c.execute("UPDATE dup_clusters SET keeper_id = ?, keeper_chosen_by = 'reviewer', resolved = TRUE WHERE id = ?",
                  [int(sample_id), int(cluster_id)])
        c.register("_sims", pa.table({"sample_id": ids, "similarity": sims}))
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


def undo_operation(ws: Workspace, op) -> None:
    """Undo handler for 'dedup' and 'keeper' operations (runs inside review.undo's transaction):
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
