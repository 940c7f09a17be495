"""MinHash LSH banding: which pairs of signatures become candidates, and with which bands.

Why not datasketch's MinHashLSH for the bulk run: it keeps a Python dict entry per key and band
(about 2 KB a sample: 2 GB at a million samples) and inserts ~80k keys/s. The banding here sorts
one uint64 key per sample and band with numpy, which finds the same candidate pairs (every pair
that shares a band's values) at a fraction of the memory; tests/test_dedup.py checks it against
MinHashLSH on the same signatures.
"""
from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import shingles as sh
from ..distinct import distinct

CANDIDATE_RECALL = 0.99  # chance that a pair exactly at the threshold becomes a candidate
BAND_THREADS = 2  # bands grouped at once (candidate_pairs)


@functools.lru_cache(maxsize=32)
def band_widths(threshold: float, num_perm: int) -> tuple[int, ...]:
    """Rows per band of every LSH band: the widest bands (fewest chance candidates) that still make a
    pair at exactly `threshold` a candidate with probability >= CANDIDATE_RECALL, in two widths.

    With one width the permutations left over are wasted and the width falls a whole step where
    the bound is missed by a hair: at 0.7 and 128 permutations 25 bands of 5 rows reach 0.9899, so
    one width means 32 bands of 4, under which a chance pair at Jaccard 0.3 is a candidate with
    probability 0.26. Bands of r rows with the rest in bands of r - 1 reach the bound with wider
    bands: 24 x 5 + 2 x 4 reaches 0.9930 at 0.7 with a chance rate of 0.074 at 0.3 (3.5x fewer chance
    candidates, 26 band sorts instead of 32); at 0.8, 14 x 7 + 5 x 6 reaches 0.9919 (0.0067 against
    21 x 6's 0.0153). For each width r from the widest, as many bands of r as keep the bound, the
    rest of the permutations in bands of r - 1.

    Not datasketch's MinHashLSH default on purpose: its equal-weight optimum for 0.8 and 128
    permutations is (9, 13), which makes a pair at 0.8 a candidate only 40% of the time (69% at
    0.85); candidates are checked against the threshold afterwards anyway (exact Jaccard, or the
    MinHash estimate with --no-verify), so extra candidates cost a little time, never accuracy."""
    for rows in range(num_perm // 2, 1, -1):
        for wide in range(num_perm // rows, -1, -1):
            narrow = (num_perm - wide * rows) // (rows - 1)
            if wide + narrow < 2:
                continue
            miss = (1 - threshold ** rows) ** wide * (1 - threshold ** (rows - 1)) ** narrow
            if 1 - miss >= CANDIDATE_RECALL:
                return (rows,) * wide + (rows - 1,) * narrow
    return (1,) * num_perm


def band_key(sigs: np.ndarray, b: int, widths: tuple[int, ...], take: np.ndarray | None = None) -> np.ndarray:
    """Band b's uint64 key of each signature (equal band values, equal key), or of the rows `take`
    of `sigs` only: the band's columns of those rows are gathered, never the whole matrix (at 10M
    samples it is 5 GB). `widths`: every band's rows (`band_widths`), the bands side by side."""
    start = sum(widths[:b])
    band = sigs[:, start:start + widths[b]]
    block = (band if take is None else band[take]).astype(np.uint64)
    k = np.zeros(block.shape[0], dtype=np.uint64)
    for j in range(widths[b]):
        k ^= block[:, j]
        k *= np.uint64(0x100000001B3)
    return sh.fmix64(k + np.uint64(b))


def all_band_keys(sigs: np.ndarray, widths: tuple[int, ...]) -> np.ndarray:
    """Every band's key of a block of signatures, shape (bands, len(sigs)): computed where the
    rows are in memory (a worker's chunk, a batch read back), so that banding later reads one
    contiguous row of keys per band instead of 6 values from every row of the whole matrix."""
    out = np.empty((len(widths), sigs.shape[0]), np.uint64)
    for b in range(len(widths)):
        out[b] = band_key(sigs, b, widths)
    return out


def keys_of_band(sigs: np.ndarray, band_keys: np.ndarray | None, b: int, widths: tuple[int, ...],
                 take: np.ndarray | None = None) -> np.ndarray:
    """Band b's keys (of the rows `take`): from the precomputed (bands, n) keys when there are
    some, else from the signatures."""
    if band_keys is None:
        return band_key(sigs, b, widths, take)
    return band_keys[b] if take is None else band_keys[b][take]


def _stable_order(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, keys[order]): the positions sorted by key, equal keys in position order, as
    np.argsort(kind="stable") gives them, ~2.5x faster. A stable argsort of 1M uint64 keys is a
    merge sort (~100 ms; 21 bands a run: 2.4 s of a 1M-row dedup); numpy's plain sort of uint64 is
    SIMD (~15 ms). So each key's low bits are replaced by its position and the packed values are
    sorted: equal keys end up together and in position order. Keys equal only in their kept high
    bits are told apart by their full keys; where they interleave (rare: 2^-(64 - bits) a pair),
    those runs are put in order by (key, position)."""
    n = keys.size
    bits = max(int(n - 1).bit_length(), 1)
    if bits > 40:  # the kept high bits would be too few to tell keys apart
        order = np.argsort(keys, kind="stable")
        return order, keys[order]
    low = np.uint64((1 << bits) - 1)
    packed = keys & ~low
    packed |= np.arange(n, dtype=np.uint64)
    packed.sort()
    order = (packed & low).astype(np.int64)
    sk = keys[order]
    packed >>= np.uint64(bits)  # the kept high bits (in place: at 10M rows each array is 80 MB)
    run_start = np.ones(n, bool)
    np.not_equal(packed[1:], packed[:-1], out=run_start[1:])
    del packed
    changed = np.zeros(n, bool)
    np.not_equal(sk[1:], sk[:-1], out=changed[1:])
    odd = np.flatnonzero(changed & ~run_start)  # a key change inside a run
    if odd.size:
        runs = distinct(np.cumsum(run_start)[odd])  # run numbers (1-based) that mix keys
        run_id = np.cumsum(run_start)
        fix = np.flatnonzero(np.isin(run_id, runs))
        sub = fix[np.lexsort((order[fix], sk[fix], run_id[fix]))]
        order[fix], sk[fix] = order[sub], sk[sub]
    return order, sk


def group_pairs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of positions sharing a key: each member with the group's first and with its
    predecessor (enough for connected components, at most 2(g-1) pairs per group of g)."""
    order, sk = _stable_order(keys)
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


def pair_codes(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """The distinct unordered pairs among (a, b) as sorted int64 codes low * n + high."""
    return distinct(np.minimum(a, b).astype(np.int64) * n + np.maximum(a, b))


def unique_pairs(a: np.ndarray, b: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct unordered pairs among (a, b), as (low, high), positions below n."""
    code = pair_codes(a, b, n)
    return code // n, code % n


def candidate_pairs(sigs: np.ndarray, threshold: float, num_perm: int, take: np.ndarray | None = None,
                    band_keys: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs (i < j) among signature rows (or among the rows `take`, as positions in
    `take`): they agree on every row of some band. `band_keys`: the rows' keys of every band
    (`all_band_keys`), when they were computed already."""
    widths = band_widths(threshold, num_perm)
    bands = len(widths)
    n = max(sigs.shape[0] if take is None else take.size, 1)
    # Each band's pairs are kept as distinct codes (lo * n + hi, 8 bytes a pair), not as position
    # arrays joined at the end: at 10M samples the joined arrays and their copies in unique_pairs
    # peaked at 6.8 GB of an 8 GiB cap.
    def band_codes(band: int) -> np.ndarray:  # one band's keys at a time: 8 bytes a row, not 8 x bands
        a, b = group_pairs(keys_of_band(sigs, band_keys, band, widths, take))
        return pair_codes(a, b, n)

    # Two bands at a time on threads: numpy's sorts, gathers and uniques release the GIL, and the
    # worker processes are idle in this phase (1M rows at t=0.7, 32 bands: ~3.4 s on one thread).
    # Two, not every core: each band holds ~5 arrays of 8 bytes a row while it runs.
    threads = min(BAND_THREADS, bands, os.cpu_count() or 1)
    if threads > 1:
        with ThreadPoolExecutor(threads, thread_name_prefix="lsh-band") as pool:
            codes = list(pool.map(band_codes, range(bands)))
    else:
        codes = [band_codes(band) for band in range(bands)]
    if not codes:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    code = distinct(np.concatenate(codes))
    return code // n, code % n
