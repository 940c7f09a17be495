"""The dedup hashing pass's two inner loops compiled with numba, each in one pass over the code
points instead of a dozen or more numpy passes:

- `shingler`: curation.shingles.codepoint_shingle_hashes (tokens, runs, role salts, n-grams);
- `normalizer`: the table-driven part of curation.normalize_bulk (characters mapped, zero-width
  ones dropped, whitespace collapsed, none next to CJK).

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


def _module() -> Any:
    if os.environ.get("STUDIO_NO_JIT"):
        return None
    try:
        from . import _text_kernels_jit
    except ImportError:  # no numba: the numpy versions run
        return None
    return _text_kernels_jit


def shingler() -> Any:
    """The compiled shingler (`_shingle_hashes`), or None when numba is missing or switched off
    (STUDIO_NO_JIT=1)."""
    mod = _module()
    return None if mod is None else mod._shingle_hashes


def normalizer() -> Any:
    """The compiled normaliser (`_normalize`), or None (as `shingler`)."""
    mod = _module()
    return None if mod is None else mod._normalize
