"""The exact shingle sets of the samples compared in one dedup run (ShingleSets): each sample is
normalised and shingled once per run, in the worker pool, and every exact Jaccard of the run is
counted from these sets (curation/dedup/similarity.py)."""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from .. import normalize as norm
from .. import normalize_bulk
from .. import shingles as sh
from ..arrow_buffers import int64s
from ..distinct import distinct
from ..jobs import Job
from ..text_kernels import jaccard_merger
from ..workers import Workers
from .params import DedupParams

SET_CHUNK = 4000        # samples per shingle-set task
PAIR_BLOCK = 65536      # pairs per block of MinHash estimates (similarity.estimates)
PAIR_HASHES = 4_000_000  # hashes of each side per block of exact Jaccards (~240 MB of working memory)


def distinct_rows(hashes: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sizes, hashes): each text's sorted distinct shingle hashes, concatenated."""
    count = offsets.size - 1
    row = np.repeat(np.arange(count, dtype=np.uint64), np.diff(offsets))
    keys = np.sort((row << np.uint64(32)) | hashes.astype(np.uint64))
    keep = np.ones(keys.size, bool)
    keep[1:] = keys[1:] != keys[:-1]
    keys = keys[keep]
    sizes = np.bincount((keys >> np.uint64(32)).astype(np.int64), minlength=count)
    return sizes, (keys & np.uint64(0xFFFFFFFF)).astype(np.uint32)


# -- worker side (no DuckDB here)
def set_chunk(texts: "Sequence[str] | normalize_bulk.Utf8Texts", shingle: int) -> tuple[np.ndarray, np.ndarray]:
    """(sizes, hashes): the sorted distinct shingle hashes of each raw text, concatenated."""
    if not texts:
        return np.zeros(0, np.int64), np.zeros(0, np.uint32)
    return distinct_rows(*sh.codepoint_shingle_hashes(*normalize_bulk.normalized_codepoints(texts), shingle))


# -- main process
def fetch_utf8(con, params: DedupParams, ids: np.ndarray) -> "normalize_bulk.Utf8Texts | list[str]":
    """fetch_texts for sorted distinct `ids`, as Arrow's UTF-8 buffers: no Python string per row
    here, in the pickle to the worker or in the worker (at 1M real rows verification reads ~500k
    texts). Ids that are gone (deleted meanwhile) take fetch_texts, which reads them as ''."""
    if not ids.size:
        return []
    tbl = con.sql(
        f"SELECT s.id, {norm.field_text_sql(params.fields)} FROM samples s "
        "WHERE s.id BETWEEN ? AND ? AND s.id IN (SELECT unnest(?)) ORDER BY s.id",
        params=[int(ids.min()), int(ids.max()), ids.tolist()],
    ).to_arrow_table()
    if not np.array_equal(int64s(tbl.column(0)), ids):
        return fetch_texts(con, params, ids)
    return normalize_bulk.Utf8Texts.from_arrow(tbl.column(1))


def fetch_texts(con, params: DedupParams, ids: np.ndarray) -> list[str]:
    """The compared text of each sample id (params.fields), in the order of `ids`.

    The id range is spelled out beside the IN list: DuckDB then skips every row group outside it
    (zone maps), where the IN list alone made each call scan the whole table. Verification calls
    this once per 4,000 ids, sorted, so a call's range is narrow: at 10M samples under an 8 GB
    limit the full scans read 340 GB from disk in 15 minutes; at 1M rows, 10 calls take 0.19 s
    instead of 0.29 warm and 0.28 instead of 1.13 cold."""
    if not ids.size:
        return []
    rows = con.execute(
        f"SELECT s.id, {norm.field_text_sql(params.fields)} FROM samples s "
        "WHERE s.id BETWEEN ? AND ? AND s.id IN (SELECT unnest(?))",
        [int(ids.min()), int(ids.max()), ids.tolist()],
    ).fetchall()
    by_id = {r[0]: r[1] or "" for r in rows}
    return [by_id.get(int(i), "") for i in ids]


class ShingleSets:
    """Sorted distinct shingle hashes of the samples compared in one run (CSR rows, in the order
    they were computed; `ids`/`rows` find a sample's row), computed once each and kept for the
    run's later comparisons.

    4 bytes a shingle and nothing else is kept: at 10M samples about 1.2M are compared (~200M
    shingles, 0.8 GB). The scipy CSR matrix used before (int64 column indices for the 2^32 hash
    space, plus the hashes, plus three copies while merging) took ~13 bytes a shingle and got the
    10M run killed under its 8 GiB cap (benches/results/scale.md). Intersections are counted per
    block of pairs from sorted keys (`jaccard`), with a bounded working set."""

    def __init__(self) -> None:
        self.ids = np.zeros(0, np.int64)     # sorted sample ids held
        self.rows = np.zeros(0, np.int64)    # row of each id in indptr / hashes
        self.indptr = np.zeros(1, np.int64)
        self.hashes = np.zeros(0, np.uint32)

    def ensure(self, ws, params: DedupParams, ids: np.ndarray, pool: Workers, job: Job) -> None:
        """Compute the sets of `ids` not held yet (in the pool; texts read here, in the main process)."""
        need = np.setdiff1d(distinct(ids), self.ids, assume_unique=True)
        if need.size == 0:
            return

        def tasks() -> Iterator[tuple]:
            for s in range(0, need.size, SET_CHUNK):
                yield (fetch_utf8(ws.con, params, need[s:s + SET_CHUNK]), params.shingle)

        size_parts, hash_parts = [np.diff(self.indptr)], [self.hashes]
        for sizes, hashes in pool.stream(set_chunk, tasks(), job):
            size_parts.append(sizes)
            hash_parts.append(hashes)
        first_new = self.indptr.size - 1
        sizes = np.concatenate(size_parts)
        self.indptr = np.zeros(sizes.size + 1, np.int64)
        np.cumsum(sizes, out=self.indptr[1:])
        self.hashes = np.concatenate(hash_parts)
        del hash_parts
        ids = np.concatenate([self.ids, need])
        rows = np.concatenate([self.rows, np.arange(first_new, first_new + need.size, dtype=np.int64)])
        order = np.argsort(ids, kind="stable")
        self.ids, self.rows = ids[order], rows[order]

    def _keys(self, rows: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(pair << 32 | hash, pair) of every hash of `rows`, pair = the position in `rows`: sorted,
        as each row's hashes are sorted and distinct."""
        total = int(sizes.sum())
        pair = np.repeat(np.arange(rows.size, dtype=np.uint64), sizes)
        ends = np.cumsum(sizes)
        at = np.arange(total, dtype=np.int64) - np.repeat(ends - sizes - self.indptr[rows], sizes)
        return (pair << np.uint64(32)) | self.hashes[at].astype(np.uint64), pair

    def jaccard(self, a_ids: np.ndarray, b_ids: np.ndarray) -> np.ndarray:
        """Exact Jaccard of each pair (ids held here; two empty sets count as different). Compiled:
        one merge of the two sorted rows a pair (344k pairs of ~170 shingles at 1M real rows: 0.3 s
        instead of the numpy blocks' 2.8 s); without numba, the blocks below."""
        ra = self.rows[np.searchsorted(self.ids, a_ids)]
        rb = self.rows[np.searchsorted(self.ids, b_ids)]
        merge = jaccard_merger()
        if merge is not None:
            out = np.empty(ra.size, np.float64)
            merge(self.indptr, self.hashes, ra, rb, out)
            return out
        size = np.diff(self.indptr)
        sa, sb = size[ra], size[rb]
        out = np.zeros(ra.size, np.float64)
        # blocks of about PAIR_HASHES hashes of each side (~60 bytes a hash of working memory)
        cum = np.cumsum(np.maximum(sa, sb))
        s = 0
        while s < ra.size:
            e = max(s + 1, int(np.searchsorted(cum, (cum[s - 1] if s else 0) + PAIR_HASHES, side="right")))
            ka, pair = self._keys(ra[s:e], sa[s:e])
            kb, _ = self._keys(rb[s:e], sb[s:e])
            if kb.size and ka.size:
                pos = np.minimum(np.searchsorted(kb, ka), kb.size - 1)
                inter = np.bincount(pair[kb[pos] == ka].astype(np.int64), minlength=e - s)
            else:
                inter = np.zeros(e - s, np.int64)
            union = sa[s:e] + sb[s:e] - inter
            out[s:e] = np.where((sa[s:e] > 0) & (sb[s:e] > 0), inter / np.maximum(union, 1), 0.0)
            s = e
        return out
