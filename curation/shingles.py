"""Shingles for bilingual text, and MinHash signatures computed from them in bulk with numpy.

Chinese has no spaces, so words make no sense there: a CJK run ("请把这段话") is shingled by
character n-grams, everything else by word n-grams, and mixed text is split into CJK runs and
non-CJK runs first ("请把 quick sort 写成 Python" -> runs 请把 | quick sort | 写成 | python). Punctuation
and whitespace only separate tokens, so full-width versus half-width punctuation never changes a
shingle. A run shorter than n tokens gives one shingle of the whole run, so "你好" still counts.

Speed is the point of this module: datasketch's per-token `MinHash.update` manages ~3.5k docs/s.
Here a whole chunk of texts is hashed at once: code points go into one numpy array, tokens are
hashed with a position-weighted polynomial (mod 2^64), n consecutive token hashes combine into a
shingle hash, and the MinHash is datasketch's own "affine32" scheme (MurmurHash3 fmix32 pre-mix,
then a*h+b mod 2^32 with datasketch's permutation parameters for the same seed) with a segmented
minimum per text. A signature equals `MinHash(num_perm, seed, hashfunc=identity).update_batch(
shingle_hashes)` bit for bit (tests/test_dedup.py's test_signatures_equal_datasketch_minhash_bit_for_bit
checks), so it works with datasketch's LSH.

Turns: a role mark (U+E001 user, U+E002 assistant, U+E003 system: curation.normalize.ROLE_MARKS)
starts a turn. No shingle spans two turns, and each token hash is salted with its turn's role, so
the same words asked in one sample and answered in another do not count as shared. Text without
marks (single fields, plain text) hashes exactly as before.

`shingles(text, n)` is the readable reference: the same shingles as strings.
"""
from __future__ import annotations

import functools
import re
import unicodedata
from typing import Sequence

import numpy as np

from .distinct import distinct
from .lang import CJK_CLASS, CJK_RANGES
from .text_kernels import fmix64, shingler

DEFAULT_SHINGLE = 3  # CJK: 3 characters; elsewhere: 3 words
SEED = 1  # datasketch MinHash's default seed
EMPTY = np.uint32(0xFFFFFFFF)  # signature value of a text with no shingles

_CJK_RANGES = CJK_RANGES
_SEP, _WORD, _CJK = 0, 1, 2
_MARK_LO, _MARK_HI = 0xE001, 0xE003  # role marks; classed as separators (private use, category Co)
_MARKS_RE = re.compile("([\ue001-\ue003])")

# uint64 constants; numpy integer arrays wrap on overflow, which is the arithmetic wanted here.
_P_CHAR = np.uint64(0x100000001B3)
_Q_TOKEN = np.uint64(0x9E3779B97F4A7C15)
_C_MUL = np.uint64(0xBF58476D1CE4E5B9)


@functools.lru_cache(maxsize=1)
def _bmp_classes() -> np.ndarray:
    """Class of every code point below 0x10000: separator, word character, or CJK character."""
    table = np.zeros(0x10000, dtype=np.uint8)
    for cp in range(0x10000):
        if unicodedata.category(chr(cp))[0] in "LNM":
            table[cp] = _WORD
    table[ord("_")] = _WORD
    for lo, hi in _CJK_RANGES:
        table[lo:hi + 1] = _CJK
    table[0x30FB] = _SEP  # katakana middle dot is punctuation
    return table


def _classes(cp: np.ndarray) -> np.ndarray:
    if cp.size == 0 or int(cp.max()) < 0x10000:  # the common case: one table lookup, no masks
        return _bmp_classes()[cp]
    out = np.empty(cp.shape, dtype=np.uint8)
    bmp = cp < 0x10000
    out[bmp] = _bmp_classes()[cp[bmp]]
    if not bmp.all():
        sup = cp[~bmp]
        # CJK extension planes are CJK; emoji and symbols (U+1F000..) separate; the rest are letters.
        out[~bmp] = np.where((sup >= 0x20000) & (sup < 0x40000), _CJK,
                             np.where((sup >= 0x1F000) & (sup < 0x20000), _SEP, _WORD))
    return out


def shingle_hashes(texts: Sequence[str], n: int = DEFAULT_SHINGLE) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of the shingles of each (already normalised) text.

    Returns (hashes, offsets): text i's shingles are hashes[offsets[i]:offsets[i+1]], in order of
    appearance, repeats kept (MinHash does not care; `shingle_set` dedups for exact Jaccard)."""
    if n < 1:
        raise ValueError("shingle size must be at least 1")
    count = len(texts)
    if count == 0:
        return np.zeros(0, np.uint32), np.zeros(1, np.int64)
    joined = "\x00".join(texts) + "\x00"
    cp = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32)
    lens = np.fromiter((len(t) + 1 for t in texts), dtype=np.int64, count=count)
    return codepoint_shingle_hashes(cp, lens, n)


def codepoint_shingle_hashes(cp: np.ndarray, lens: np.ndarray, n: int = DEFAULT_SHINGLE) -> tuple[np.ndarray, np.ndarray]:
    """`shingle_hashes` of texts given as code points one after another, each followed by a
    separator (NUL): text i is lens[i] code points, its separator included
    (curation.normalize_bulk.normalized_codepoints)."""
    count = lens.size
    if count == 0:
        return np.zeros(0, np.uint32), np.zeros(1, np.int64)
    compiled = shingler()
    if compiled is not None:  # the same hashes, one pass (curation/text_kernels.py)
        return _compiled_hashes(compiled, cp, lens, n)
    ends = np.cumsum(lens)  # text i's characters end before ends[i]
    cls = _classes(cp)  # NUL (between texts) is a separator in the table
    is_word = cls == _WORD
    is_cjk = cls == _CJK
    prev_word = np.empty_like(is_word)
    prev_word[0] = False
    prev_word[1:] = is_word[:-1]
    tok_start = (is_word & ~prev_word) | is_cjk
    tok_char = is_word | is_cjk
    starts = np.flatnonzero(tok_start)
    if starts.size == 0:
        return np.zeros(0, np.uint32), np.zeros(count + 1, np.int64)
    # Token hash: sum of mixed code point * P^position-in-token, over the token's characters.
    chars = np.flatnonzero(tok_char)
    start_of_char = tok_start[chars]  # every token starts on a token character
    tok_of_char = np.cumsum(start_of_char, dtype=np.int64) - 1
    pos = chars - starts[tok_of_char]
    powers = np.ones(int(pos.max()) + 1, dtype=np.uint64)
    powers[1:] = np.cumprod(np.full(powers.size - 1, _P_CHAR, dtype=np.uint64))
    x = (cp[chars].astype(np.uint64) + np.uint64(1)) * _C_MUL
    starts_in_chars = np.flatnonzero(start_of_char)
    th = fmix64(np.add.reduceat(x * powers[pos], starts_in_chars))
    ttype = is_cjk[starts]
    tsample = np.searchsorted(ends, starts, side="right")
    # Runs: consecutive tokens of one type in one text (and one turn, below).
    t = th.size
    run_start = np.ones(t, dtype=bool)
    run_start[1:] = (ttype[1:] != ttype[:-1]) | (tsample[1:] != tsample[:-1])
    # Turns: a token belongs to the turn of the last role mark before it in its text. Marks are few,
    # so this works on the token starts (searchsorted) rather than on every code point.
    marks = np.flatnonzero((cp - np.uint32(_MARK_LO)) <= np.uint32(_MARK_HI - _MARK_LO))
    if marks.size:
        before = np.searchsorted(marks, starts)  # marks before each token: a turn id
        prev = marks[np.maximum(before - 1, 0)]
        text_start = (ends - lens)[tsample]
        in_turn = (before > 0) & (prev >= text_start)
        trole = np.where(in_turn, cp[prev] - np.uint32(_MARK_LO - 1), 0)
        th = th ^ _ROLE_SALT[trole]
        run_start[1:] |= before[1:] != before[:-1]
    run_id = np.cumsum(run_start) - 1
    run_first = np.flatnonzero(run_start)
    run_len = np.diff(np.append(run_first, t))
    k = run_len[run_id]
    pos_in_run = np.arange(t) - run_first[run_id]
    valid = (pos_in_run + n <= k) | ((pos_in_run == 0) & (k < n))
    th_pad = np.concatenate([th, np.zeros(n, np.uint64)])
    idx = np.flatnonzero(valid)
    # A shingle's n tokens lie in its run, except the one shingle of a run shorter than n (few):
    # its places past the run count as 0.
    short = np.flatnonzero(k[idx] < n)
    short_len = k[idx[short]]
    sh = th_pad[idx]
    for m in range(1, n):
        comp = th_pad[idx + m]
        if short.size:
            comp[short[short_len <= m]] = 0
        sh *= _Q_TOKEN
        sh += comp
    hashes = (fmix64(sh) >> np.uint64(32)).astype(np.uint32)
    counts = np.bincount(tsample[idx], minlength=count)
    offsets = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return hashes, offsets


# role 0 (no mark) leaves a token hash as it is; 1..3 (user, assistant, system) salt it
_ROLE_SALT = np.array([0, 0x9E6C63D0676A9A99, 0x5851F42D4C957F2D, 0xD6E8FEB86659FD93], dtype=np.uint64)


def _compiled_hashes(compiled, cp: np.ndarray, lens: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """codepoint_shingle_hashes through the compiled kernel (a text has at most one shingle per
    code point, so `cp.size` bounds the output)."""
    out = np.empty(cp.size, np.uint32)
    counts = np.empty(lens.size, np.int64)
    k = compiled(np.ascontiguousarray(cp, dtype=np.uint32), np.ascontiguousarray(lens, dtype=np.int64), int(n),
                 _bmp_classes(), _ROLE_SALT, _P_CHAR, _Q_TOKEN, _C_MUL, _MARK_LO, _MARK_HI, out, counts)
    offsets = np.zeros(lens.size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return out[:k].copy(), offsets


def shingle_set(text: str, n: int = DEFAULT_SHINGLE) -> np.ndarray:
    """Sorted distinct shingle hashes of one normalised text (for exact Jaccard)."""
    h, _ = shingle_hashes([text], n)
    return distinct(h)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard of two sorted distinct hash arrays (two empty sets count as different)."""
    if a.size == 0 or b.size == 0:
        return 0.0
    inter = np.intersect1d(a, b, assume_unique=True).size
    return inter / (a.size + b.size - inter)


@functools.lru_cache(maxsize=8)
def permutations(num_perm: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's affine32 permutation parameters (a, b) for `num_perm` and `seed`, drawn the
    way `MinHash._init_permutations` draws them (odd a, any b, from RandomState(seed)), without
    importing datasketch (and scipy) into every worker process. tests/test_dedup.py compares the
    signatures with datasketch's own MinHash bit for bit."""
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return np.ascontiguousarray(a), np.ascontiguousarray(b)


def _fmix32(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def signatures(hashes: np.ndarray, offsets: np.ndarray, num_perm: int, seed: int = SEED,
               block: int = 2048) -> np.ndarray:
    """MinHash signatures, shape (texts, num_perm) uint32; a text without shingles gets EMPTY."""
    a, b = permutations(num_perm, seed)
    count = offsets.size - 1
    sig = np.full((count, num_perm), EMPTY, dtype=np.uint32)
    hv = _fmix32(hashes)
    nonempty = np.flatnonzero(offsets[1:] > offsets[:-1])
    # Work through texts in blocks of about `block` shingles: the (shingles x num_perm) matrix of
    # permuted values stays in the CPU cache (2048 x 128 x 4 B = 1 MB: 13 us a text against 18 us
    # with 32768-row blocks).
    i = 0
    buf = np.empty((block, num_perm), dtype=np.uint32)
    while i < nonempty.size:
        lo = offsets[nonempty[i]]
        j = int(np.searchsorted(offsets[nonempty + 1], lo + block, side="right"))
        j = max(j, i + 1)
        hi = offsets[nonempty[j - 1] + 1]
        rows = hi - lo
        m = buf[:rows] if rows <= block else np.empty((rows, num_perm), dtype=np.uint32)
        np.multiply(hv[lo:hi, None], a[None, :], out=m)
        np.add(m, b[None, :], out=m)
        sig[nonempty[i:j]] = np.minimum.reduceat(m, offsets[nonempty[i:j]] - lo, axis=0)
        i = j
    return sig


# -- readable reference ------------------------------------------------------------------------
_CJK_CLASS = CJK_CLASS.replace("\u3040-\u30ff", "\u3040-\u30fa\u30fc-\u30ff")  # the katakana middle dot is punctuation
_TOKEN = re.compile(f"[{_CJK_CLASS}]|[^\\W{_CJK_CLASS}]+")
_IS_CJK = re.compile(f"[{CJK_CLASS}]")


def shingles(text: str, n: int = DEFAULT_SHINGLE) -> list[str]:
    """The shingles of one normalised text as strings: CJK runs give character n-grams (joined
    without a space), other runs word n-grams (joined with a space); inside a turn (after a role
    mark) each shingle starts with that mark. Used by the plain datasketch pipeline in benches/ and
    by tests; the bulk path above computes the same sets as hashes."""
    if _MARKS_RE.search(text):
        out: list[str] = []
        role = ""
        for part in _MARKS_RE.split(text):
            if _MARKS_RE.fullmatch(part):
                role = part
            elif part:
                out.extend(role + sh for sh in _shingles_unmarked(part, n))
        return out
    return _shingles_unmarked(text, n)


def _shingles_unmarked(text: str, n: int) -> list[str]:
    tokens = _TOKEN.findall(text)
    out: list[str] = []
    run: list[str] = []
    run_cjk = False

    def flush() -> None:
        if not run:
            return
        joiner = "" if run_cjk else " "
        if len(run) < n:
            out.append(joiner.join(run))
        else:
            out.extend(joiner.join(run[i:i + n]) for i in range(len(run) - n + 1))

    for tok in tokens:
        cjk = bool(_IS_CJK.match(tok)) and len(tok) == 1
        if run and cjk != run_cjk:
            flush()
            run = []
        run_cjk = cjk
        run.append(tok)
    flush()
    return out
