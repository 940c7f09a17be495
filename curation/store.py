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
    ("messages", "string"),
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
# except the fast alpaca import, which leaves it NULL for `fill_search_text` (browse lowers the
# text of a row without one at each search: same matches, ~10x slower).
SEARCH_TEXT_SQL = "lower(concat_ws(chr(10), instruction, answer, text))"
SEARCH_FILL_CHUNK = 100_000  # ids a fill_search_text call covers: ~0.3-0.6 s of the writer's time


def search_text_missing(con: duckdb.DuckDBPyConnection) -> tuple[int, int, int]:
    """(rows without search_text, their smallest id, their largest id); (0, 0, -1) when none."""
    n, lo, hi = con.execute("SELECT count(*), min(id), max(id) FROM samples WHERE search_text IS NULL").fetchall()[0]
    return (int(n), int(lo), int(hi)) if n else (0, 0, -1)


def fill_search_text(con: duckdb.DuckDBPyConnection, first: int, last: int) -> int:
    """Write search_text for the rows with ids in [first, last] that have none; returns how many.
    One statement, so it commits alone or joins the caller's transaction."""
    return int(con.execute(
        f"UPDATE samples SET search_text = {SEARCH_TEXT_SQL} WHERE id BETWEEN ? AND ? AND search_text IS NULL",
        [int(first), int(last)]).fetchall()[0][0])


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
