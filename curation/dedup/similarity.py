"""How similar two samples are: the exact Jaccard of their shingle sets (with `verify`, computed
in worker processes) or the MinHash estimate from their signatures, and a lookup of the pairs
already computed in a run."""
from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np

from .. import normalize as norm
from .. import shingles as sh
from ..jobs import Job
from ..workers import Workers
from .params import DedupParams
from .signatures import Sigs

PAIR_CHUNK = 10000      # candidate pairs per verification task


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
def fetch_texts(con, params: DedupParams, ids: np.ndarray) -> list[str]:
    """The compared text of each sample id (params.fields), in the order of `ids`."""
    rows = con.execute(
        f"SELECT s.id, {norm.field_text_sql(params.fields)} FROM samples s WHERE s.id IN (SELECT unnest(?))",
        [ids.tolist()],
    ).fetchall()
    by_id = {r[0]: r[1] or "" for r in rows}
    return [by_id.get(int(i), "") for i in ids]


def similarities(ws, params: DedupParams, a_ids: np.ndarray, b_ids: np.ndarray, data: Sigs,
                 pool: Workers, job: Job) -> np.ndarray:
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
            yield (fetch_texts(ws.con, params, uniq), inv[:pa_.size], inv[pa_.size:], params.shingle)

    return np.concatenate(list(pool.stream(jaccard_chunk, tasks(), job)))


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
