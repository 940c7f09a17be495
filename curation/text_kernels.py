"""The dedup pass's inner loops compiled with numba, each in one pass over its data instead of a
dozen or more numpy passes:

- `shingler`: curation.shingles.codepoint_shingle_hashes (tokens, runs, role salts, n-grams);
- `normalizer`: the table-driven part of curation.normalize_bulk (characters mapped, zero-width
  ones dropped, whitespace collapsed, none next to CJK);
- `key_hasher`: the exact key of each normalised text (`exact_keys_numpy` is the definition);
- `utf8_decoder`: the code points of Arrow's UTF-8 texts (Python's codecs are the reference);
- `jaccard_merger`: the exact Jaccard of pairs of sorted shingle sets, by merging each pair
  (dedup/shingle_sets.ShingleSets.jaccard's numpy blocks are the reference);
- `row_agreement`: the MinHash estimate of pairs of signature rows, read in place
  (dedup/similarity.estimates_at's gathered blocks are the reference).

The numpy versions stay as the reference and the fallback; tests/test_text_kernels.py checks that
both give the same results bit for bit.

Why numba: on 8,000 real bilingual rows of ~820 characters (benches/results/dedup_real.md) the
numpy shingler took 58-85 us a row and the normaliser 17-27, most of the dedup hashing pass: each
numpy pass reads and writes every character again. A loop that keeps a token's hash in a register
reads each code point once (~10 ns a character). numba compiles these functions from this source
on first use (a few seconds, then cached on disk beside this file when the folder is writable:
`cache=True`); without numba, or with STUDIO_NO_JIT=1, the numpy versions run.

numba facts that cost time here: an array variable reassigned inside the loop (a growable buffer)
made every iteration pay reference counting, 5x slower; so buffers are allocated once, at their
largest size. Arithmetic is on uint64 and wraps, as numpy's does: mixing uint64 with a signed
integer would make numba compute in float64, so every hash constant comes in as np.uint64.
"""
from __future__ import annotations

import os
from typing import Any


def _compiled(name: str) -> Any:
    """The numba-compiled kernel `name` of _text_kernels_jit, or None when numba is missing or
    switched off (STUDIO_NO_JIT=1): the caller then runs its numpy version."""
    if os.environ.get("STUDIO_NO_JIT"):
        return None
    try:
        from . import _text_kernels_jit
    except ImportError:  # no numba: the numpy versions run
        return None
    return getattr(_text_kernels_jit, name)


def shingler() -> Any:
    return _compiled("_shingle_hashes")


def normalizer() -> Any:
    return _compiled("_normalize")


def utf8_decoder() -> Any:
    return _compiled("_utf8_codepoints")


def jaccard_merger() -> Any:
    return _compiled("_sorted_jaccard")


def key_hasher() -> Any:
    return _compiled("_exact_keys")


def row_agreement() -> Any:
    return _compiled("_row_agreement")


# The exact key of a normalised text: a signed 64-bit hash of its code points, 0 for an empty text
# (never 0 otherwise). Each code point is mixed with its position (murmur3's fmix64 of cp << 32 ^ i
# ^ KEY_SALT), the mixes are summed mod 2^64, and the sum is mixed again with the length. Sums of
# independent 64-bit mixes collide with probability ~2^-64 a pair, as blake2b's 8-byte digest did,
# and they vectorise: numpy computes it without a Python loop per text, numba in one pass.
KEY_SALT = 0x9E3779B97F4A7C15
KEY_LENGTH_MUL = 0xD6E8FEB86659FD93


def fmix64(h: Any) -> Any:
    """murmur3's 64-bit finalizer over a uint64 numpy array (the shingle hashes, the LSH band keys
    and the exact keys all end with it; the compiled kernels have their own `_fmix64`)."""
    import numpy as np

    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def exact_keys_numpy(cp: Any, lens: Any) -> Any:
    """int64 exact keys of texts laid out as normalize_bulk.normalized_codepoints gives them (text
    i: lens[i] code points, the last a NUL separator that does not count)."""
    import numpy as np

    lens = np.asarray(lens, np.int64)
    if lens.size == 0:
        return np.zeros(0, np.int64)
    starts = np.cumsum(lens) - lens
    pos = np.arange(cp.size, dtype=np.int64) - np.repeat(starts, lens)
    with np.errstate(over="ignore"):
        mixed = fmix64((cp.astype(np.uint64) << np.uint64(32)) ^ pos.astype(np.uint64) ^ np.uint64(KEY_SALT))
        mixed[starts + lens - 1] = 0  # the separators add nothing
        sums = np.add.reduceat(mixed, starts)
        n = lens - 1
        keys = fmix64(sums ^ (n.astype(np.uint64) * np.uint64(KEY_LENGTH_MUL))).view(np.int64)
    keys[keys == 0] = 1
    keys[n <= 0] = 0
    return keys
