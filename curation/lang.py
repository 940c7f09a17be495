"""Cheap script-based language guess: enough to pick a prompt template, count Chinese in characters
and English in words, and flag an answer written in another script than its instruction.

Returns 'zh', 'ja', 'ko', 'en' (Latin script) or 'other'; '' for text with no letters.
"""
from __future__ import annotations

import re

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_KANA = re.compile(r"[\u3040-\u30ff]")
_HANGUL = re.compile(r"[\uac00-\ud7af\u1100-\u11ff]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]+")
_OTHER_LETTER = re.compile(r"[\u0400-\u04ff\u0600-\u06ff\u0900-\u097f\u0e00-\u0e7f]")

CJK_RE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")


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
