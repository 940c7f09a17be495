"""How similar two samples are: the exact Jaccard of their shingle sets (with `verify`) or the
MinHash estimate from their signatures, and a lookup of the pairs already computed in a run.

Verification is in bulk. Most LSH candidates are chance pairs far below the threshold (at t=0.7 the
LSH needs 4-row bands, and two unrelated answers on one topic share a band now and then), so the
MinHash estimate, 128 byte compares a pair, sorts them first: a pair whose estimate lies more than
COVERAGE_MARGIN below the threshold keeps the estimate (3.7 standard deviations at 0.7: a pair
truly at the threshold is lost about once in 10,000), and so does a pair whose estimate lies more
than COVERAGE_MARGIN above it (4.2 sd or more: the estimate's spread narrows towards 1). Those are
the near-copies: at t=0.7 on the 1M realistic rows, 132,484 of the 284,415 pairs within reach of
the threshold, and none of them was below it by its exact Jaccard (nor at 0.8, 54,781 of 226,957).
The rest get their exact Jaccard from
ShingleSets: each compared sample is normalised and shingled once per run, in the worker pool,
and every pair, in verification, chain splitting and the keeper choice, is counted from those sets
(a sparse row product, no text fetched twice)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .. import normalize as norm
from .. import shingles as sh
from ..jobs import Job
from ..text_kernels import row_agreement
from ..workers import Workers
from .params import DedupParams
from .shingle_sets import PAIR_BLOCK, ShingleSets
from .signatures import Sigs, gather_rows

PAIR_CHUNK = 10000      # candidate pairs per verification task (jaccard_chunk)
COVERAGE_MARGIN = 0.15  # a pair whose MinHash estimate is this far from the threshold is clearly on its side (3.7 sd at 0.7)


# -- worker side (no DuckDB here) ------------------------------------------------------------------
def jaccard_chunk(texts: Sequence[str], left: np.ndarray, right: np.ndarray, shingle: int) -> np.ndarray:
    """Exact Jaccard of text pairs (indices into `texts`)."""
    sets: list[Any] = []
    # Shingle in slices: shingle_hashes holds ~60 bytes per character of its input at its peak.
    for s in range(0, len(texts), 2000):
        hashes, offsets = sh.shingle_hashes([norm.normalize(t) for t in texts[s:s + 2000]], shingle)
        sets.extend(np.unique(hashes[offsets[i]:offsets[i + 1]]) for i in range(offsets.size - 1))
    return np.fromiter((sh.jaccard(sets[a], sets[b]) for a, b in zip(left, right)), dtype=np.float64, count=len(left))


# -- main process ---------------------------------------------------------------------------------
def estimates(data: Sigs, a_ids: np.ndarray, b_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(MinHash estimate of each pair, whether both samples have a signature in `data`)."""
    n = data.ids.size
    if not n:
        return np.zeros(a_ids.size, np.float64), np.zeros(a_ids.size, bool)
    ia, ib = np.clip(data.index_of(a_ids), 0, n - 1), np.clip(data.index_of(b_ids), 0, n - 1)
    known = (data.ids[ia] == a_ids) & (data.ids[ib] == b_ids)
    return estimates_at(data.sigs, ia, ib), known


def estimates_at(sigs: np.ndarray, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
    """MinHash estimate of each pair of rows (ia, ib) of `sigs`. In memory, compiled: each pair's
    two rows compared where they are (1M pairs at t=0.7 on the 1M real rows: 1.14 -> 0.67 s, of which
    ~0.36 s is loading the compiled kernel). A matrix mapped from a file
    (10M samples), or without numba: both sides' rows gathered in one ascending read per block
    (see gather_rows)."""
    agree = None if isinstance(sigs, np.memmap) else row_agreement()
    if agree is not None and ia.size:
        out = np.empty(ia.size, np.float64)
        agree(sigs, np.ascontiguousarray(ia, np.int64), np.ascontiguousarray(ib, np.int64), out)
        return out
    out = np.zeros(ia.size, np.float64)
    for s in range(0, ia.size, PAIR_BLOCK):
        k = min(PAIR_BLOCK, ia.size - s)
        rows = gather_rows(sigs, np.concatenate([ia[s:s + k], ib[s:s + k]]))
        out[s:s + k] = np.count_nonzero(rows[:k] == rows[k:], axis=1) / sigs.shape[1]
    return out


def similarities(ws, params: DedupParams, a_ids: np.ndarray, b_ids: np.ndarray, data: Sigs,
                 pool: Workers, job: Job) -> np.ndarray:
    """Similarity of each pair of sample ids: with `verify` the exact Jaccard, except for pairs whose
    estimate is far from the threshold, below or above (they keep the estimate), else the MinHash
    estimate."""
    if a_ids.size == 0:
        return np.zeros(0, np.float64)
    est, known = estimates(data, a_ids, b_ids)
    if not params.verify:
        return est
    close = ~known | (np.abs(est - params.threshold) <= COVERAGE_MARGIN)
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
