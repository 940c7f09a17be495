"""The sorted distinct values of an array, by one sort and one compare.

numpy 2.4's `np.unique(x)` (no return_index/inverse/counts) goes through a hash table before it
sorts the result. Measured on the 2-core VM: 1.1-1.3 s for 2M int64, uint64, int32 or uint32
values, against 0.015-0.035 s for `np.sort` and a compare; at t=0.7 over 1M real rows the LSH's
5.76M pair codes took 2.2 s instead of 0.1 (benches/results/dedup_real.md). With a return_*
argument it still sorts, and is fast. The dedup, plan and quality passes use this instead.
"""
from __future__ import annotations

import numpy as np


def distinct(values: np.ndarray) -> np.ndarray:
    """np.unique(values), flattened: sorted, each value once. For integers (the callers' ids, keys
    and codes): NaNs would each stay, where np.unique merges them."""
    out = np.sort(values, axis=None)
    if out.size < 2:
        return out
    keep = np.empty(out.size, dtype=bool)
    keep[0] = True
    np.not_equal(out[1:], out[:-1], out=keep[1:])
    return out[keep]
