"""The numba-compiled kernels of curation/text_kernels.py (imported only when one is first used:
importing numba costs ~0.4 s, which no screen should pay)."""
from __future__ import annotations

from typing import Any, Callable

import numba
import numpy as np


def _jit(fn: Callable) -> Any:
    return numba.njit(cache=True, nogil=True)(fn)


@_jit
def _fmix64(h):
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


@_jit
def _shingle_hashes(cp, lens, n, table, salt, p_char, q_token, c_mul, mark_lo, mark_hi, out, counts):
    """Fill out[:k] with the shingle hashes of the texts (cp: code points, text i is lens[i] of
    them, its trailing separator included) and counts[i] with text i's number; return k.

    Per text: tokens (a run of word characters, or one CJK character) hashed as the sum of
    (cp + 1) * C_MUL * P^position, then fmix64, salted with the role of the last mark before the
    token in the text; runs of tokens of one type between marks; each run's n-grams of token
    hashes combined as h = h * Q + next, a run shorter than n padded with zeros; fmix64, top 32
    bits. Exactly what shingles.codepoint_shingle_hashes computes with numpy."""
    k = 0
    at = 0
    tokens = np.empty(max(lens.max(), 1), np.uint64)  # a text has fewer tokens than code points
    for i in range(lens.size):
        end = at + lens[i]
        role = 0
        ntok = 0          # tokens in the current run
        run_cjk = False
        written = k
        tok = np.uint64(0)
        power = np.uint64(1)
        in_word = False
        j = at
        while j <= end:
            # one step past the text's end flushes its last token and run; cls as in
            # shingles._classes: 0 separator, 1 word character, 2 CJK character
            if j < end:
                c = cp[j]
                if c < 0x10000:
                    cls = table[c]
                elif c >= 0x20000 and c < 0x40000:
                    cls = 2
                elif c >= 0x1F000 and c < 0x20000:
                    cls = 0
                else:
                    cls = 1
            else:
                c = 0
                cls = 0
            # the token in progress ends at a non-word character
            if in_word and cls != 1:
                if ntok > 0 and run_cjk:
                    k = _flush(tokens, ntok, n, q_token, out, k)
                    ntok = 0
                tokens[ntok] = _fmix64(tok) ^ salt[role]
                ntok += 1
                run_cjk = False
                in_word = False
            if cls == 1:
                x = (np.uint64(c) + np.uint64(1)) * c_mul
                if not in_word:
                    in_word = True
                    tok = x
                    power = p_char
                else:
                    tok += x * power
                    power *= p_char
            elif cls == 2:
                if ntok > 0 and not run_cjk:
                    k = _flush(tokens, ntok, n, q_token, out, k)
                    ntok = 0
                tokens[ntok] = _fmix64((np.uint64(c) + np.uint64(1)) * c_mul) ^ salt[role]
                ntok += 1
                run_cjk = True
            elif j < end and c >= mark_lo and c <= mark_hi:
                # a role mark: the run ends, later tokens take its role
                if ntok > 0:
                    k = _flush(tokens, ntok, n, q_token, out, k)
                    ntok = 0
                role = c - mark_lo + 1
            j += 1
        if ntok > 0:
            k = _flush(tokens, ntok, n, q_token, out, k)
        counts[i] = k - written
        at = end
    return k


@_jit
def _flush(tokens, ntok, n, q_token, out, k):
    """The shingles of one run of `ntok` token hashes, appended to out at k; returns the new k."""
    if ntok < n:
        h = tokens[0]
        for m in range(1, n):
            h *= q_token
            if m < ntok:
                h += tokens[m]
        out[k] = np.uint32(_fmix64(h) >> np.uint64(32))
        return k + 1
    for p in range(ntok - n + 1):
        h = tokens[p]
        for m in range(1, n):
            h = h * q_token + tokens[p + m]
        out[k] = np.uint32(_fmix64(h) >> np.uint64(32))
        k += 1
    return k


@_jit
def _normalize(cp, lens, image, cjk, drop, complex_, space, out, out_lens):
    """Map each text's code points through `image` into `out` (text i's result and its NUL take
    out_lens[i] places): `drop` ones vanish, runs of `space` become one space, none at either end
    of a text or next to a CJK character (`cjk`, a BMP table). A text with a `complex_` image or a
    NUL before its end gets out_lens[i] = 0 and nothing written: the caller normalises it in
    Python. Returns the places used."""
    o = 0
    at = 0
    for i in range(lens.size):
        end = at + lens[i] - 1  # the text's own NUL is at `end`
        first = o
        last = 0  # the last character written, 0 at the text's start
        gap = False  # spaces seen since it
        bad = False
        for j in range(at, end):
            c = cp[j]
            m = image[c]
            if m == complex_ or c == 0:
                bad = True
                break
            if m == drop:
                continue
            if m == space:
                gap = True
                continue
            if gap:
                if last != 0 and not (last < 0x10000 and cjk[last]) and not (m < 0x10000 and cjk[m]):
                    out[o] = space
                    o += 1
                gap = False
            out[o] = m
            o += 1
            last = m
        if bad:
            o = first
            out_lens[i] = 0
        else:
            out[o] = 0
            o += 1
            out_lens[i] = o - first
        at = end + 1
    return o


@_jit
def _exact_keys(cp, lens, salt, length_mul, out):
    """text_kernels.exact_keys_numpy, one pass: each text's code points (its NUL left out)."""
    start = 0
    for t in range(lens.size):
        n = lens[t] - 1
        acc = np.uint64(0)
        for i in range(n):
            acc += _fmix64((np.uint64(cp[start + i]) << np.uint64(32)) ^ np.uint64(i) ^ salt)
        if n <= 0:
            out[t] = 0
        else:
            key = np.int64(_fmix64(acc ^ (np.uint64(n) * length_mul)))
            out[t] = key if key != 0 else 1
        start += lens[t]


@_jit
def _utf8_codepoints(data, offsets, out, lens):
    """Decode each text's UTF-8 bytes (valid UTF-8: Arrow's strings are) into `out`, each text
    followed by a NUL; lens[t] = its code points + 1. `out` holds at least len(data) + texts.
    Returns how many code points were written. A sequence cut off by the text's end (invalid
    UTF-8) becomes U+FFFD instead of reading past it."""
    k = 0
    for t in range(offsets.size - 1):
        start = k
        i = offsets[t]
        end = offsets[t + 1]
        while i < end:
            b = np.uint32(data[i])
            need = 1 if b < 0x80 else (2 if b < 0xE0 else (3 if b < 0xF0 else 4))
            if i + need > end:
                out[k] = np.uint32(0xFFFD)
                i = end
            elif b < 0x80:
                out[k] = b
                i += 1
            elif b < 0xE0:
                out[k] = ((b & np.uint32(0x1F)) << np.uint32(6)) | (np.uint32(data[i + 1]) & np.uint32(0x3F))
                i += 2
            elif b < 0xF0:
                out[k] = (((b & np.uint32(0x0F)) << np.uint32(12)) | ((np.uint32(data[i + 1]) & np.uint32(0x3F)) << np.uint32(6))
                          | (np.uint32(data[i + 2]) & np.uint32(0x3F)))
                i += 3
            else:
                out[k] = (((b & np.uint32(0x07)) << np.uint32(18)) | ((np.uint32(data[i + 1]) & np.uint32(0x3F)) << np.uint32(12))
                          | ((np.uint32(data[i + 2]) & np.uint32(0x3F)) << np.uint32(6)) | (np.uint32(data[i + 3]) & np.uint32(0x3F)))
                i += 4
            k += 1
        out[k] = 0
        k += 1
        lens[t] = k - start
    return k


@_jit
def _sorted_jaccard(indptr, hashes, ra, rb, out):
    """Exact Jaccard of rows ra[i] and rb[i] of a CSR of sorted distinct hashes (two empty rows: 0),
    by merging the two rows."""
    for p in range(ra.size):
        i, i_end = indptr[ra[p]], indptr[ra[p] + 1]
        j, j_end = indptr[rb[p]], indptr[rb[p] + 1]
        na, nb = i_end - i, j_end - j
        if na == 0 or nb == 0:
            out[p] = 0.0
            continue
        inter = 0
        while i < i_end and j < j_end:
            x, y = hashes[i], hashes[j]
            if x == y:
                inter += 1
                i += 1
                j += 1
            elif x < y:
                i += 1
            else:
                j += 1
        out[p] = inter / (na + nb - inter)


@_jit
def _row_agreement(sigs, ia, ib, out):
    """out[p] = the share of columns where rows ia[p] and ib[p] of `sigs` agree (the MinHash
    estimate), read in place: no gathered copy of the two rows."""
    k = sigs.shape[1]
    for p in range(ia.size):
        a, b = ia[p], ib[p]
        same = 0
        for j in range(k):
            if sigs[a, j] == sigs[b, j]:
                same += 1
        out[p] = same / k
