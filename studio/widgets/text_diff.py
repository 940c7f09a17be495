"""Two texts side by side with their differences highlighted, as rich `Text`.

Chinese/Japanese/Korean text has no spaces, so it is compared character by character; other text
word by word (whitespace kept as its own tokens, so the layout survives). difflib's
SequenceMatcher runs with autojunk off: with it on, any token making up more than 1% of a text
over 200 tokens (spaces, "的") is ignored and the diff gets confusing.

Every piece of data goes through `visible()` before it becomes Text: markup-looking text is shown
as typed and escape sequences as `\\x1b`, never interpreted.
"""
from __future__ import annotations

import re
from difflib import SequenceMatcher

from rich.text import Text

from curation.lang import CJK_RE
from curation.safe_text import visible

MAX_TOKENS = 20_000  # above this a diff costs seconds (quadratic worst case): show plain text
REMOVED = "bold red on #3a1a1a"   # in the left text, not in the right
ADDED = "bold green on #1a3a1a"   # in the right text, not in the left
_WORDS = re.compile(r"\s+|\w+|[^\w\s]", re.UNICODE)


def tokens(text: str) -> list[str]:
    """Characters when the text holds CJK, else words, spaces and punctuation marks."""
    if CJK_RE.search(text):
        return list(text)
    return _WORDS.findall(text)


def diff_pair(left: str, right: str) -> tuple[Text, Text, float]:
    """(left with its removed parts styled, right with its added parts styled, token ratio)."""
    a, b = tokens(left), tokens(right)
    if len(a) + len(b) > 2 * MAX_TOKENS:
        return Text(visible(left)), Text(visible(right)), 0.0
    matcher = SequenceMatcher(None, a, b, autojunk=False)
    lt, rt = Text(), Text()
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        ls, rs = visible("".join(a[i1:i2])), visible("".join(b[j1:j2]))
        if op == "equal":
            lt.append(ls)
            rt.append(rs)
        else:
            if ls:
                lt.append(ls, style=REMOVED)
            if rs:
                rt.append(rs, style=ADDED)
    return lt, rt, matcher.ratio()
