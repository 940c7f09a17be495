"""The signature store: per-sample exact keys, shingle counts and MinHash signatures.

Signatures are computed in bulk in worker processes and stored in minhash_signatures keyed by
DedupParams.signature_key and the sample's content_hash, so re-runs and incremental checks only
hash samples that are new or edited. Only the main process touches DuckDB.

The MinHash is rensa's R-MinHash (Rust), fed the shingle hashes of curation.shingles in one flat
buffer per chunk: 2 us a sample against 35 us for the numpy affine32 loop in
curation.shingles.signatures (128 permutations, 130 shingles; benches/results/dedup_real.md), and
its estimate is unbiased with a smaller spread (sd 0.019 against 0.024 at J=0.83). Its values
differ from datasketch's, so the signature key names the scheme and signatures stored under the
old scheme are dropped and recomputed (`store_signatures`). Verification computes the exact
shingle sets of the few candidate samples again (shingle_sets.ShingleSets.ensure): on real data
that costs less than holding every sample's set from this pass (benches/results/dedup_real.md).
"""
from __future__ import annotations

import mmap
import tempfile
from array import array
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pyarrow as pa

from .. import normalize as norm
from .. import normalize_bulk
from .. import shingles as sh
from ..arrow_buffers import arrow_of, int64s, mask_of, strings_of, table_of
from ..jobs import Job
from ..workers import Workers, worker_count
from .lsh import all_band_keys, band_widths
from .params import OLD_SCHEMES, DedupParams

CHUNK = 4000            # samples per worker task (a few MB of text)
# A signature matrix larger than this lives in an unlinked temporary file in the workspace folder,
# mapped into memory (`signature_matrix`): 512 bytes a sample is 5 GB at 10M samples, which the
# kernel can then page out under memory pressure instead of the run being killed. The LSH must not
# read that matrix a band at a time: a band's 6 values sit in every row, so each band touches every
# page, and with too little page cache every band read the file from disk again (10M samples under
# an 8 GiB cap: 200 GB read in 5 minutes, benches/results/scale.md). So every band's key is
# computed where the rows are in memory (the workers' chunks, the batches read back) and kept
# band-major (`Sigs.bands`, mapped the same way past SPILL_BYTES): a band is one contiguous row.
SPILL_BYTES = 1 << 30
_U32 = "I" if array("I").itemsize == 4 else "L"  # a 4-byte unsigned array code


# -- worker side (no DuckDB here) ------------------------------------------------------------------
def minhash(hashes: np.ndarray, offsets: np.ndarray, num_perm: int) -> np.ndarray:
    """rensa R-MinHash signatures, shape (texts, num_perm) uint32; a text without shingles gets
    all 0xFFFFFFFF (as curation.shingles.signatures)."""
    import rensa

    count = offsets.size - 1
    if count == 0:
        return np.zeros((0, num_perm), np.uint32)
    digests = rensa.RMinHash.digest_matrix_from_flat_token_hashes(
        hashes.astype(np.uint64), offsets.astype(np.uint64), num_perm, sh.SEED)
    # The digests come only as lists of ints (no buffer protocol): array() packs a row in C, twice
    # as fast as np.fromiter over all of them.
    raw = b"".join(array(_U32, row).tobytes() for row in digests.to_rows())
    return np.frombuffer(raw, np.uint32).reshape(count, num_perm)


def warm_worker() -> None:
    """Build the per-process lookup tables of the normaliser and the shingler (~0.3 s)."""
    normalize_bulk.tables()
    sh._bmp_classes()
    sh.codepoint_shingle_hashes(*normalize_bulk.normalized_codepoints(["warm 暖"]), 3)  # numba: import, load its cache


def hash_chunk(texts: "Sequence[str] | normalize_bulk.Utf8Texts", shingle: int, num_perm: int) -> tuple:
    """(exact keys, signatures, shingle counts) of raw texts (str, or the UTF-8 buffers of an
    Arrow column)."""
    if not texts:
        hashes, offsets, keys = np.zeros(0, np.uint32), np.zeros(1, np.int64), np.zeros(0, np.int64)
    else:
        cp, lens = normalize_bulk.normalized_codepoints(texts)
        keys = normalize_bulk.exact_keys(cp, lens)
        hashes, offsets = sh.codepoint_shingle_hashes(cp, lens, shingle)
    counts = np.diff(offsets).astype(np.int32)
    return keys, minhash(hashes, offsets, num_perm), counts


def hash_chunk_banded(texts: "Sequence[str] | normalize_bulk.Utf8Texts", shingle: int, num_perm: int,
                      widths: tuple[int, ...]) -> tuple:
    """hash_chunk's results and every LSH band's key of the chunk (`lsh.all_band_keys`)."""
    keys, sigs, counts = hash_chunk(texts, shingle, num_perm)
    return keys, sigs, counts, all_band_keys(sigs, widths)


# -- main process ---------------------------------------------------------------------------------
@dataclass
class Sigs:
    """Per-sample hashing results, sorted by sample id."""

    ids: np.ndarray
    keys: np.ndarray
    sigs: np.ndarray
    counts: np.ndarray
    computed: np.ndarray  # bool: hashed in this run (to store)
    hashes: pa.Array | None = None  # content_hash of each sample (to store with new signatures)
    shingle_sets: Any = None  # similarity.ShingleSets: exact sets of the samples compared so far in this run
    bands: np.ndarray | None = None  # (bands, samples) uint64: every LSH band's key of each sample

    def index_of(self, sample_ids: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.ids, sample_ids)

    def take(self, mask: np.ndarray) -> "Sigs":
        """The rows where `mask` holds (without content hashes)."""
        return Sigs(self.ids[mask], self.keys[mask], self.sigs[mask], self.counts[mask], self.computed[mask],
                    bands=None if self.bands is None else self.bands[:, mask])


def signature_matrix(rows: int, num_perm: int, spill_dir: Path | None = None) -> np.ndarray:
    """An uninitialised (rows, num_perm) uint32 matrix: in memory, or, when it is larger than
    SPILL_BYTES and `spill_dir` is given, mapped from an unlinked temporary file there (file-backed
    pages, which the kernel writes back and drops under memory pressure; the file's space is freed
    when the array is)."""
    return _matrix((rows, num_perm), np.uint32, spill_dir, ".signatures-")


def band_matrix(bands: int, samples: int, spill_dir: Path | None = None) -> np.ndarray:
    """An uninitialised (bands, samples) uint64 matrix of band keys, kept as `signature_matrix`."""
    return _matrix((bands, samples), np.uint64, spill_dir, ".bands-")


def _matrix(shape: tuple[int, int], dtype: type, spill_dir: Path | None, prefix: str) -> np.ndarray:
    size = shape[0] * shape[1] * np.dtype(dtype).itemsize
    if spill_dir is None or size == 0 or size <= SPILL_BYTES:
        return np.empty(shape, dtype)
    # mmap keeps its own duplicate of the descriptor, so the file can be closed here.
    with tempfile.TemporaryFile(dir=spill_dir, prefix=prefix) as f:
        return np.memmap(f, dtype, "w+", shape=shape)


def gather_rows(sigs: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """sigs[positions], read in ascending order. For a matrix mapped from a file (10M samples:
    5 GB, with ~2.5 GB of page cache under an 8 GiB cap) the kernel is told the reads are random
    for the time of the gather: by default each page fault reads ~128 KB around the page, and
    estimating a few million candidate pairs (one row of 512 bytes each, anywhere in the file)
    then read 800 GB in half an hour without finishing (benches/results/scale.md)."""
    order = np.argsort(positions, kind="stable")
    out = np.empty((positions.size, sigs.shape[1]), sigs.dtype)
    mm: Any = getattr(sigs, "_mmap", None) if isinstance(sigs, np.memmap) else None
    if mm is None or not hasattr(mm, "madvise") or not hasattr(mmap, "MADV_RANDOM"):
        out[order] = sigs[positions[order]]
        return out
    mm.madvise(mmap.MADV_RANDOM)
    try:
        out[order] = sigs[positions[order]]
    finally:
        mm.madvise(mmap.MADV_NORMAL)
    return out


def _blob_rows(chunk: pa.Array, num_perm: int) -> np.ndarray:
    """A BLOB column chunk of equal-length signatures as a (rows, num_perm) view of Arrow's buffer."""
    odt = np.int64 if pa.types.is_large_binary(chunk.type) else np.int32
    off = np.frombuffer(chunk.buffers()[1], dtype=odt)[chunk.offset:chunk.offset + len(chunk) + 1]
    raw = np.frombuffer(chunk.buffers()[2], dtype=np.uint8)[off[0]:off[-1]]
    return raw.view(np.uint32).reshape(len(chunk), num_perm)


def _positions(sorted_ids: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each of `ids` sits in `sorted_ids`, and whether it is there at all."""
    pos = np.searchsorted(sorted_ids, ids)
    ok = pos < sorted_ids.size
    ok[ok] = sorted_ids[pos[ok]] == ids[ok]
    return pos, ok


def _int_column(table: pa.Table | pa.RecordBatch, i: int = 0) -> np.ndarray:
    return int64s(table.column(i))


def stored_signatures(con, params: DedupParams, only_ids: np.ndarray | None = None,
                      spill_dir: Path | None = None) -> Sigs:
    """The valid stored signatures (all, or those of `only_ids`), sorted by sample id. The ids come
    first (sorted here); the BLOBs then stream in table order and go to their rows of one matrix
    (`signature_matrix`: in a mapped file past SPILL_BYTES when `spill_dir` is given). No ORDER BY
    over the BLOBs: at 10M samples DuckDB would sort 5 GB to hand them over in order."""
    where = ("FROM minhash_signatures m JOIN samples s ON s.id = m.sample_id AND s.content_hash = m.content_hash "
             "WHERE m.params = ?")
    args: list[Any] = [params.signature_key]
    if only_ids is not None:
        where += " AND m.sample_id IN (SELECT unnest(?))"
        args.append(only_ids.tolist())
    ids = np.sort(_int_column(con.sql(f"SELECT m.sample_id {where}", params=args).to_arrow_table()))
    n = ids.size
    keys, counts, found = np.zeros(n, np.int64), np.zeros(n, np.int32), np.zeros(n, bool)
    sigs = signature_matrix(n, params.num_perm, spill_dir)
    widths = band_widths(params.threshold, params.num_perm)
    bands = band_matrix(len(widths), n, spill_dir)
    reader = con.sql(f"SELECT m.sample_id, m.exact_key, m.shingles, m.signature {where}", params=args).to_arrow_reader(65_536)
    for batch in reader:
        pos, ok = _positions(ids, _int_column(batch))
        rows = _blob_rows(batch.column(3), params.num_perm)  # every signature has the same length
        if not ok.all():  # stored after the ids were read (another thread): left for the next run
            pos, rows = pos[ok], rows[ok]
            batch = batch.filter(mask_of(ok))
        keys[pos] = _int_column(batch, 1)
        counts[pos] = _int_column(batch, 2)
        sigs[pos] = rows
        bands[:, pos] = all_band_keys(rows, widths)
        found[pos] = True
    if not found.all():  # deleted after the ids were read: dropped (a copy, only then)
        ids, keys, counts, sigs, bands = ids[found], keys[found], counts[found], sigs[found], bands[:, found]
    return Sigs(ids=ids, keys=keys, sigs=sigs, counts=counts, computed=np.zeros(ids.size, dtype=bool), bands=bands)


def _missing_sql(params: DedupParams, restrict: bool) -> str:
    sql = (f"SELECT s.id, s.content_hash, {norm.field_text_sql(params.fields)} AS t FROM samples s "
           "WHERE NOT EXISTS (SELECT 1 FROM minhash_signatures m WHERE m.sample_id = s.id "
           "AND m.params = ? AND m.content_hash = s.content_hash)")
    if restrict:
        sql += " AND s.id IN (SELECT unnest(?))"
    return sql


def compute_missing(ws, params: DedupParams, job: Job, workers: int | None, only_ids: np.ndarray | None,
                    pool_holder: list) -> Sigs:
    """Hash the samples (all, or `only_ids`) without a valid stored signature. The pool it starts
    is appended to `pool_holder` (the caller reuses it for verification and closes it)."""
    con = ws.con
    args: list[Any] = [params.signature_key]
    if only_ids is not None:
        args.append(only_ids.tolist())
    sql = _missing_sql(params, only_ids is not None)
    # The ids first, sorted here; the texts then stream in table order (no ORDER BY: at 10M samples
    # DuckDB would sort ~10 GB of text before handing over the first row) and each chunk's results
    # go to its samples' rows.
    ids = np.sort(_int_column(con.sql(f"SELECT id FROM ({sql})", params=args).to_arrow_table()))
    todo = ids.size
    widths = band_widths(params.threshold, params.num_perm)
    job.set_message(f"hashing {todo:,} samples")
    pool = Workers(worker_count(workers, todo))
    pool_holder.append(pool)
    pool.start(warm_worker)  # the workers import and build their tables while DuckDB runs the query
    pos_parts: list[np.ndarray] = []
    hash_parts: list[pa.Array] = []
    waiting: deque[np.ndarray] = deque()  # positions of the chunks handed to the pool, in order

    def tasks() -> Iterator[tuple]:
        for batch in con.sql(sql, params=args).to_arrow_reader(CHUNK):
            pos, ok = _positions(ids, _int_column(batch))
            if not ok.all():  # added after the ids were read (another thread): hashed next time
                pos, batch = pos[ok], batch.filter(mask_of(ok))
            if not pos.size:
                continue
            pos_parts.append(pos)
            # a copy: a column of a batch DuckDB hands over keeps the whole batch alive (its
            # texts too: ~3.5 KB a row, 35 GB at 10M samples)
            hash_parts.append(pa.concat_arrays([batch.column(1)]))
            waiting.append(pos)
            # The texts as Arrow's UTF-8 buffers (Utf8Texts): no str per row here or in the worker.
            yield (normalize_bulk.Utf8Texts.from_arrow(batch.column(2)), params.shingle, params.num_perm, widths)

    # Preallocated: at a million samples the signatures are 512 MB; a list of chunks plus a
    # concatenate would hold them twice. Past SPILL_BYTES they go to a mapped file.
    keys = np.zeros(todo, np.int64)
    sigs = signature_matrix(todo, params.num_perm, ws.root)
    bands = band_matrix(len(widths), todo, ws.root)
    counts = np.zeros(todo, np.int32)
    for k, s, c, b in pool.stream(hash_chunk_banded, tasks(), job):
        pos = waiting.popleft()
        keys[pos] = k
        sigs[pos] = s
        bands[:, pos] = b
        counts[pos] = c
        job.advance(len(k))
    hashed = np.concatenate(pos_parts) if pos_parts else np.zeros(0, np.int64)
    # content hashes in id order (the chunks came in table order)
    hashes = pa.concat_arrays(hash_parts).take(arrow_of(np.argsort(hashed, kind="stable"))) if hash_parts \
        else strings_of([])
    if hashed.size < todo:  # deleted after the ids were read: dropped (a copy, only then)
        found = np.zeros(todo, bool)
        found[hashed] = True
        ids, keys, sigs, counts, bands = ids[found], keys[found], sigs[found], counts[found], bands[:, found]
    return Sigs(ids, keys, sigs, counts, np.ones(ids.size, dtype=bool), hashes, bands=bands)


def merge(a: Sigs, b: Sigs, spill_dir: Path | None = None) -> Sigs:
    """Both sets of rows, sorted by sample id (without content hashes). The signatures are
    scattered into one new matrix (`signature_matrix`), not concatenated and then reordered."""
    if a.ids.size == 0:
        return b
    if b.ids.size == 0:
        return a
    ids = np.concatenate([a.ids, b.ids])
    order = np.argsort(ids, kind="stable")
    at = np.empty(order.size, np.int64)
    at[order] = np.arange(order.size)  # where each row of a, then b, goes
    sigs = signature_matrix(order.size, a.sigs.shape[1], spill_dir)
    sigs[at[:a.ids.size]] = a.sigs
    sigs[at[a.ids.size:]] = b.sigs
    bands = None
    if a.bands is not None and b.bands is not None:
        bands = band_matrix(a.bands.shape[0], order.size, spill_dir)
        bands[:, at[:a.ids.size]] = a.bands
        bands[:, at[a.ids.size:]] = b.bands
    return Sigs(ids[order], np.concatenate([a.keys, b.keys])[order], sigs,
                np.concatenate([a.counts, b.counts])[order], np.concatenate([a.computed, b.computed])[order],
                shingle_sets=a.shingle_sets or b.shingle_sets, bands=bands)


def store_signatures(con, params: DedupParams, data: Sigs) -> None:
    """Store the signatures computed in this run (replacing stale ones of the same samples)."""
    new = np.flatnonzero(data.computed)
    if new.size == 0:
        return
    ids = data.ids[new]
    # Signatures of an earlier scheme are never read again (their key differs): drop them.
    for scheme in OLD_SCHEMES:
        con.execute("DELETE FROM minhash_signatures WHERE params LIKE ?", [f"% scheme={scheme}"])
    sigs = data.sigs if new.size == data.ids.size else data.sigs[new]
    sigs = np.ascontiguousarray(sigs)  # no copy when already contiguous
    width = params.num_perm * 4
    # Zero-copy: Arrow wraps the numpy buffer as fixed-size binary values; DuckDB stores BLOBs.
    blob = pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), new.size, [None, pa.py_buffer(sigs)])
    tbl = table_of({"sample_id": ids, "content_hash": data.hashes, "exact_key": data.keys[new],
                    "shingles": data.counts[new], "signature": blob})
    con.register("_sigs", tbl)
    try:
        # the ids as a join, not a list parameter (1M ids as a Python list: ~1 s before the scan)
        con.execute("DELETE FROM minhash_signatures WHERE params = ? AND sample_id IN (SELECT sample_id FROM _sigs)",
                    [params.signature_key])
        con.execute("INSERT INTO minhash_signatures (sample_id, params, content_hash, exact_key, shingles, signature) "
                    "SELECT sample_id, ?, content_hash, exact_key, shingles, signature FROM _sigs", [params.signature_key])
    finally:
        con.unregister("_sigs")
