"""curation.normalize.normalize for a chunk of texts at once, in numpy: the normalised texts as
one array of code points, which the shingler (curation.shingles) and the exact key read directly.

Per character, normalize() is a mapping: full/half-width and CJK punctuation to ASCII, NFKC,
casefold, zero-width characters dropped, then whitespace collapsed (none next to a CJK
character). A table holds each BMP character's image when it is one character (or none); a text
with a character that maps to several ('…', 'ß'), composes with its neighbour under NFKC
(combining marks, Hangul jamo), lies outside the BMP (emoji) or is NUL takes normalize() itself
(about 3% of real rows). The result equals [normalize(t) for t in texts] character for character
(tests/test_dedup_bulk.py), at a fraction of the cost: ~40 us a 700-character row in Python.
"""
from __future__ import annotations

import functools
import unicodedata
from typing import Sequence

import numpy as np

from . import normalize as norm
from .lang import CJK_CLASS

DROP = np.uint32(0xFFFFFFFF)     # the character disappears (zero-width)
COMPLEX = np.uint32(0xFFFFFFFE)  # the text takes normalize() itself
SPACE = np.uint32(0x20)


def _one(ch: str) -> str:
    t = norm._FAST.get(ch, ch)
    return unicodedata.normalize("NFKC", t).translate(norm._PUNCT).casefold()


@functools.lru_cache(maxsize=1)
def tables() -> tuple[np.ndarray, np.ndarray]:
    """(image of every code point: a code point, DROP or COMPLEX (all past the BMP); whether a
    BMP code point is CJK). NUL maps to itself: it separates the texts (a text holding NUL is
    sent to normalize() before the lookup)."""
    import re

    composes = {0x1100 + i for i in range(0x100)} | set(range(0x3131, 0x318F)) | set(range(0xA960, 0xA980)) \
        | set(range(0xD7B0, 0xD800))
    for cp in range(0x10000):
        d = unicodedata.normalize("NFD", chr(cp))
        if len(d) > 1:
            composes.add(ord(d[-1]))
    image = np.full(0x110000, COMPLEX, np.uint32)
    image[0] = 0
    for cp in range(1, 0x10000):
        ch = chr(cp)
        if 0xD800 <= cp < 0xE000:
            continue
        r = _one(ch)
        if len(r) > 1 or cp in composes or unicodedata.combining(ch) or any(
                unicodedata.combining(c) or ord(c) in composes for c in r):
            continue
        image[cp] = DROP if not r else SPACE if r.isspace() else ord(r)
    cjk_re = re.compile(f"[{CJK_CLASS}]")
    cjk = np.array([bool(cjk_re.match(chr(cp))) for cp in range(0x10000)], bool)
    cjk[0] = False
    return image, cjk


def normalized_codepoints(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(code points, lens): the normalised texts one after another, each followed by a NUL;
    text i has lens[i] code points, its NUL included."""
    image, cjk = tables()
    texts = [t or "" for t in texts]
    cp, lens = _encode(texts)
    mapped = image.take(cp)
    ends = np.cumsum(lens)
    bad = np.flatnonzero(mapped == COMPLEX)
    pre = sorted(set(np.searchsorted(ends, bad, side="right").tolist())
                 | {i for i, t in enumerate(texts) if "\x00" in t})
    if pre:
        # Those texts take normalize() and are spliced in, normalised already: kept as they are.
        starts = ends - lens
        pieces, at = [], 0
        for i in pre:
            t = norm.normalize(texts[i])
            pieces += [cp[at:starts[i]], np.frombuffer((t + "\x00").encode("utf-32-le"), np.uint32)]
            lens[i] = len(t) + 1
            at = int(ends[i])
        pieces.append(cp[at:])
        cp = np.concatenate(pieces)
        pieces[-1] = image.take(pieces[-1])
        for k in range(0, len(pieces) - 1, 2):
            pieces[k] = image.take(pieces[k])
        mapped = np.concatenate(pieces)
        ends = np.cumsum(lens)
    drop = mapped == DROP
    if drop.any():
        keep_n = np.cumsum(~drop)
        mapped = mapped[~drop]
        ends = keep_n[ends - 1]
        lens = np.diff(ends, prepend=0)
    # Whitespace: a run inside a text becomes one space, none at either end or next to CJK.
    # (Every text ends with its NUL, so a run always has a character after it.)
    ws = mapped == SPACE
    edge = ws.copy()
    edge[1:] &= ~ws[:-1]
    runs = np.flatnonzero(edge)                 # first space of each run
    np.logical_and(ws[:-1], ~ws[1:], out=edge[:-1])
    edge[-1] = False
    before = mapped[np.maximum(runs - 1, 0)]
    after = mapped[np.flatnonzero(edge) + 1]    # the character after each run
    good = (runs > 0) & (before != 0) & (after != 0) & ~cjk[np.minimum(before, 0xFFFF)] \
        & ~cjk[np.minimum(after, 0xFFFF)]
    keep = ~ws
    keep[runs[good]] = True
    for i in pre:
        keep[int(ends[i] - lens[i]):int(ends[i])] = True
    kept = np.cumsum(keep)
    out = mapped[keep]
    ends = kept[ends - 1]
    return out, np.diff(ends, prepend=0)


def _encode(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    joined = "\x00".join(texts) + "\x00"
    cp = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32)
    lens = np.fromiter((len(t) + 1 for t in texts), dtype=np.int64, count=len(texts))
    return cp, lens


def strings(cp: np.ndarray, lens: np.ndarray) -> list[str]:
    """The texts of `normalized_codepoints`' result, as str."""
    joined = cp.tobytes().decode("utf-32-le")
    ends = np.cumsum(lens)
    return [joined[e - n:e - 1] for e, n in zip(ends.tolist(), lens.tolist())]


def normalize_many(texts: Sequence[str]) -> list[str]:
    """[normalize(t) for t in texts], in bulk."""
    if not texts:
        return []
    return strings(*normalized_codepoints(texts))


def exact_keys(cp: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """normalize.exact_key of each text of `normalized_codepoints`' result (0: empty text)."""
    return np.fromiter((norm.exact_key(t) if t else 0 for t in strings(cp, lens)), np.int64, count=lens.size)
