"""The fast path for alpaca JSON Lines / JSON arrays: DuckDB's `read_json` parses the file on all
cores and SQL builds every stored column (user turn, messages JSON, language, content hash), so no
Python object is made per row. It only imports files it is sure about: any row it cannot vouch
for (a value that is not a string, a blank instruction, history, tags, tools, a parse error, blank
lines that would shift line numbers) sends the whole file to the precise Python path, which then
names each problem by file:line. gzip and zstd files are read by read_json itself (told the
compression found from their first bytes); bzip2 and xz files take the Python path. Its columns
must equal what the Python path stores for the same rows (tests/test_import_formats.py compares
them).
"""
from __future__ import annotations

import logging
import re

import duckdb

from .. import store
from ..lang import HAN_RANGES, HANGUL_JAMO_RANGES, HANGUL_RANGES, KANA_RANGES, char_class
from ..samples import Message, Sample
from ..store import SCHEMA
from .fields import ID_KEYS, WHITESPACE_CLASS

# RE2 spells code points \x{1680}, not \u1680.
_SQL_WHITESPACE = re.sub(r"\\[ux]([0-9a-f]{2,4})", r"\\x{\1}", WHITESPACE_CLASS)

log = logging.getLogger(__name__)
MAX_OBJECT_BYTES = 16 * 1024 * 1024  # a longer row fails read_json: the Python path takes the file
# read_json decompresses these itself (DuckDB 1.4 / 2.0); bz2 and xz files take the Python path.
FAST_COMPRESSIONS = (None, "gzip", "zstd")

# lang.detect in SQL, same character classes (RE2 spells code points \x{...}).
_HAN = f"[{char_class(HAN_RANGES, re2=True)}]"
_KANA = f"[{char_class(KANA_RANGES, re2=True)}]"
_HANGUL = f"[{char_class(HANGUL_RANGES + HANGUL_JAMO_RANGES, re2=True)}]"
_LATIN = r"[A-Za-z\x{c0}-\x{24f}]+"
_OTHER = r"[\x{400}-\x{4ff}\x{600}-\x{6ff}\x{900}-\x{97f}\x{e00}-\x{e7f}]"
# DuckDB's to_json escapes control characters as \u001B where Python's json.dumps writes \u001b:
# rows whose JSON holds "\u00" get their content hash from Python (Sample.content_hash) instead.


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _count(expr: str, cls: str) -> str:
    """How many characters of `expr` are in `cls`: drop runs of the others ('+' keeps the number
    of replacements small), measure what is left."""
    return f"length(regexp_replace({expr}, '[^{cls[1:-1]}]+', '', 'g'))"


# Characters that count for no language in lang.detect and are 3 bytes in UTF-8: general
# punctuation, CJK punctuation, full-width forms. Chinese text is mostly han plus these.
_NEUTRAL3 = r"[\x{2000}-\x{206f}\x{3000}-\x{303f}\x{ff00}-\x{ffef}]"
_COMMON = f"[^\\x00-\\x7f{char_class(HAN_RANGES, re2=True)}\\x{{2000}}-\\x{{206f}}\\x{{3000}}-\\x{{303f}}\\x{{ff00}}-\\x{{ffef}}]"


def _latin_words(p: str) -> str:
    """Runs of Latin letters: collapse everything else to one space, count the spaces."""
    t = f"trim(regexp_replace({p}, '[^A-Za-z\\x{{c0}}-\\x{{24f}}]+', ' ', 'g'))"
    return f"CASE WHEN {t} = '' THEN 0 ELSE length({t}) - length(replace({t}, ' ', '')) + 1 END"


def _decide(han: str, kana: str, hangul: str, latin: str, other: str) -> str:
    cjk = f"({han} + {kana} + {hangul})"
    return f"""CASE
        WHEN {cjk} = 0 AND {latin} = 0 AND {other} = 0 THEN ''
        WHEN {cjk} >= 2 * {latin} AND {cjk} >= {other} THEN
            CASE WHEN {kana} > {han} * 0.2 AND {kana} > 0 THEN 'ja' WHEN {hangul} > {han} THEN 'ko' ELSE 'zh' END
        WHEN {other} > {latin} THEN 'other' ELSE 'en' END"""


def lang_sql(p: str, ascii_only: str | None = None, has_letter: str | None = None) -> str:
    """SQL equal to `lang.detect(p)` for a column `p` already cut to 2000 characters.

    Counting characters with regexp_replace costs about 10 us a row, too slow for a million rows,
    so the common cases take shortcuts that give the same answer:
    - ASCII only: 'en' when there is a letter, else ''.
    - only ASCII, han and 3-byte punctuation (most Chinese): every non-ASCII character is 3 bytes,
      so han = (bytes - chars) / 2 - punctuation; Latin words are counted only when han might be
      less than twice their number.
    - anything else: the five counts, as lang.detect does them.
    """
    n3 = f"((strlen({p}) - length({p})) // 2)"
    neutral = f"(length({p}) - length(regexp_replace({p}, '{_NEUTRAL3}+', '', 'g')))"
    n1 = f"(length({p}) - {n3})"
    han_common = f"({n3} - {neutral})"
    common = f"""CASE WHEN {han_common} = 0 AND NOT regexp_matches({p}, '[A-Za-z]') THEN ''
        WHEN {han_common} >= 2 * {n1} THEN 'zh'
        ELSE {_decide(han_common, '0', '0', _latin_words(p), '0')} END"""
    han, kana, hangul, other = (_count(p, c) for c in (_HAN, _KANA, _HANGUL, _OTHER))
    full = _decide(han, kana, hangul, _latin_words(p), other)
    ascii_only = ascii_only or f"strlen({p}) = length({p})"
    has_letter = has_letter or f"regexp_matches({p}, '[A-Za-z]')"
    return f"""CASE WHEN {ascii_only}
            THEN CASE WHEN {has_letter} THEN 'en' ELSE '' END
        WHEN NOT regexp_matches({p}, '{_COMMON}') THEN {common}
        ELSE {full} END"""


def _source_ctes(json_format: str, mapping: dict[str, str], *, typed: bool, compression: str | None = None) -> str:
    """CTEs ending in `probed`: the file's fields as text, `_ord` (1-based row), `user_turn`.
    With `typed`, fields are read as JSON and `_typed` says whether each is what the fast path
    takes (strings, integer ids, no history/tags); without, they are read as VARCHAR, 5x faster,
    which is right only after a typed pass found every row valid (VARCHAR turns 5 into '5').
    One `?` parameter: the file path. `compression` (gzip or zstd, found from the file's first bytes)
    is told to read_json, which would otherwise go by the file's name."""
    def col(name: str) -> str:
        return mapping.get(name, name)

    wanted = ["instruction", "input", "output", "system", *ID_KEYS] + (["history", "tags", "tools"] if typed else [])
    file_cols = {col(n): n for n in wanted}
    kind = "JSON" if typed else "VARCHAR"
    columns = "{" + ", ".join(f"{_sql_str(f)}: '{kind}'" for f in file_cols) + "}"
    sel = ", ".join(f'"{f.replace(chr(34), chr(34) * 2)}" AS "c_{n}"' for f, n in file_cols.items())
    if typed:
        ids = " ".join(
            f"WHEN c_{k} IS NOT NULL THEN CASE WHEN json_type(c_{k}) = 'VARCHAR' THEN c_{k} ->> '$' ELSE CAST(c_{k} AS VARCHAR) END"
            for k in ID_KEYS)
        id_ok = " AND ".join(f"(c_{k} IS NULL OR json_type(c_{k}) IN ('VARCHAR', 'BIGINT', 'UBIGINT'))" for k in ID_KEYS)
        fields = f"""json_type(c_instruction) = 'VARCHAR' AND json_type(c_output) = 'VARCHAR'
              AND (c_input IS NULL OR json_type(c_input) = 'VARCHAR')
              AND (c_system IS NULL OR json_type(c_system) = 'VARCHAR')
              AND c_history IS NULL AND c_tags IS NULL AND c_tools IS NULL AND {id_ok} AS _typed,
            c_instruction ->> '$' AS instruction, c_input ->> '$' AS input, c_output ->> '$' AS output,
            c_system ->> '$' AS system, CASE {ids} END AS source_id, _ord"""
    else:
        fields = ("c_instruction AS instruction, c_input AS input, c_output AS output, c_system AS system, "
                  f"coalesce({', '.join(f'c_{k}' for k in ID_KEYS)}) AS source_id, _ord")
    user = (f"CASE WHEN input IS NULL OR regexp_full_match(input, '[{_SQL_WHITESPACE}]*') THEN instruction "
            f"ELSE instruction || chr(10) || chr(10) || input END")
    # WITH ORDINALITY numbers rows in file order even though read_json parses in parallel; with
    # no blank lines (checked before) it is the line number of a JSON Lines row.
    return f"""
    WITH src AS (
        SELECT {sel}, ordinality AS _ord FROM read_json(?, format = '{json_format}', columns = {columns},
                                    maximum_object_size = {MAX_OBJECT_BYTES}, compression = '{compression or "none"}') WITH ORDINALITY
    ), typed AS (
        SELECT {fields} FROM src
    ), probed AS (
        SELECT *, {user} AS user_turn FROM typed
    )"""


def check_query(json_format: str, mapping: dict[str, str], compression: str | None = None) -> str:
    """(rows, rows the fast path cannot vouch for). Cheap: no hashing, no language."""
    blank = f"regexp_full_match(instruction, '[{_SQL_WHITESPACE}]*')"
    return _source_ctes(json_format, mapping, typed=True, compression=compression) + f"""
    SELECT count(*), count(*) FILTER (WHERE NOT coalesce(_typed AND NOT {blank}, FALSE)) FROM typed"""


def insert_query(json_format: str, mapping: dict[str, str], compression: str | None = None) -> str:
    """INSERT the file's rows as samples. Parameters: path, first id, source file, import id, tags."""
    cols = ", ".join(name for name in SCHEMA.names)
    # search_text (browse's search column) is set by every writer, with store's expression.
    search_sql = getattr(store, "SEARCH_TEXT_SQL", None)
    search_col = ", search_text" if search_sql else ""
    search_val = ",\n        " + search_sql.replace("instruction", "user_turn").replace("answer", "output").replace("text)", "NULL)") if search_sql else ""
    return f"INSERT INTO samples (id, {cols}, status, import_id{search_col})" + _source_ctes(json_format, mapping, typed=False, compression=compression) + f"""
    SELECT
        $2 + _ord - 1,
        'chat',
        nullif(system, ''),
        '[{{"role": "user", "content": ' || to_json(user_turn) || '}}, {{"role": "assistant", "content": ' || to_json(output) || '}}]',
        NULL,
        user_turn,
        output,
        {lang_sql("left(user_turn || ' ' || output, 2000)", "strlen(user_turn) = length(user_turn) AND strlen(output) = length(output)")},
        CAST($5 AS VARCHAR[]),
        $3,
        _ord,
        source_id,
        NULL,
        'import',
        NULL,
        CASE WHEN contains(to_json(user_turn) || to_json(output) || to_json(coalesce(system, '')), '\\u00') THEN '?'
             ELSE sha256('["chat",' || to_json(coalesce(system, '')) || ',[["user",' || to_json(user_turn)
                         || '],["assistant",' || to_json(output) || ']],""]') END,
        NULL,
        'pending',
        $4{search_val}
    FROM probed""".replace("read_json(?", "read_json($1")


def rows_if_fast(cur: duckdb.DuckDBPyConnection, path: str, json_format: str, mapping: dict[str, str],
                 compression: str | None = None) -> int | None:
    """How many rows the fast path would import, or None when the precise path must take the file.
    Run on its own cursor: a parse error here must not abort the import's transaction."""
    if compression not in FAST_COMPRESSIONS:
        return None
    try:
        rows, doubtful = cur.execute(check_query(json_format, mapping, compression), [path]).fetchall()[0]
    except duckdb.Error as exc:
        log.debug("fast path declined %s: %s", path, exc)
        return None  # a parse error, a row too long, not an object: the Python path says where
    return int(rows) if rows and not doubtful else None


def insert_alpaca(con: duckdb.DuckDBPyConnection, path: str, source_file: str, json_format: str,
                  mapping: dict[str, str], rows: int, import_id: int, *, compression: str | None = None,
                  tags: tuple[str, ...] = ()) -> tuple[int, int]:
    """Insert the rows `rows_if_fast` counted, in the caller's transaction; (first id, last id).
    `tags` go on every row (a dataset repository's split)."""
    first = reserve_ids(con, rows)
    con.execute(insert_query(json_format, mapping, compression), [path, first, source_file, import_id, list(tags)])
    _hash_in_python(con, first, first + rows - 1)
    return first, first + rows - 1


def reserve_ids(con: duckdb.DuckDBPyConnection, n: int) -> int:
    """Take `n` consecutive sample ids and return the first, as store.insert_arrow does: ids stay
    contiguous and in file order."""
    first = con.execute("SELECT nextval('sample_id_seq')").fetchall()[0][0]
    if n > 1:
        con.execute(f"SELECT max(nextval('sample_id_seq')) FROM range({n - 1})").fetchall()
    return int(first)


def _hash_in_python(con: duckdb.DuckDBPyConnection, first: int, last: int) -> None:
    todo = con.execute(
        "SELECT id, system, instruction, answer FROM samples WHERE id BETWEEN ? AND ? AND content_hash = '?'",
        [first, last]).fetchall()
    if not todo:
        return
    ids = [r[0] for r in todo]
    hashes = [Sample(kind="chat", system=system, messages=(Message("user", user), Message("assistant", answer))).content_hash()
              for _, system, user, answer in todo]
    con.execute(
        "UPDATE samples SET content_hash = h.hash FROM (SELECT unnest(?) AS id, unnest(?) AS hash) h "
        "WHERE samples.id = h.id", [ids, hashes])
