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
from .lang import cjk_bmp
from .text_kernels import KEY_LENGTH_MUL, KEY_SALT, exact_keys_numpy, key_hasher, normalizer, utf8_decoder

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
    return image, cjk_bmp()


def normalized_codepoints(texts: "Sequence[str | None] | Utf8Texts") -> tuple[np.ndarray, np.ndarray]:
    """(code points, lens): the normalised texts one after another, each followed by a NUL;
    text i has lens[i] code points, its NUL included. `texts`: str (None counts as empty), or
    a Utf8Texts (the UTF-8 bytes of an Arrow string column: no Python string per row)."""
    if isinstance(texts, Utf8Texts):
        cp, lens, text_of = texts.codepoints()
    else:
        plain = [t or "" for t in texts]
        cp, lens = _encode(plain)
        text_of = plain.__getitem__
    return _normalize(cp, lens, text_of)


def _normalize(cp: np.ndarray, lens: np.ndarray, text_of) -> tuple[np.ndarray, np.ndarray]:
    image, cjk = tables()
    compiled = normalizer()
    if compiled is not None:  # the same code points, one pass (curation/text_kernels.py)
        return _compiled_normalize(compiled, cp, lens, text_of)
    mapped = image.take(cp)
    ends = np.cumsum(lens)
    bad = np.flatnonzero(mapped == COMPLEX)
    # A NUL inside a text (not the separator after it) also takes normalize().
    nul = np.flatnonzero(cp == 0)
    if nul.size > lens.size:
        bad = np.concatenate([bad, nul[~np.isin(nul, ends - 1)]])
    pre = np.unique(np.searchsorted(ends, bad, side="right")).tolist()
    if pre:
        # Those texts take normalize() and are spliced in, normalised already: kept as they are.
        pieces = _spliced(cp, ends - lens, lens, pre, text_of)
        cp = np.concatenate(pieces)
        pieces[-1] = image.take(pieces[-1])
        for k in range(0, len(pieces) - 1, 2):
            pieces[k] = image.take(pieces[k])
        mapped = np.concatenate(pieces)
        ends = np.cumsum(lens)
    drop = mapped == DROP
    if drop.any():
        # Per-text counts of what stays (every text keeps its NUL: no empty segment).
        lens = np.add.reduceat(~drop, ends - lens, dtype=np.int64)
        mapped = mapped[~drop]
        ends = np.cumsum(lens)
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
    out = mapped[keep]
    return out, np.add.reduceat(keep, ends - lens, dtype=np.int64)


def _compiled_normalize(compiled, cp: np.ndarray, lens: np.ndarray, text_of) -> tuple[np.ndarray, np.ndarray]:
    """_normalize through the compiled kernel; the texts it leaves (out_lens 0: a character that
    maps to several, composes, lies past the BMP, or an inner NUL) take normalize() and are
    spliced in."""
    image, cjk = tables()
    out = np.empty(cp.size, np.uint32)  # no character maps to more than one here
    out_lens = np.empty(lens.size, np.int64)
    used = compiled(np.ascontiguousarray(cp, dtype=np.uint32), np.ascontiguousarray(lens, dtype=np.int64), image, cjk,
                    DROP, COMPLEX, SPACE, out, out_lens)
    out = out[:used]
    left = np.flatnonzero(out_lens == 0).tolist()
    if not left:
        return out, out_lens
    return np.concatenate(_spliced(out, np.cumsum(out_lens) - out_lens, out_lens, left, text_of)), out_lens


def _spliced(arr: np.ndarray, starts: np.ndarray, lens: np.ndarray, which: list[int], text_of) -> list[np.ndarray]:
    """`arr` cut around the texts `which` (text i: lens[i] code points from starts[i]), each
    replaced by normalize() of it and its NUL; lens[i] becomes that length. Even places hold the
    pieces of `arr`, odd places the normalised texts."""
    pieces, at = [], 0
    for i in which:
        t = norm.normalize(text_of(i))
        pieces += [arr[at:starts[i]], np.frombuffer((t + "\x00").encode("utf-32-le"), np.uint32)]
        at = int(starts[i] + lens[i])
        lens[i] = len(t) + 1
    pieces.append(arr[at:])
    return pieces


def _encode(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    joined = "\x00".join(texts) + "\x00"
    cp = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32)
    lens = np.fromiter((len(t) + 1 for t in texts), dtype=np.int64, count=len(texts))
    return cp, lens


class Utf8Texts:
    """Texts as the UTF-8 bytes of an Arrow string column: `data` (uint8) and `offsets` (text i
    is data[offsets[i]:offsets[i+1]], offsets[0] == 0). What the dedup hashing pass hands its
    workers instead of a list of str: no Python object per row on either side."""

    def __init__(self, data: np.ndarray, offsets: np.ndarray):
        self.data, self.offsets = data, offsets

    @classmethod
    def from_arrow(cls, arr) -> "Utf8Texts":
        """From a pyarrow string or large_string array (nulls read as empty texts)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if arr.null_count:
            arr = pc.fill_null(arr, "")
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        odt = np.int64 if pa.types.is_large_string(arr.type) else np.int32
        off = np.frombuffer(arr.buffers()[1], dtype=odt)[arr.offset:arr.offset + len(arr) + 1].astype(np.int64)
        data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[off[0]:off[-1]] if len(arr) and off[-1] > off[0] \
            else np.zeros(0, np.uint8)
        return cls(data, off - off[0])

    def __len__(self) -> int:
        return self.offsets.size - 1

    def codepoints(self):
        """(code points, lens, text_of): as `_encode`, and text i as str."""
        decode = utf8_decoder()
        if decode is not None:  # one pass in numba: no Python string of the whole chunk
            cp = np.empty(self.data.size + len(self), np.uint32)
            lens = np.empty(len(self), np.int64)
            cp = cp[:decode(self.data, self.offsets, cp, lens)]
            data, offsets = self.data, self.offsets
            return cp, lens, lambda i: data[offsets[i]:offsets[i + 1]].tobytes().decode("utf-8")
        n = len(self)
        # A NUL byte after each text, then one decode: the NULs mark where each text ends.
        joined = np.insert(self.data, self.offsets[1:], 0).tobytes().decode("utf-8")
        cp = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32)
        ends = np.flatnonzero(cp == 0) + 1
        if ends.size != n:  # a text holds NUL itself: count its characters the long way
            head = (self.data & 0xC0) != 0x80
            chars = np.array([np.count_nonzero(head[a:b]) for a, b in zip(self.offsets[:-1], self.offsets[1:])],
                             np.int64)
            ends = np.cumsum(chars + 1)
        lens = np.diff(ends, prepend=0)
        starts = ends - lens
        return cp, lens, lambda i: joined[starts[i]:ends[i] - 1]


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
    """normalize.exact_key of each text of `normalized_codepoints`' result (0: empty text), from
    the code points themselves: no Python string per text (text_kernels.exact_keys_numpy)."""
    compiled = key_hasher()
    if compiled is None:
        return exact_keys_numpy(cp, lens)
    out = np.empty(lens.size, np.int64)
    compiled(cp, np.asarray(lens, np.int64), np.uint64(KEY_SALT), np.uint64(KEY_LENGTH_MUL), out)
    return out
