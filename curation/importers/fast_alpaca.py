"""The fast path for alpaca JSON Lines / JSON arrays: DuckDB's `read_json` parses the file on all
cores and SQL builds every stored column (user turn, messages JSON, language, content hash), so no
Python object is made per row. It only imports files it is sure about: any row it cannot vouch
for (a value that is not a string, a blank instruction, history, tags, tools, a parse error, blank
lines that would shift line numbers) sends the whole file to the precise Python path, which then
names each problem by file:line. gzip and zstd files are read by read_json itself (told the
compression found from their first bytes); bzip2 and xz files take the Python path. Its columns
must equal what the Python path stores for the same rows (tests/test_import_formats.py and
tests/test_import_fast_sql.py compare them).

Profile (cProfile and EXPLAIN ANALYZE, 100k real-length bilingual rows from benches/io_speed.py,
2 loaded cores; benches/results/io.md): the import took 10.5 s, 8.8 s of it in the one INSERT.
Three causes: (1) WITH ORDINALITY is a streaming window, which DuckDB runs on one thread, and
everything computed above it in the same query ran there too: the rows are now landed numbered in
a temporary table first (`stage_query`), and the INSERT from it runs on all cores; (2) language
detection was one CASE whose branches repeated their regexp counts (7.7 s): rows are now classed
by cheap tests and each count taken once, only for the classes that need it (`lang_ctes`); (3) the
content hash of any row whose JSON held backslash-u00 (a control character, or a literal backslash-u in
code) was computed in Python: DuckDB's to_json differs from json.dumps only in the case of nine
escapes, which `_py_json` fixes in SQL. What is left is the work itself: sha256 over the content
(~1 s per 100k rows), the regexps of Chinese rows, and writing instruction, answer and messages to
the file: about 2x the text read_json writes. Two later cuts (300k realistic rows): the text
columns are stored uncompressed (migrations 0008, 0010), and search_text is filled after the
import, not in it (`insert_query`).
"""
from __future__ import annotations

import logging
import re

import duckdb

from ..lang import HAN_RANGES, HANGUL_JAMO_RANGES, HANGUL_RANGES, KANA_RANGES, char_class
from ..samples import Message, Sample
from ..store import COLUMN_NAMES
from .fields import ID_KEYS, WHITESPACE_CLASS

# RE2 spells code points \x{1680}, not \u1680.
SQL_WHITESPACE = re.sub(r"\\[ux]([0-9a-f]{2,4})", r"\\x{\1}", WHITESPACE_CLASS)

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
# Any character that counts as CJK or as another script's letter: text without one is '' or 'en'.
_SCRIPTED = (f"[{char_class(KANA_RANGES + HAN_RANGES + HANGUL_RANGES + HANGUL_JAMO_RANGES, re2=True)}"
             r"\x{400}-\x{4ff}\x{600}-\x{6ff}\x{900}-\x{97f}\x{e00}-\x{e7f}]")


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _count(expr: str, cls: str) -> str:
    """How many characters of `expr` are in `cls`: drop runs of the others ('+' keeps the number
    of replacements small), measure what is left."""
    return f"length(regexp_replace({expr}, '[^{cls[1:-1]}]+', '', 'g'))"


# Characters that count for no language in lang.detect and are 3 bytes in UTF-8: general
# punctuation, CJK punctuation, full-width forms. Chinese text is mostly han plus these.
_NEUTRAL3 = r"[\x{2000}-\x{206f}\x{3000}-\x{303f}\x{ff00}-\x{ffef}]"
# A class-2 probe less these keeps its ASCII letters and neutral punctuation: one pass counts both.
_KEPT2 = r"[^A-Za-z\x{2000}-\x{206f}\x{3000}-\x{303f}\x{ff00}-\x{ffef}]"
_COMMON = f"[^\\x00-\\x7f{char_class(HAN_RANGES, re2=True)}\\x{{2000}}-\\x{{206f}}\\x{{3000}}-\\x{{303f}}\\x{{ff00}}-\\x{{ffef}}]"


def _latin_words(p: str) -> str:
    """Runs of Latin letters (lang.detect's words), counted once."""
    return f"len(regexp_extract_all({p}, '{_LATIN}'))"


def _decide(han: str, kana: str, hangul: str, latin: str, other: str) -> str:
    cjk = f"({han} + {kana} + {hangul})"
    return f"""CASE
        WHEN {cjk} = 0 AND {latin} = 0 AND {other} = 0 THEN ''
        WHEN {cjk} >= 2 * {latin} AND {cjk} >= {other} THEN
            CASE WHEN {kana} > {han} * 0.2 AND {kana} > 0 THEN 'ja' WHEN {hangul} > {han} THEN 'ko' ELSE 'zh' END
        WHEN {other} > {latin} THEN 'other' ELSE 'en' END"""


def lang_ctes(source: str, probe: str, ascii_only: str) -> tuple[str, str]:
    """(CTEs after `source`, the SQL of the language of each row) equal to `lang.detect(probe)`.
    The CTEs are `lang_class`, `lang_counts`, then `lang_words` (select from it); `probe` must be cut to 2000
    characters already.

    Profiled on 100k real-length rows (benches/io_speed.py): counting characters with
    regexp_replace costs 5-20 us a row, and lang.detect's rule spelled as one CASE evaluated its
    counts again in every branch: 7.7 s of a 10.5 s import. So each row is first put in a class by
    cheap tests, and only the counts its class needs are taken, once, as columns:
    - 0: ASCII only: 'en' when there is a letter, else '' (the common English row);
    - 1: no CJK and no other script's letter (English with a dash or an accent): 'en' or '';
    - 2: only ASCII, han and 3-byte punctuation (most Chinese): every non-ASCII character is 3
      bytes, so han = (bytes - chars) / 2 - punctuation; one regexp pass keeps the ASCII letters
      and the punctuation, whose bytes and characters count both; Latin words are counted only
      when han is less than twice the ASCII letters (a word has at least one letter);
    - 3: anything else: the five counts, as lang.detect takes them.
    """
    lp = "_lang_probe"
    ctes = f""", lang_class AS (
        SELECT *, CASE WHEN {ascii_only} THEN 0 WHEN NOT regexp_matches({lp}, '{_SCRIPTED}') THEN 1
                       WHEN NOT regexp_matches({lp}, '{_COMMON}') THEN 2 ELSE 3 END AS _lang_class
        FROM (SELECT *, {probe} AS {lp} FROM {source})
    ), lang_counts AS (
        SELECT *,
            CASE WHEN _lang_class < 2 THEN regexp_matches({lp}, '[A-Za-z\\x{{c0}}-\\x{{24f}}]') END AS _has_letter,
            CASE WHEN _lang_class = 2 THEN regexp_replace({lp}, '{_KEPT2}+', '', 'g') END AS _kept2,
            CASE WHEN _lang_class = 3 THEN {_count(lp, _HAN)} END AS _han3,
            CASE WHEN _lang_class = 3 THEN {_count(lp, _KANA)} END AS _kana3,
            CASE WHEN _lang_class = 3 THEN {_count(lp, _HANGUL)} END AS _hangul3,
            CASE WHEN _lang_class = 3 THEN {_count(lp, _OTHER)} END AS _other3,
            CASE WHEN _lang_class = 3 THEN {_latin_words(lp)} END AS _words3
        FROM lang_class
    ), lang_split AS (
        -- _kept2 holds the ASCII letters (1 byte) and the neutral punctuation (3 bytes) of a class-2 probe
        SELECT *, (strlen({lp}) - length({lp})) // 2 - (strlen(_kept2) - length(_kept2)) // 2 AS _han2,
               length(_kept2) - (strlen(_kept2) - length(_kept2)) // 2 AS _letters2
        FROM lang_counts
    ), lang_words AS (
        SELECT *, CASE WHEN _lang_class = 2 AND _han2 > 0 AND _han2 < 2 * _letters2 THEN {_latin_words(lp)} END AS _words2
        FROM lang_split
    )"""
    lang = f"""CASE _lang_class
        WHEN 0 THEN CASE WHEN _has_letter THEN 'en' ELSE '' END
        WHEN 1 THEN CASE WHEN _has_letter THEN 'en' ELSE '' END
        WHEN 2 THEN CASE WHEN _han2 = 0 THEN CASE WHEN _letters2 > 0 THEN 'en' ELSE '' END
                         WHEN _han2 >= 2 * _letters2 THEN 'zh'
                         ELSE {_decide('_han2', '0', '0', '_words2', '0')} END
        ELSE {_decide('_han3', '_kana3', '_hangul3', '_words3', '_other3')} END"""
    return ctes, lang


# DuckDB's to_json writes nine control characters as \u000B where Python's json.dumps writes
# \u000b (measured over every code point up to U+2FFFF; nothing else differs). The content hash
# and the messages JSON must equal Python's, so `_py_json` swaps each of the nine for a Unicode
# noncharacter (U+FDD0...; to_json keeps them as they are), runs to_json, and writes the
# lower-case escape in its place: no row's hash leaves SQL for an escape. Only a row that holds
# one of the nine and also one of those noncharacters (no real text does) is hashed in Python.
_UPPER_ESCAPES = (0x0B, 0x0E, 0x0F, 0x1A, 0x1B, 0x1C, 0x1D, 0x1E, 0x1F)
_CONTROL = "[" + "".join(f"\\x{{{c:x}}}" for c in _UPPER_ESCAPES) + "]"
_MARKS = "[\\x{fdd0}-\\x{fdd8}]"


def _py_json(expr: str, plain: str) -> str:
    """SQL: json.dumps(expr, ensure_ascii=False), given `plain` = to_json(expr) (expr non-null).
    The regexps run only where `plain` holds a \\u00 escape (a fast substring test: 1 row in
    1,000 of real data, against 0.4 s per 100k rows for a regexp over every row)."""
    swapped = expr
    for i, c in enumerate(_UPPER_ESCAPES):
        swapped = f"replace({swapped}, chr({c}), chr({0xFDD0 + i}))"
    fixed = f"to_json({swapped})"
    for i, c in enumerate(_UPPER_ESCAPES):
        fixed = f"replace({fixed}, chr({0xFDD0 + i}), '\\u{c:04x}')"
    return (f"CASE WHEN contains({plain}, '\\u00') AND regexp_matches({expr}, '{_CONTROL}') "
            f"AND NOT regexp_matches({expr}, '{_MARKS}') THEN {fixed} ELSE {plain} END")


def json_string_sql(expr: str) -> str:
    """SQL: json.dumps(expr, ensure_ascii=False) for a non-null VARCHAR, to_json's speed (the
    export builds its JSON Lines with it)."""
    return _py_json(expr, f"to_json({expr})")


def _source_ctes(json_format: str, mapping: dict[str, str], *, typed: bool, compression: str | None = None) -> str:
    """CTEs ending in `probed`: the file's fields as text and `user_turn`.
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
            c_system ->> '$' AS system, CASE {ids} END AS source_id"""
    else:
        fields = ("c_instruction AS instruction, c_input AS input, c_output AS output, c_system AS system, "
                  f"coalesce({', '.join(f'c_{k}' for k in ID_KEYS)}) AS source_id")
    user = (f"CASE WHEN input IS NULL OR regexp_full_match(input, '[{SQL_WHITESPACE}]*') THEN instruction "
            f"ELSE instruction || chr(10) || chr(10) || input END")
    return f"""
    WITH src AS (
        SELECT {sel} FROM read_json(?, format = '{json_format}', columns = {columns},
                                    maximum_object_size = {MAX_OBJECT_BYTES}, compression = '{compression or "none"}')
    ), typed AS (
        SELECT {fields} FROM src
    ), probed AS (
        SELECT *, {user} AS user_turn FROM typed
    )"""


_STAGED = "_fast_alpaca_rows"  # a temporary table: the file's rows, numbered, as text


def stage_query(json_format: str, mapping: dict[str, str], compression: str | None = None) -> str:
    """CREATE the temporary table of the file's fields as text, in file order. One `?`: the path.

    The rows' numbers come from this table's rowid (`insert_query`): DuckDB keeps the source's
    order when it lands a parallel read_json in a table (preserve_insertion_order, on by default),
    so the rowid (less the first one's) is the row's number in the file; with no blank lines (checked before) it is the
    line number of a JSON Lines row. Numbering in the query instead (WITH ORDINALITY) is a
    streaming window that DuckDB runs on one thread: the stage took 1.9 s at 1M real rows on one
    core, ~2.5x what the parallel read takes. Both gave the same numbers on those 1M rows;
    tests/test_import_fast_sql.py checks the order on a file read in many parallel pieces."""
    return f"CREATE TEMPORARY TABLE {_STAGED} AS" + _source_ctes(json_format, mapping, typed=False, compression=compression) + """
    SELECT instruction, input, output, system, source_id FROM typed"""


def check_query(json_format: str, mapping: dict[str, str], compression: str | None = None) -> str:
    """(rows, rows the fast path cannot vouch for). Cheap: no hashing, no language."""
    blank = f"regexp_full_match(instruction, '[{SQL_WHITESPACE}]*')"
    return _source_ctes(json_format, mapping, typed=True, compression=compression) + f"""
    SELECT count(*), count(*) FILTER (WHERE NOT coalesce(_typed AND NOT {blank}, FALSE)) FROM typed"""


def insert_query() -> str:
    """INSERT the staged rows (`stage_query`) as samples. Parameters: first id, source file, import
    id, tags.

    search_text (browse's lowered search column) is left NULL: nothing reads it during an import,
    and lowering and writing a second copy of every text was 1.0-1.4 s of a 300k-row import
    (benches/results/io.md). `store.fill_search_text` fills it afterwards (the studio runs it as a
    background job); until then browse lowers those rows' text at each search, with the same
    result, ~10x slower."""
    cols = ", ".join(COLUMN_NAMES)
    lang_sql, lang = lang_ctes("encoded", "left(user_turn || ' ' || output, 2000)",
                               "strlen(user_turn) = length(user_turn) AND strlen(output) = length(output)")
    # The turns as JSON strings once, shared by the messages column and the content hash.
    system = "coalesce(system, '')"
    encoded = f""", plain_json AS (
        SELECT *, to_json(user_turn) AS _uj0, to_json(output) AS _aj0, to_json({system}) AS _sj0 FROM probed
    ), encoded AS (
        SELECT *, {_py_json('user_turn', '_uj0')} AS _uj, {_py_json('output', '_aj0')} AS _aj,
               {_py_json(system, '_sj0')} AS _sj,
               contains(_uj0, '\\u00') OR contains(_aj0, '\\u00') OR contains(_sj0, '\\u00') AS _escaped
        FROM plain_json
    )"""
    user = (f"CASE WHEN input IS NULL OR regexp_full_match(input, '[{SQL_WHITESPACE}]*') THEN instruction "
            f"ELSE instruction || chr(10) || chr(10) || input END")
    # Inside the import's transaction the table's rows are transaction-local, and DuckDB numbers
    # those from a large offset (2^62), not from 0: the row's number is its distance from the first.
    probed = (f"WITH probed AS (SELECT *, rowid - (SELECT min(rowid) FROM {_STAGED}) + 1 AS _ord, {user} AS user_turn "
              f"FROM {_STAGED})")
    return f"INSERT INTO samples (id, {cols}, status, import_id)" + probed + encoded + lang_sql + f"""
    SELECT
        $1 + _ord - 1,
        'chat',
        nullif(system, ''),
        '[{{"role": "user", "content": ' || _uj || '}}, {{"role": "assistant", "content": ' || _aj || '}}]',
        NULL,
        user_turn,
        output,
        {lang},
        CAST($4 AS VARCHAR[]),
        $2,
        _ord,
        source_id,
        NULL,
        'import',
        NULL,
        CASE WHEN _escaped AND regexp_matches(concat(user_turn, output, system), '{_CONTROL}')
                  AND regexp_matches(concat(user_turn, output, system), '{_MARKS}') THEN '?'
             ELSE sha256('["chat",' || _sj || ',[["user",' || _uj || '],["assistant",' || _aj || ']],""]') END,
        NULL,
        'pending',
        $3
    FROM lang_words"""


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
    con.execute(stage_query(json_format, mapping, compression), [path])
    try:
        con.execute(insert_query(), [first, source_file, import_id, list(tags)])
    finally:
        _drop_staged(con)
    _hash_in_python(con, first, first + rows - 1)
    return first, first + rows - 1


def _drop_staged(con: duckdb.DuckDBPyConnection) -> None:
    """DROP the staged rows. After a failed insert in the caller's transaction the DROP fails too
    (the transaction is aborted; its rollback drops the table): the insert's error (a full disk,
    say) is the one to raise, not "Current transaction is aborted"."""
    try:
        con.execute(f"DROP TABLE IF EXISTS {_STAGED}")
    except duckdb.TransactionException:
        pass


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
