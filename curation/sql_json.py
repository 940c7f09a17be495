"""JSON text built in SQL, byte for byte what Python's json.dumps(..., ensure_ascii=False) writes:
the fast import's content hash, the messages of a plain single-turn row (`messages_sql`) and
the export's JSON lines are all built with it.

DuckDB's to_json writes nine control characters as \\u000B where json.dumps writes \\u000b
(measured over every code point up to U+2FFFF; nothing else differs). `py_json` swaps each of the
nine for a Unicode noncharacter (U+FDD0...; to_json keeps them as they are), runs to_json, and
writes the lower-case escape in its place. Only text that holds one of the nine and also one of
those noncharacters (no real text does) comes out different; the fast import hashes such a row in
Python (`UPPER_ESCAPES`, `CONTROL`, `MARKS` find it)."""
from __future__ import annotations

from typing import Sequence

UPPER_ESCAPES = (0x0B, 0x0E, 0x0F, 0x1A, 0x1B, 0x1C, 0x1D, 0x1E, 0x1F)
CONTROL = "[" + "".join(f"\\x{{{c:x}}}" for c in UPPER_ESCAPES) + "]"  # RE2 class of the nine
MARKS = "[\\x{fdd0}-\\x{fdd8}]"


def py_json(expr: str, plain: str) -> str:
    """SQL: json.dumps(expr, ensure_ascii=False), given `plain` = to_json(expr) (expr non-null).
    The regexps run only where `plain` holds a \\u00 escape (a fast substring test: 1 row in
    1,000 of real data, against 0.4 s per 100k rows for a regexp over every row)."""
    swapped = expr
    for i, c in enumerate(UPPER_ESCAPES):
        swapped = f"replace({swapped}, chr({c}), chr({0xFDD0 + i}))"
    fixed = f"to_json({swapped})"
    for i, c in enumerate(UPPER_ESCAPES):
        fixed = f"replace({fixed}, chr({0xFDD0 + i}), '\\u{c:04x}')"
    return (f"CASE WHEN contains({plain}, '\\u00') AND regexp_matches({expr}, '{CONTROL}') "
            f"AND NOT regexp_matches({expr}, '{MARKS}') THEN {fixed} ELSE {plain} END")


def json_string_sql(expr: str) -> str:
    """SQL: json.dumps(expr, ensure_ascii=False) for a non-null VARCHAR, to_json's speed."""
    return py_json(expr, f"to_json({expr})")


def chat_pair_json(user_json: str, answer_json: str) -> str:
    """SQL: the messages JSON text of one user turn and one answer (Sample.messages_json), given
    both turns' contents already as JSON strings."""
    return (f"""'[{{"role": "user", "content": ' || {user_json} || '}}, {{"role": "assistant", "content": ' """
            f"|| {answer_json} || '}}]'")


def messages_sql(alias: str = "") -> str:
    """SQL: a sample's messages as JSON text (VARCHAR), for every reader of samples.messages.

    The fast alpaca import stores no messages for its rows (each is one user turn, stored as
    `instruction`, and one answer): this builds them from those two columns, the same text
    Sample.messages_json stores for them. Every other writer stores messages, which this returns
    as they are; a 'text' sample has none."""
    a = f"{alias}." if alias else ""
    built = chat_pair_json(json_string_sql(f"{a}instruction"), json_string_sql(f"{a}answer"))
    return f"coalesce(CAST({a}messages AS VARCHAR), CASE WHEN {a}kind = 'chat' THEN {built} END)"


def columns_sql(columns: Sequence[str]) -> str:
    """A SELECT list of samples columns, `messages` read as `messages_sql` builds it."""
    return ", ".join(messages_sql() if c == "messages" else c for c in columns)


def plain_chat_sql(alias: str = "") -> str:
    """SQL: true for a row whose messages `messages_sql` builds from instruction and answer."""
    a = f"{alias}." if alias else ""
    return f"({a}messages IS NULL AND {a}kind = 'chat')"
