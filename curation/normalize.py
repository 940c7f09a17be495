"""Normalised text: what "the same text" means for exact duplicates and for shingling.

Two samples that differ only in Unicode form, letter case, whitespace, or full-width versus
half-width punctuation are exact duplicates. NFKC folds full-width ASCII ("ＡＢＣ，！") and
compatibility forms; it leaves Chinese punctuation such as "。", "、" and curly quotes alone,
so those are mapped to ASCII here as well. Zero-width characters are dropped.

`field_text_sql(fields)` is the SQL expression that builds the text a dedup field covers, so the
database (not Python) assembles system prompt plus turns for a million rows. For whole samples
each turn starts with a private-use character naming its role (ROLE_MARKS): shingling keeps the
turns apart and tags each shingle with its role, so a translation pair and its reverse
("翻译成英文: X" -> "Y" against "Translate into Chinese: Y" -> "X") share words but not shingles.
"""
from __future__ import annotations

import json
import re
import unicodedata

from .lang import CJK_CLASS
from .sql_json import plain_chat_sql

FIELDS = ("sample", "instruction", "answer")
# Role marks (Unicode private use: no text means them, normalisation keeps them, and the shingler
# reads them as separators that switch the role; curation/shingles.py).
ROLE_MARKS = {"user": "\ue001", "assistant": "\ue002", "system": "\ue003"}
_MARK_SQL = {role: f"chr({ord(mark)})" for role, mark in ROLE_MARKS.items()}

# After NFKC: CJK punctuation and typographic quotes/dashes to their ASCII look-alikes.
_PUNCT = str.maketrans({
    "。": ".", "、": ",", "，": ",", "．": ".", "！": "!", "？": "?", "：": ":", "；": ";",
    "“": '"', "”": '"', "„": '"', "「": '"', "」": '"', "『": '"', "』": '"', "〝": '"', "〞": '"',
    "‘": "'", "’": "'", "‚": "'", "（": "(", "）": ")", "【": "[", "】": "]", "〔": "[", "〕": "]",
    "《": "<", "》": ">", "〈": "<", "〉": ">", "…": "...", "—": "-", "–": "-", "―": "-", "～": "~",
    "〜": "~", "·": ".", "・": ".", "\u3000": " ",
    "\u200b": None, "\u200c": None, "\u200d": None, "\u2060": None, "\ufeff": None, "\x00": " ",
})
# The common full-width forms (U+FF01..U+FF5E are ASCII shifted by 0xFEE0) are mapped here too:
# full NFKC costs ~20 us on a 200-character Chinese text, this substitution ~5 us, and afterwards
# most text is already NFKC so `is_normalized` (0.5 us) lets it skip NFKC entirely.
_FAST = {chr(k): (v or "") for k, v in _PUNCT.items()}
_FAST.update({chr(c): chr(c - 0xFEE0) for c in range(0xFF01, 0xFF5F)})
_FAST_RE = re.compile("[" + re.escape("".join(_FAST)) + "]")
_CJK = CJK_CLASS
# A space before or after a CJK character. Written to start with the literal space, so the regex
# engine jumps from space to space instead of trying a lookbehind at every position (5x faster).
_CJK_SPACE = re.compile(f" (?:(?=[{_CJK}])|(?<=[{_CJK}] ))")
_MARKS_GONE = (ROLE_MARKS["user"], ROLE_MARKS["assistant"], ROLE_MARKS["system"])


def _ascii_but_marks(text: str) -> bool:
    """Whether the only non-ASCII characters are role marks: a marked English sample. Marks are
    kept as they are by every step below, so such text takes the ASCII path (3 C-level replaces
    cost ~1 us; the full path ~40 us on a 700-character sample)."""
    for mark in _MARKS_GONE:
        text = text.replace(mark, "")
    return text.isascii()


def _fast_sub(match: re.Match[str]) -> str:
    return _FAST[match.group()]


def normalize(text: str | None) -> str:
    """NFKC, CJK punctuation to ASCII, casefold, whitespace collapsed to single spaces (none next
    to a CJK character), trimmed."""
    if not text:
        return ""
    plain = text.isascii() or _ascii_but_marks(text)
    if not plain:
        text = _FAST_RE.sub(_fast_sub, text)
        if not unicodedata.is_normalized("NFKC", text):
            text = unicodedata.normalize("NFKC", text).translate(_PUNCT)
    # str.split() splits on every Unicode whitespace, like \s, at a third of re.sub's cost.
    text = " ".join(text.casefold().split())
    # Chinese puts no spaces between words: a space next to a CJK character carries no meaning.
    return text if plain else _CJK_SPACE.sub("", text)


def exact_key(normalized: str) -> int:
    """A signed 64-bit key of normalised text (text_kernels.exact_keys_numpy; 0 for ''): equal keys,
    equal text. The dedup pass computes the same keys in bulk (normalize_bulk.exact_keys)."""
    import numpy as np

    from .text_kernels import exact_keys_numpy

    cp = np.frombuffer((normalized + "\0").encode("utf-32-le"), np.uint32)
    return int(exact_keys_numpy(cp, np.array([cp.size]))[0])


def check_fields(fields: str) -> str:
    from .errors import StudioError

    if fields not in FIELDS:
        raise StudioError(f"unknown dedup fields {fields!r}: use one of {', '.join(FIELDS)}.")
    return fields


def marked_text(messages: list[dict], system: str | None = None) -> str:
    """What `field_text_sql('sample')` builds for a chat sample, in Python (tests and benches use it
    to compute the same texts the database hands to dedup). Tool turns carry the system mark; the
    assistant's tool calls (compact JSON, as DuckDB writes it) follow the turns, after an assistant
    mark, so two samples that differ only in the calls they make are not exact duplicates."""
    parts = [ROLE_MARKS["system"] + system] if system is not None else []
    parts += [ROLE_MARKS.get(m.get("role") or "", ROLE_MARKS["system"]) + (m.get("content") or "") for m in messages]
    calls = [json.dumps(m["tool_calls"], ensure_ascii=False, separators=(",", ":")) for m in messages if m.get("tool_calls")]
    if calls:
        parts.append(ROLE_MARKS["assistant"] + "\n".join(calls))
    return "\n".join(parts)


def field_text_sql(fields: str, alias: str = "s") -> str:
    """SQL for the text a dedup over `fields` compares. 'sample' is the system prompt and every
    turn, each after its role mark (a 'text' sample: its text); 'instruction' the first user turn; 'answer' the last
    assistant turn (a 'text' sample falls back to its text for both)."""
    check_fields(fields)
    a = alias
    if fields == "instruction":
        return f"coalesce({a}.instruction, {a}.text, '')"
    if fields == "answer":
        return f"coalesce({a}.answer, {a}.text, '')"
    # list_zip of the roles and contents: as fast as the contents alone (0.55 s vs 0.66 s per 300k rows).
    # Tool calls (only samples whose messages hold any) follow the turns, as marked_text writes them.
    calls = (f"CASE WHEN contains(CAST({a}.messages AS VARCHAR), '\"tool_calls\"') THEN {_MARK_SQL['assistant']} || "
             f"array_to_string(json_extract_string({a}.messages, '$[*].tool_calls'), chr(10)) END")
    # A row the fast import stored without messages (sql_json.messages_sql) is one user turn and one
    # answer: its marked turns straight from those columns, no JSON built and parsed.
    turns = (f"CASE WHEN {plain_chat_sql(a)} THEN {_MARK_SQL['user']} || {a}.instruction || chr(10) || "
             f"{_MARK_SQL['assistant']} || {a}.answer ELSE "
             f"array_to_string(list_transform(list_zip(json_extract_string({a}.messages, '$[*].role'), "
             f"json_extract_string({a}.messages, '$[*].content')), lambda p: (CASE p[1] WHEN 'user' THEN "
             f"{_MARK_SQL['user']} WHEN 'assistant' THEN {_MARK_SQL['assistant']} ELSE {_MARK_SQL['system']} END) "
             f"|| coalesce(p[2], '')), chr(10)) END")
    return (f"concat_ws(chr(10), CASE WHEN {a}.system IS NOT NULL THEN {_MARK_SQL['system']} || {a}.system END, "
            f"{turns}, {calls}, {a}.text)")
