"""Cheap script-based language guess: enough to pick a prompt template, count Chinese in characters
and English in words, and flag an answer written in another script than its instruction.

Returns 'zh', 'ja', 'ko', 'en' (Latin script) or 'other'; '' for text with no letters.

The CJK code points are spelled out here once for the whole curation package (`CJK_RANGES` and
the regex classes built from them); other modules build their patterns from these.
"""
from __future__ import annotations

import functools
import re

KANA_RANGES = ((0x3040, 0x30FF),)
HAN_RANGES = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF))
HANGUL_RANGES = ((0xAC00, 0xD7AF),)            # syllables
HANGUL_JAMO_RANGES = ((0x1100, 0x11FF),)       # counted by `detect`, not by CJK_RE
CJK_RANGES = KANA_RANGES + HAN_RANGES + HANGUL_RANGES


def char_class(ranges, *, re2: bool = False) -> str:
    """The inside of a regex character class for `ranges` ((low, high) code points): Python's re
    takes the characters themselves, RE2 (DuckDB's regexp_*) spells them \\x{...}."""
    if re2:
        return "".join(f"\\x{{{lo:x}}}-\\x{{{hi:x}}}" for lo, hi in ranges)
    return "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in ranges)


CJK_CLASS = char_class(CJK_RANGES)
HAN_CLASS = char_class(HAN_RANGES)

_HAN = re.compile(f"[{HAN_CLASS}]")
_KANA = re.compile(f"[{char_class(KANA_RANGES)}]")
_HANGUL = re.compile(f"[{char_class(HANGUL_RANGES + HANGUL_JAMO_RANGES)}]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]+")
_OTHER_LETTER = re.compile(r"[\u0400-\u04ff\u0600-\u06ff\u0900-\u097f\u0e00-\u0e7f]")

CJK_RE = re.compile(f"[{CJK_CLASS}]")


@functools.lru_cache(maxsize=1)
def cjk_bmp():
    """A numpy bool array over the code points below 0x10000: True where CJK_RE matches (CJK_RANGES
    all lie in the BMP). The table the bulk (numpy) text passes look characters up in."""
    import numpy as np

    table = np.zeros(0x10000, dtype=bool)
    for lo, hi in CJK_RANGES:
        table[lo:hi + 1] = True
    table.flags.writeable = False  # shared by every caller
    return table


def detect(text: str | None, sample_chars: int = 2000) -> str:
    if not text:
        return ""
    text = text[:sample_chars]
    han = len(_HAN.findall(text))
    kana = len(_KANA.findall(text))
    hangul = len(_HANGUL.findall(text))
    # A Latin word weighs like two CJK characters: "快速排序 quicksort" is Chinese with a term in it.
    latin_words = len(_LATIN.findall(text))
    other = len(_OTHER_LETTER.findall(text))
    cjk = han + kana + hangul
    if cjk == 0 and latin_words == 0 and other == 0:
        return ""
    if cjk >= 2 * latin_words and cjk >= other:
        if kana > han * 0.2 and kana > 0:
            return "ja"
        if hangul > han:
            return "ko"
        return "zh"
    if other > latin_words:
        return "other"
    return "en"


def is_cjk(lang: str) -> bool:
    return lang in ("zh", "ja", "ko")


# -- the language a passage is written in, beside what it quotes or names ---------------------------
_QUOTED = re.compile(r'"[^"\n]{1,400}"|“[^”\n]{1,400}”|「[^」\n]{1,400}」|『[^』\n]{1,400}』|《[^》\n]{1,200}》'
                     r"|‘[^’\n]{1,400}’|(?<![A-Za-z0-9])'[^'\n]{1,400}'(?![A-Za-z0-9])"
                     r"|\([^()\n]{1,400}\)|（[^（）\n]{1,400}）|\[[^\[\]\n]{1,400}\]|【[^】\n]{1,400}】")
_URLISH = re.compile(r"(?:https?://|www\.)\S+|\S+@\S+\.\w+", re.I)
_FENCED = re.compile(r"```.*?(?:```|\Z)|~~~.*?(?:~~~|\Z)", re.S)
_INLINE = re.compile(r"`[^`\n]+`")
_LOWER_WORD = re.compile(r"(?<![A-Za-z\u00c0-\u024f])[a-z\u00df-\u00ff][A-Za-z\u00c0-\u024f]+")


def prose_script(text: str | None, given: frozenset[str] = frozenset(), names: bool = False) -> str:
    """'cjk', 'latin', 'other' or '' (not enough prose to tell) for the language a passage is
    written in, leaving out what it only quotes or names: code, quoted and bracketed spans
    ("翻译“good morning”", "冰雪(snow)"), links, and proper nouns (Latin words that start with a
    capital letter, so a Chinese list of English names stays undecided). A Latin word weighs like
    two CJK characters, as in `detect`. Latin words in `given` (lower case: the words of the
    instruction, say, when it quotes an English sentence) do not count either. `names`: count
    capitalised words too (for an instruction, which is rarely a list of names)."""
    if not text:
        return ""
    t = _INLINE.sub(" ", _FENCED.sub(" ", text[:4000]))
    t = _URLISH.sub(" ", t)
    t = _QUOTED.sub(" ", _QUOTED.sub(" ", t))  # twice: a quote inside brackets
    cjk = len(CJK_RE.findall(t))
    words = _LATIN.findall(t) if names else _LOWER_WORD.findall(t)
    latin = sum(1 for w in words if w.lower() not in given and len(w) > 1)
    other = len(_OTHER_LETTER.findall(t))
    if cjk + latin + other < 4:  # too little to tell, except a short all-Chinese answer ("64减17等于47。")
        return "cjk" if cjk >= 3 and not latin and not other else ""
    if cjk >= 2 * latin and cjk >= other:
        return "cjk"
    if other > latin:
        return "other"
    return "latin" if latin >= 3 else ""
