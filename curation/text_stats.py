"""Counts the quality rules take of a text, computed fast and exactly: CJK characters and words
(`units`), distinct character and token n-grams (the repetition rules), and a case-folded copy of a
text for cheap "can this pattern match at all?" checks before a costly regular expression.

Each function gives the same number as the plain regular-expression or set version it replaces
(named in its docstring); tests/test_quality_speed.py checks them against those versions on real
and generated text. The speed comes from numpy over code points instead of Python objects per
character, and from not running a pattern on text that lacks the letters it needs.
"""
from __future__ import annotations

import functools
import re

import numpy as np

from .lang import CJK_CLASS, cjk_bmp

_CJK_RE = re.compile(f"[{CJK_CLASS}]")
_WORD_RE = re.compile(f"[^\\W{CJK_CLASS}]+")
_TOKEN_RE = re.compile(f"[{CJK_CLASS}]|[^\\W{CJK_CLASS}]+")
# ASCII text: word characters (\w: letters, digits, '_') kept, every other byte a space, so that
# bytes.split() gives the runs of word characters (in C, 5x faster than re.findall).
_ASCII_WORDS = bytes(c if (chr(c).isalnum() or c == 0x5F) else 0x20 for c in range(128)) + bytes(128)


@functools.lru_cache(maxsize=1)
def _tables() -> tuple[np.ndarray, np.ndarray]:
    """(is a word character and not CJK, is CJK) for every code point below 0x10000: the classes
    of `[^\\W<CJK>]` and `[<CJK>]` in Python's re (\\w is str.isalnum() or '_')."""
    word = np.fromiter(((chr(c).isalnum() or c == 0x5F) for c in range(0x10000)), dtype=bool, count=0x10000)
    cjk = cjk_bmp()
    return word & ~cjk, cjk


def _code_points(text: str) -> np.ndarray | None:
    """The text's code points, or None when one lies outside the BMP (or is a lone surrogate)."""
    try:
        cp = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    except UnicodeEncodeError:
        return None
    if cp.size and int(cp.max()) >= 0x10000:
        return None
    return cp


@functools.lru_cache(maxsize=64)
def cjk_and_words(text: str) -> tuple[int, int]:
    """(len(CJK_RE.findall(text)), len(re.findall('[^\\W<CJK>]+', text))): CJK characters and
    runs of other word characters."""
    if text.isascii():
        return 0, len(text.encode("ascii").translate(_ASCII_WORDS).split())
    cp = _code_points(text)
    if cp is None:
        return len(_CJK_RE.findall(text)), len(_WORD_RE.findall(text))
    if cp.size == 0:
        return 0, 0
    word, cjk = _tables()
    w = word[cp]
    starts = int(w[0]) + int(np.count_nonzero(w[1:] & ~w[:-1]))
    return int(np.count_nonzero(cjk[cp])), starts


def distinct_char_ngrams(s: str, n: int) -> int:
    """len({s[i:i+n] for i in range(len(s) - n + 1)}) for n <= 5: the code points (or their ranks
    within `s`, when large) packed into one 64-bit key per n-gram."""
    count = len(s) - n + 1
    if count <= 0:
        return 0
    if s.isascii() and n <= 8:
        # each n-gram's bytes read as one little-endian uint64 (windows overlap: stride 1 byte)
        buf = s.encode("ascii") + bytes(8 - n)
        key = np.ndarray(shape=(count,), dtype="<u8", buffer=buf, strides=(1,)) & np.uint64((1 << (8 * n)) - 1)
        key.sort()
        return 1 + int(np.count_nonzero(key[1:] != key[:-1]))
    if s.isascii():
        cp = np.frombuffer(s.encode("ascii"), dtype=np.uint8).astype(np.uint64)
        bits = 7
    else:
        raw = _code_points(s)
        if raw is None:
            return len({s[i:i + n] for i in range(count)})
        if int(raw.max()) < (1 << (64 // n)):
            cp, bits = raw.astype(np.uint64), 64 // n
        else:
            uniq, inv = np.unique(raw, return_inverse=True)
            bits = max(1, int(uniq.size - 1).bit_length())
            if bits * n > 64:
                return len({s[i:i + n] for i in range(count)})
            cp = inv.astype(np.uint64)
    key = np.zeros(count, dtype=np.uint64)
    for k in range(n):
        key <<= np.uint64(bits)
        key |= cp[k:k + count]
    key.sort()
    return 1 + int(np.count_nonzero(key[1:] != key[:-1]))


def token_keys(text: str) -> list:
    """re.findall('[<CJK>]|[^\\W<CJK>]+', text): each CJK character a token, and each run of
    other word characters; for ASCII text the tokens come as bytes (the same tokens, the same
    count and the same repeats)."""
    if text.isascii():
        return text.encode("ascii").translate(_ASCII_WORDS).split()
    return _TOKEN_RE.findall(text)


def distinct_token_ngrams(tokens: list[str], n: int) -> int:
    """len({tuple(tokens[i:i+n]) for i in range(len(tokens) - n + 1)}), built by zip (2x faster)."""
    return len(set(zip(*(tokens[i:] for i in range(n)))))


# re.IGNORECASE also matches these four with ASCII letters ('ı', 'İ' with i, 'ſ' with s, 'K' with k)
_FOLD = str.maketrans({"\u0131": "i", "\u0130": "i", "\u017f": "s", "\u212a": "k"})


@functools.lru_cache(maxsize=64)
def folded(text: str) -> str:
    """Lower case, with the four letters that re.IGNORECASE matches to ASCII ones mapped to them:
    a case-insensitive pattern whose every match contains a literal `w` can only match `text`
    where `w.lower() in folded(text)`."""
    if text.isascii() or not any(c in text for c in "\u0131\u0130\u017f\u212a"):
        return text.lower()
    return text.translate(_FOLD).lower()


def may_contain(text: str, needles: tuple[str, ...]) -> bool:
    """Whether any of `needles` (lower case) occurs in `text`, case-insensitively (see `folded`)."""
    f = folded(text)
    return any(w in f for w in needles)

