"""Write canonical samples into the workspace in bulk.

Importers and augmentation both land samples here. Rows go in through a PyArrow table in one
statement (DuckDB scans Arrow without copying), far faster than row-by-row INSERTs.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import duckdb

from .samples import Sample
from .workspace import SAMPLE_TABLES

if TYPE_CHECKING:
    import pyarrow as pa

# The samples columns an insert writes, with their Arrow types by name: pyarrow is imported only
# when rows go in through Arrow (0.15-0.25 s a process; the fast alpaca import never needs it).
_COLUMNS = [
    ("kind", "string"),
    ("system", "string"),
    ("messages", "string"),  # NULL for the fast import's single-turn rows: read it with sql_json.messages_sql
    ("text", "string"),
    ("instruction", "string"),
    ("answer", "string"),
    ("lang", "string"),
    ("tags", "list<string>"),
    ("source_file", "string"),
    ("source_row", "int64"),
    ("source_id", "string"),
    ("parent_id", "int64"),
    ("operation", "string"),
    ("lineage", "string"),
    ("content_hash", "string"),
    ("tools", "string"),  # JSON text of the tool schemas (migration 0006), null for most samples
]
COLUMN_NAMES = tuple(name for name, _ in _COLUMNS)


def arrow_schema() -> "pa.Schema":
    import pyarrow as pa

    types = {"string": pa.string(), "int64": pa.int64(), "list<string>": pa.list_(pa.string())}
    return pa.schema([(name, types[kind]) for name, kind in _COLUMNS])


# samples.search_text (migration 0005): what browse's case-insensitive search scans. Every writer of
# instruction / answer / text sets it with this expression (lowercased by DuckDB, like the needle),
# except the fast alpaca import, which leaves it NULL, and samples.lang too, for `fill_derived`
# (until then browse lowers the text of a row without one at each search, same matches, ~10x
# slower; a language filter detects the language of a row without one, `lang_sql.lang_filter_sql`;
# a list shows no language for it).
SEARCH_TEXT_SQL = "lower(concat_ws(chr(10), instruction, answer, text))"
DERIVED_FILL_CHUNK = 100_000  # ids a fill_derived call covers: ~1.6 s of the writer's time at 1M realistic rows


def _missing(search: bool) -> str:
    return "(search_text IS NULL OR lang IS NULL)" if search else "lang IS NULL"


def derived_missing(con: duckdb.DuckDBPyConnection, *, search: bool = True) -> tuple[int, int, int]:
    """(rows without lang, or search_text with `search`, their smallest id, their largest id);
    (0, 0, -1) when none."""
    n, lo, hi = con.execute(f"SELECT count(*), min(id), max(id) FROM samples WHERE {_missing(search)}").fetchall()[0]
    return (int(n), int(lo), int(hi)) if n else (0, 0, -1)


def fill_derived(con: duckdb.DuckDBPyConnection, first: int, last: int, *, search: bool = True) -> int:
    """Write lang, and search_text with `search`, for the rows with ids in [first, last] that lack
    them; returns how many rows. The language is lang.detect's, in SQL (`lang_sql`), over
    instruction and answer: for the only rows stored without one, the fast import's single-turn
    rows, that is what Sample.detected_lang probes (the first two turns). One statement, so it
    commits alone or joins the caller's transaction. At 1M realistic rows: the language alone
    4.9 s in one statement, 7.8 s in `fill_all_derived`'s chunks; with the search column 15.8 s
    (benches/results/io.md)."""
    from .lang_sql import stored_lang_ctes

    ctes, lang = stored_lang_ctes("todo")
    search_set = f"search_text = coalesce(samples.search_text, {SEARCH_TEXT_SQL}), " if search else ""
    return int(con.execute(
        f"""UPDATE samples SET {search_set}lang = coalesce(samples.lang, d.lang)
            -- a row that lacks only its search column is not probed for a language (NULL text)
            FROM (WITH todo AS (SELECT id, CASE WHEN lang IS NULL THEN instruction END AS instruction,
                                       CASE WHEN lang IS NULL THEN answer END AS answer FROM samples
                                WHERE id BETWEEN $1 AND $2 AND {_missing(search)}){ctes}
                  SELECT id, CASE WHEN instruction IS NOT NULL AND answer IS NOT NULL THEN {lang} ELSE '' END AS lang
                  FROM lang_words) d
            WHERE samples.id = d.id""",
        [int(first), int(last)]).fetchall()[0][0])


def fill_all_derived(con: duckdb.DuckDBPyConnection, *, search: bool = True) -> int:
    """`fill_derived` over every row that needs it, chunk by chunk; returns how many rows."""
    n, lo, hi = derived_missing(con, search=search)
    done = 0
    for start in range(lo, hi + 1, DERIVED_FILL_CHUNK):
        done += fill_derived(con, start, min(start + DERIVED_FILL_CHUNK - 1, hi), search=search)
    return done


def to_arrow(samples: Sequence[Sample]) -> "pa.Table":
    import pyarrow as pa

    cols: dict[str, list[Any]] = {name: [] for name in COLUMN_NAMES}
    for s in samples:
        cols["kind"].append(s.kind)
        cols["system"].append(s.system)
        cols["messages"].append(s.messages_json())
        cols["text"].append(s.text)
        cols["instruction"].append(s.instruction)
        cols["answer"].append(s.answer)
        cols["lang"].append(s.detected_lang())
        cols["tags"].append(list(s.tags))
        cols["source_file"].append(s.source_file)
        cols["source_row"].append(s.source_row)
        cols["source_id"].append(s.source_id)
        cols["parent_id"].append(s.parent_id)
        cols["operation"].append(s.operation)
        cols["lineage"].append(json.dumps(s.lineage, ensure_ascii=False) if s.lineage else None)
        cols["content_hash"].append(s.content_hash())
        cols["tools"].append(s.tools_json())
    return pa.table(cols, schema=arrow_schema())


def insert_arrow(con: duckdb.DuckDBPyConnection, table: "pa.Table", *, import_id: int | None, status: str = "pending") -> tuple[int, int]:
    """Insert prepared rows (see `to_arrow`); returns (first_id, last_id) of the new samples, or
    (0, -1) when the table is empty. Call inside the caller's transaction."""
    if table.num_rows == 0:
        return (0, -1)
    import pyarrow as pa

    table = table.append_column("_ord", pa.array(range(table.num_rows), type=pa.int64()))
    con.register("_incoming", table)
    try:
        first = con.execute("SELECT nextval('sample_id_seq')").fetchall()[0][0]
        # Reserve the whole id range: ids stay contiguous and in row order.
        n = table.num_rows
        if n > 1:
            con.execute(f"SELECT max(nextval('sample_id_seq')) FROM range({n - 1})")
        cols = ", ".join(COLUMN_NAMES)
        con.execute(
            f"""INSERT INTO samples (id, {cols}, status, import_id, search_text)
                SELECT ? + _ord, {cols}, ?, ?, {SEARCH_TEXT_SQL} FROM _incoming""",
            [first, status, import_id],
        )
    finally:
        con.unregister("_incoming")
    return int(first), int(first) + n - 1


def insert_samples(con: duckdb.DuckDBPyConnection, samples: Iterable[Sample], *, import_id: int | None = None, status: str = "pending") -> list[int]:
    rows = list(samples)
    first, last = insert_arrow(con, to_arrow(rows), import_id=import_id, status=status)
    return list(range(first, last + 1))


def delete_samples(con: duckdb.DuckDBPyConnection, ids: Sequence[int]) -> int:
    """Delete these samples and their rows in workspace.SAMPLE_TABLES; returns how many ids were given. The
    audit log keeps their ids (op_samples and the undo tables record history). Call inside the
    caller's transaction."""
    id_list = [int(i) for i in ids]
    if not id_list:
        return 0
    for table in SAMPLE_TABLES:
        con.execute(f"DELETE FROM {table} WHERE sample_id IN (SELECT unnest(?))", [id_list])
    con.execute("DELETE FROM samples WHERE id IN (SELECT unnest(?))", [id_list])
    return len(id_list)
