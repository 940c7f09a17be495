"""How similar two samples are: the exact Jaccard of their shingle sets (with `verify`) or the
MinHash estimate from their signatures, and a lookup of the pairs already computed in a run.

Verification is in bulk. Most LSH candidates are chance pairs far below the threshold (at t=0.7 the
LSH needs 4-row bands, and two unrelated answers on one topic share a band now and then), so the
MinHash estimate, 128 byte compares a pair, sorts them first: a pair whose estimate lies more than
COVERAGE_MARGIN below the threshold keeps the estimate (3.7 standard deviations at 0.7: a pair
truly at the threshold is lost about once in 10,000). The rest get their exact Jaccard from
ShingleSets: each compared sample is normalised and shingled once per run, in the worker pool,
and every pair, in verification, chain splitting and the keeper choice, is counted from those sets
(a sparse row product, no text fetched twice)."""
from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np

from .. import normalize as norm
from .. import shingles as sh
from ..jobs import Job
from ..workers import Workers
from .params import DedupParams
from .signatures import Sigs

PAIR_CHUNK = 10000      # candidate pairs per verification task (jaccard_chunk)
SET_CHUNK = 4000        # samples per shingle-set task
PAIR_BLOCK = 65536      # pairs per sparse product (memory: ~10 MB a block per 100 shingles a sample)
COVERAGE_MARGIN = 0.15  # a pair whose MinHash estimate is this far below the threshold is far (3.7 sd at 0.7)


# -- worker side (no DuckDB here) ------------------------------------------------------------------
def jaccard_chunk(texts: Sequence[str], left: np.ndarray, right: np.ndarray, shingle: int) -> np.ndarray:
    """Exact Jaccard of text pairs (indices into `texts`)."""
    sets: list[Any] = []
    # Shingle in slices: shingle_hashes holds ~60 bytes per character of its input at its peak.
    for s in range(0, len(texts), 2000):
        hashes, offsets = sh.shingle_hashes([norm.normalize(t) for t in texts[s:s + 2000]], shingle)
        sets.extend(np.unique(hashes[offsets[i]:offsets[i + 1]]) for i in range(offsets.size - 1))
    return np.fromiter((sh.jaccard(sets[a], sets[b]) for a, b in zip(left, right)), dtype=np.float64, count=len(left))


def set_chunk(texts: Sequence[str], shingle: int) -> tuple[np.ndarray, np.ndarray]:
    """(sizes, hashes): the sorted distinct shingle hashes of each raw text, concatenated."""
    from .signatures import distinct_rows

    return distinct_rows(*sh.shingle_hashes([norm.normalize(t) for t in texts], shingle))


# -- main process ---------------------------------------------------------------------------------
def fetch_texts(con, params: DedupParams, ids: np.ndarray) -> list[str]:
    """The compared text of each sample id (params.fields), in the order of `ids`."""
    rows = con.execute(
        f"SELECT s.id, {norm.field_text_sql(params.fields)} FROM samples s WHERE s.id IN (SELECT unnest(?))",
        [ids.tolist()],
    ).fetchall()
    by_id = {r[0]: r[1] or "" for r in rows}
    return [by_id.get(int(i), "") for i in ids]


class ShingleSets:
    """Sorted distinct shingle hashes of the samples compared in one run, by sample id (CSR rows),
    computed once each and kept for the run's later comparisons."""

    def __init__(self) -> None:
        self.ids = np.zeros(0, np.int64)
        self.indptr = np.zeros(1, np.int64)
        self.hashes = np.zeros(0, np.uint32)
        self._matrix = None

    @classmethod
    def from_blocks(cls, ids: np.ndarray, sizes: np.ndarray, hashes: np.ndarray) -> "ShingleSets":
        """From ids in increasing order, each set's size, and the sets concatenated."""
        out = cls()
        out.ids, out.hashes = ids, hashes
        out.indptr = np.zeros(ids.size + 1, np.int64)
        np.cumsum(sizes, out=out.indptr[1:])
        return out

    def ensure(self, ws, params: DedupParams, ids: np.ndarray, pool: Workers, job: Job) -> None:
        """Compute the sets of `ids` not held yet (in the pool; texts read here, in the main process)."""
        need = np.setdiff1d(np.unique(ids), self.ids)
        if need.size == 0:
            return

        def tasks() -> Iterator[tuple]:
            for s in range(0, need.size, SET_CHUNK):
                yield (fetch_texts(ws.con, params, need[s:s + SET_CHUNK]), params.shingle)

        parts = list(pool.stream(set_chunk, tasks(), job))
        sizes = np.concatenate([np.diff(self.indptr)] + [p[0] for p in parts])
        hashes = np.concatenate([self.hashes] + [p[1] for p in parts])
        ids_all = np.concatenate([self.ids, need])
        order = np.argsort(ids_all, kind="stable")
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])[order]
        sizes = sizes[order]
        indptr = np.zeros(order.size + 1, np.int64)
        np.cumsum(sizes, out=indptr[1:])
        pos = np.arange(int(indptr[-1]), dtype=np.int64) - np.repeat(indptr[:-1] - starts, sizes)
        self.ids, self.indptr, self.hashes, self._matrix = ids_all[order], indptr, hashes[pos], None

    def jaccard(self, a_ids: np.ndarray, b_ids: np.ndarray) -> np.ndarray:
        """Exact Jaccard of each pair (ids held here; two empty sets count as different)."""
        from scipy.sparse import csr_matrix

        matrix = self._matrix
        if matrix is None:
            matrix = self._matrix = csr_matrix((np.ones(self.hashes.size, np.int8), self.hashes.astype(np.int64),
                                                self.indptr), shape=(self.ids.size, 1 << 32))
        ra, rb = np.searchsorted(self.ids, a_ids), np.searchsorted(self.ids, b_ids)
        size = np.diff(self.indptr)
        out = np.zeros(ra.size, np.float64)
        for s in range(0, ra.size, PAIR_BLOCK):
            a, b = ra[s:s + PAIR_BLOCK], rb[s:s + PAIR_BLOCK]
            inter = matrix[a].multiply(matrix[b]).getnnz(axis=1)
            union = size[a] + size[b] - inter
            out[s:s + PAIR_BLOCK] = np.where((size[a] > 0) & (size[b] > 0), inter / np.maximum(union, 1), 0.0)
        return out


def estimates(data: Sigs, a_ids: np.ndarray, b_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(MinHash estimate of each pair, whether both samples have a signature in `data`)."""
    n = data.ids.size
    ia, ib = np.clip(data.index_of(a_ids), 0, max(n - 1, 0)), np.clip(data.index_of(b_ids), 0, max(n - 1, 0))
    known = (data.ids[ia] == a_ids) & (data.ids[ib] == b_ids) if n else np.zeros(a_ids.size, bool)
    out = np.zeros(a_ids.size, np.float64)
    for s in range(0, a_ids.size, PAIR_BLOCK):
        if n:
            agree = np.count_nonzero(data.sigs[ia[s:s + PAIR_BLOCK]] == data.sigs[ib[s:s + PAIR_BLOCK]], axis=1)
            out[s:s + PAIR_BLOCK] = agree / data.sigs.shape[1]
    return out, known


def similarities(ws, params: DedupParams, a_ids: np.ndarray, b_ids: np.ndarray, data: Sigs,
                 pool: Workers, job: Job) -> np.ndarray:
    """Similarity of each pair of sample ids: with `verify` the exact Jaccard, except for pairs whose
    estimate is far below the threshold (they keep the estimate), else the MinHash estimate."""
    if a_ids.size == 0:
        return np.zeros(0, np.float64)
    est, known = estimates(data, a_ids, b_ids)
    if not params.verify:
        return est
    close = ~known | (est >= params.threshold - COVERAGE_MARGIN)
    if close.any():
        if data.shingle_sets is None:
            data.shingle_sets = ShingleSets()
        sets = data.shingle_sets
        sets.ensure(ws, params, np.concatenate([a_ids[close], b_ids[close]]), pool, job)
        est[close] = sets.jaccard(a_ids[close], b_ids[close])
    return est


class PairLookup:
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
