"""The fast path for alpaca JSON Lines / JSON arrays: DuckDB's `read_json` parses the file on all
cores and SQL builds the stored columns (user turn, content hash; the messages JSON, language and
search text are left to readers and to `store.fill_derived`, see `insert_query`), so no Python
object is made per row. It only imports files it is sure about: any row it cannot vouch
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
by cheap tests and each count taken once, only for the classes that need it (`lang_sql.lang_ctes`,
now run by `store.fill_derived` after the import); (3) the
content hash of any row whose JSON held backslash-u00 (a control character, or a literal backslash-u in
code) was computed in Python: DuckDB's to_json differs from json.dumps only in the case of nine
escapes, which `sql_json.py_json` fixes in SQL. What is left is the work itself: sha256 over the
content (~1 s per 100k rows), the regexps of Chinese rows, and writing the text to the file. Later
cuts (300k and 1M realistic rows): the text columns are stored uncompressed (migrations 0008,
0010); search_text and the language are filled after the import, not in it; and the messages JSON
is not stored for these rows at all (`insert_query`): a plain single-turn row's messages are its
instruction and answer, which every reader builds with `sql_json.messages_sql`.
"""
from __future__ import annotations

import logging
import re

import duckdb

from ..samples import Message, Sample
from ..sql_json import CONTROL, MARKS, py_json
from ..store import COLUMN_NAMES
from .fields import ID_KEYS, WHITESPACE_CLASS

# RE2 spells code points \x{1680}, not \u1680.
SQL_WHITESPACE = re.sub(r"\\[ux]([0-9a-f]{2,4})", r"\\x{\1}", WHITESPACE_CLASS)

log = logging.getLogger(__name__)
MAX_OBJECT_BYTES = 16 * 1024 * 1024  # a longer row fails read_json: the Python path takes the file
# read_json decompresses these itself (DuckDB 1.4 / 2.0); bz2 and xz files take the Python path.
FAST_COMPRESSIONS = (None, "gzip", "zstd")

def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"



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

    Three derived columns are left NULL (benches/results/io.md: at 1M realistic rows, building
    them here took the import from ~11 s to ~19-22 s):
    - messages, for good: the row is one user turn (instruction) and one answer, and readers take
      `sql_json.messages_sql()`, which builds the same JSON text from those two columns;
    - lang and search_text (browse's lowered search column): nothing reads them during an import.
      `store.fill_derived` fills them afterwards: the studio as a background job, the commands
      that read the language (stats, --lang, augment) before they do. Until then browse lowers a
      row's text itself at each search (same matches, ~10x slower) and shows no language."""
    cols = ", ".join(COLUMN_NAMES)
    # The turns as JSON strings, for the content hash.
    system = "coalesce(system, '')"
    encoded = f""", plain_json AS (
        SELECT *, to_json(user_turn) AS _uj0, to_json(output) AS _aj0, to_json({system}) AS _sj0 FROM probed
    ), encoded AS (
        SELECT *, {py_json('user_turn', '_uj0')} AS _uj, {py_json('output', '_aj0')} AS _aj,
               {py_json(system, '_sj0')} AS _sj,
               contains(_uj0, '\\u00') OR contains(_aj0, '\\u00') OR contains(_sj0, '\\u00') AS _escaped
        FROM plain_json
    )"""
    user = (f"CASE WHEN input IS NULL OR regexp_full_match(input, '[{SQL_WHITESPACE}]*') THEN instruction "
            f"ELSE instruction || chr(10) || chr(10) || input END")
    # Inside the import's transaction the table's rows are transaction-local, and DuckDB numbers
    # those from a large offset (2^62), not from 0: the row's number is its distance from the first.
    probed = (f"WITH probed AS (SELECT *, rowid - (SELECT min(rowid) FROM {_STAGED}) + 1 AS _ord, {user} AS user_turn "
              f"FROM {_STAGED})")
    return f"INSERT INTO samples (id, {cols}, status, import_id)" + probed + encoded + f"""
    SELECT
        $1 + _ord - 1,
        'chat',
        nullif(system, ''),
        NULL,
        NULL,
        user_turn,
        output,
        NULL,
        CAST($4 AS VARCHAR[]),
        $2,
        _ord,
        source_id,
        NULL,
        'import',
        NULL,
        -- a row with one of the nine control characters to_json escapes in upper case and one of the
        -- noncharacters py_json swaps them with is hashed in Python (sql_json's docstring)
        CASE WHEN _escaped AND regexp_matches(concat(user_turn, output, system), '{CONTROL}')
                  AND regexp_matches(concat(user_turn, output, system), '{MARKS}') THEN '?'
             ELSE sha256('["chat",' || _sj || ',[["user",' || _uj || '],["assistant",' || _aj || ']],""]') END,
        NULL,
        'pending',
        $3
    FROM encoded"""


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
