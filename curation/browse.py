"""Read-only queries behind every list of samples: the review queue, the Home screen, `studio show`.

A list over a million samples is paged by keyset (`id > last id seen`, ascending), never by
OFFSET, so the cost of a page does not grow with its position; `page_at` (OFFSET) exists only for
jumping to a scroll position. Every filter value goes to DuckDB as a parameter, never formatted
into the SQL text.

Rows are plain data: the text they carry is the user's, raw. Whatever prints it goes through
`curation.safe_text.visible()`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import duckdb

from .errors import NotFound, StudioError
from .lang_sql import lang_filter_sql
from .samples import STATUSES
from .sql_json import columns_sql
from .workspace import one_row

SEARCH_TEXT_SQL_S = "lower(concat_ws(chr(10), s.instruction, s.answer, s.text))"  # store.SEARCH_TEXT_SQL on alias s
PREVIEW_CHARS = 200  # characters of instruction / answer a list row carries
DUPLICATE_MODES = ("include", "exclude", "only")


@dataclass(frozen=True)
class Filter:
    """Which samples a list shows. Fields left at None do not filter."""

    status: str | None = None          # pending / approved / rejected
    flag: str | None = None            # a quality rule id (quality_flags.rule_id); "*" = any flag
    cluster_id: int | None = None      # dup_clusters.id: its members (dup_members)
    source: str | None = None          # samples.source_file, exactly
    lang: str | None = None
    min_score: float | None = None     # judge_score >= min_score
    max_score: float | None = None     # judge_score <= max_score
    search: str | None = None          # case-insensitive substring of instruction, answer or text
    duplicates: str = "include"        # "include" | "exclude" (duplicate_of IS NULL) | "only"

    def where(self) -> tuple[str, list[Any]]:
        """The SQL condition on `samples s` and its parameters."""
        conds: list[str] = []
        params: list[Any] = []
        if self.status is not None:
            if self.status not in STATUSES:
                raise StudioError(f"unknown status {self.status!r}: use one of {', '.join(STATUSES)}.")
            conds.append("s.status = ?")
            params.append(self.status)
        if self.flag is not None:
            if self.flag == "*":
                conds.append("s.id IN (SELECT sample_id FROM quality_flags)")
            else:
                conds.append("s.id IN (SELECT sample_id FROM quality_flags WHERE rule_id = ?)")
                params.append(self.flag)
        if self.cluster_id is not None:
            conds.append("s.id IN (SELECT sample_id FROM dup_members WHERE cluster_id = ?)")
            params.append(int(self.cluster_id))
        if self.source is not None:
            conds.append("s.source_file = ?")
            params.append(self.source)
        if self.lang is not None:  # rows not yet given a language (store.fill_derived) are detected here
            conds.append(lang_filter_sql("s"))
            params += [self.lang, self.lang]
        if self.min_score is not None:
            conds.append("s.judge_score >= ?")
            params.append(float(self.min_score))
        if self.max_score is not None:
            conds.append("s.judge_score <= ?")
            params.append(float(self.max_score))
        if self.search:
            # A substring of search_text (migration 0005: lower() of instruction, answer, text),
            # lowercased by DuckDB on both sides so the two agree on every script. contains()
            # rather than ILIKE: "50%" or "a_b" mean those characters, and it is 5x faster at 1M
            # rows (benches/results/workspace.md). Rows without search_text get it computed here.
            conds.append(f"contains(coalesce(s.search_text, {SEARCH_TEXT_SQL_S}), lower(?))")
            params.append(self.search)
        if self.duplicates == "exclude":
            conds.append("s.duplicate_of IS NULL")
        elif self.duplicates == "only":
            conds.append("s.duplicate_of IS NOT NULL")
        elif self.duplicates != "include":
            raise StudioError(f"duplicates={self.duplicates!r}: use one of {', '.join(DUPLICATE_MODES)}.")
        return (" AND ".join(conds) or "TRUE"), params


@dataclass(frozen=True)
class Row:
    """What one line of a list shows. `instruction` and `answer` are previews: at most
    PREVIEW_CHARS characters, whitespace (newlines included) collapsed to single spaces. For a
    raw-text sample `instruction` previews its text and `answer` is empty."""

    id: int
    status: str
    lang: str | None
    instruction: str
    answer: str
    source_file: str | None
    cluster_id: int | None
    duplicate_of: int | None
    judge_score: float | None
    flags: tuple[str, ...]
    kind: str


@dataclass(frozen=True)
class Flag:
    rule_id: str
    value: float | None
    threshold: float | None
    detail: str | None


@dataclass(frozen=True)
class ClusterInfo:
    id: int
    method: str
    fields: str
    keeper_id: int
    keeper_chosen_by: str
    resolved: bool
    members: tuple[tuple[int, float | None], ...]  # (sample_id, similarity to the keeper)


@dataclass(frozen=True)
class Version:
    """An earlier version of an edited sample (the current one is the sample itself)."""

    version: int
    system: str | None
    messages: list[dict[str, str]]
    text: str | None
    op_id: int | None
    at: Any


@dataclass(frozen=True)
class SampleDetail:
    """Everything about one sample: content, review state, history, dedup and quality."""

    id: int
    kind: str
    status: str
    version: int
    system: str | None
    messages: list[dict[str, str]]
    text: str | None
    instruction: str | None
    answer: str | None
    lang: str | None
    tags: tuple[str, ...]
    source_file: str | None
    source_row: int | None
    source_id: str | None
    import_id: int | None
    parent_id: int | None
    operation: str | None
    lineage: dict[str, Any]
    content_hash: str
    created_at: Any
    cluster_id: int | None
    duplicate_of: int | None
    judge_score: float | None
    judge_reason: str | None
    versions: tuple[Version, ...] = ()       # earlier versions, oldest first
    flags: tuple[Flag, ...] = ()
    cluster: ClusterInfo | None = None
    history: tuple[dict[str, Any], ...] = field(default=())  # operations that touched it
    tools: tuple[dict[str, Any], ...] = ()   # the tool schemas a tool-use sample offers (OpenAI shape)

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def _preview(text: str | None) -> str:
    if not text:
        return ""
    return " ".join(text[: PREVIEW_CHARS * 2].split())[:PREVIEW_CHARS]


_ROW_SQL = f"""
    SELECT s.id, s.status, s.lang, left(coalesce(s.instruction, s.text, ''), {PREVIEW_CHARS * 2}),
           left(coalesce(s.answer, ''), {PREVIEW_CHARS * 2}), s.source_file, s.cluster_id,
           s.duplicate_of, s.judge_score, s.kind
    FROM samples s
"""


def _rows(con: duckdb.DuckDBPyConnection, ids: list[int]) -> list[Row]:
    """The list rows of `ids` (ascending), with their flags.

    Pages are fetched in two steps, ids first, then the rows of those ids: asking DuckDB for the
    columns with `ORDER BY id LIMIT 100` directly made it carry every text column of the rows
    past the cursor through the sort (60 ms at 1M rows against 1.3 ms; the BETWEEN lets zone
    maps skip all other row groups)."""
    if not ids:
        return []
    raw = con.execute(f"{_ROW_SQL} WHERE s.id BETWEEN ? AND ? AND s.id = ANY(?) ORDER BY s.id",
                      [ids[0], ids[-1], ids]).fetchall()
    flags: dict[int, list[str]] = {}
    for sid, rule in con.execute(
        "SELECT sample_id, rule_id FROM quality_flags WHERE sample_id BETWEEN ? AND ? AND sample_id = ANY(?) "
        "ORDER BY sample_id, rule_id",
        [ids[0], ids[-1], ids],
    ).fetchall():
        lst = flags.setdefault(sid, [])
        if rule not in lst:
            lst.append(rule)
    return [
        Row(
            id=int(r[0]), status=r[1], lang=r[2], instruction=_preview(r[3]), answer=_preview(r[4]),
            source_file=r[5], cluster_id=r[6], duplicate_of=r[7], judge_score=r[8],
            flags=tuple(flags.get(r[0], ())), kind=r[9],
        )
        for r in raw
    ]


def _page_ids(con: duckdb.DuckDBPyConnection, where: str, params: list[Any], *, after: int | None,
              before: int | None, limit: int) -> list[int]:
    """Ids of one page, ascending. Tries a window of ids next to the cursor first (zone maps skip
    every other row group, and ids are dense after import), then the open-ended query when the
    window holds fewer than `limit` matches."""
    desc = before is not None
    order = "DESC" if desc else "ASC"
    window = max(limit * 8, 1024)
    if before is not None:
        bound_sql, bound = " AND s.id < ?", [int(before)]
        lo, hi = int(before) - window, int(before) - 1
    else:
        start = 0 if after is None else int(after)
        bound_sql, bound = ("" if after is None else " AND s.id > ?"), ([] if after is None else [start])
        lo, hi = start + 1, start + window
    found = [r[0] for r in con.execute(
        f"SELECT s.id FROM samples s WHERE {where} AND s.id BETWEEN ? AND ? ORDER BY s.id {order} LIMIT ?",
        params + [lo, hi, int(limit)]).fetchall()]
    if len(found) < limit:
        found = [r[0] for r in con.execute(
            f"SELECT s.id FROM samples s WHERE {where}{bound_sql} ORDER BY s.id {order} LIMIT ?",
            params + bound + [int(limit)]).fetchall()]
    if desc:
        found.reverse()
    return found


def page(con: duckdb.DuckDBPyConnection, flt: Filter = Filter(), *, after_id: int | None = None,
         before_id: int | None = None, limit: int = 100) -> list[Row]:
    """One page of the filtered list, ascending by id. `after_id`: the page after that id (the
    next page); `before_id`: the `limit` rows just before that id (the previous page, still
    returned ascending). Neither: the first page."""
    if after_id is not None and before_id is not None:
        raise ValueError("pass after_id or before_id, not both")
    if limit <= 0:
        return []
    where, params = flt.where()
    return _rows(con, _page_ids(con, where, params, after=after_id, before=before_id, limit=limit))


def page_at(con: duckdb.DuckDBPyConnection, flt: Filter, offset: int, limit: int = 100) -> list[Row]:
    """The page starting at 0-based position `offset` of the filtered list (for jumping to a
    scroll position; prefer `page` with after_id for scrolling on)."""
    where, params = flt.where()
    sql = f"SELECT s.id FROM samples s WHERE {where} ORDER BY s.id LIMIT ? OFFSET ?"
    found = [r[0] for r in con.execute(sql, params + [int(limit), max(0, int(offset))]).fetchall()]
    return _rows(con, found)


def count(con: duckdb.DuckDBPyConnection, flt: Filter = Filter()) -> int:
    where, params = flt.where()
    return int(one_row(con.execute(f"SELECT count(*) FROM samples s WHERE {where}", params))[0])


def rank(con: duckdb.DuckDBPyConnection, flt: Filter, sample_id: int) -> int:
    """0-based position of `sample_id` in the filtered list: the number of matching samples with a
    smaller id. (For a sample the filter excludes, the position it would have.)"""
    where, params = flt.where()
    sql = f"SELECT count(*) FROM samples s WHERE {where} AND s.id < ?"
    return int(one_row(con.execute(sql, params + [int(sample_id)]))[0])


def ids(con: duckdb.DuckDBPyConnection, flt: Filter, *, limit: int | None = None) -> list[int]:
    """The ids the filter selects, ascending (bulk actions on a filtered list)."""
    where, params = flt.where()
    sql = f"SELECT s.id FROM samples s WHERE {where} ORDER BY s.id"
    if limit is not None:
        sql += " LIMIT ?"
        params = params + [int(limit)]
    return [int(r[0]) for r in con.execute(sql, params).fetchall()]


_DETAIL_COLS = (
    "id", "kind", "status", "version", "system", "messages", "text", "instruction", "answer", "lang",
    "tags", "source_file", "source_row", "source_id", "import_id", "parent_id", "operation", "lineage",
    "content_hash", "created_at", "cluster_id", "duplicate_of", "judge_score", "judge_reason", "tools",
)


def get_sample(con: duckdb.DuckDBPyConnection, sample_id: int) -> SampleDetail:
    """The whole sample with its earlier versions, flags, cluster and the operations that touched it.
    Raises NotFound for an id that does not exist."""
    row = con.execute(f"SELECT {columns_sql(_DETAIL_COLS)} FROM samples WHERE id = ?", [int(sample_id)]).fetchone()
    if row is None:
        raise NotFound(f"no sample with id {sample_id} in this workspace. `studio stats` shows the id range.")
    d = dict(zip(_DETAIL_COLS, row))
    d["messages"] = json.loads(d["messages"]) if d["messages"] else []
    d["lineage"] = json.loads(d["lineage"]) if d["lineage"] else {}
    d["tags"] = tuple(d["tags"] or ())
    d["tools"] = tuple(json.loads(d["tools"]) if isinstance(d["tools"], str) else (d["tools"] or ()))
    versions = tuple(
        Version(int(v), s, json.loads(m) if m else [], t, op, at)
        for v, s, m, t, op, at in con.execute(
            'SELECT version, system, messages, text, op_id, "at" FROM sample_versions WHERE sample_id = ? ORDER BY version',
            [int(sample_id)],
        ).fetchall()
    )
    flags = tuple(
        Flag(*r) for r in con.execute(
            "SELECT rule_id, value, threshold, detail FROM quality_flags WHERE sample_id = ? ORDER BY rule_id",
            [int(sample_id)],
        ).fetchall()
    )
    cluster = None
    cid = d["cluster_id"]
    if cid is None:
        hit = con.execute("SELECT cluster_id FROM dup_members WHERE sample_id = ? ORDER BY cluster_id LIMIT 1", [int(sample_id)]).fetchone()
        cid = hit[0] if hit else None
    if cid is not None:
        c = con.execute(
            "SELECT id, method, fields, keeper_id, keeper_chosen_by, resolved FROM dup_clusters WHERE id = ?", [cid]
        ).fetchone()
        if c is not None:
            members = tuple(
                (int(m), sim) for m, sim in con.execute(
                    "SELECT sample_id, similarity FROM dup_members WHERE cluster_id = ? ORDER BY sample_id", [cid]
                ).fetchall()
            )
            cluster = ClusterInfo(int(c[0]), c[1], c[2], int(c[3]), c[4], bool(c[5]), members)
    history = tuple(
        {"op_id": int(r[0]), "kind": r[1], "at": r[2], "reason": r[3], "old_status": r[4], "new_status": r[5],
         "old_version": r[6], "new_version": r[7], "undone_by": r[8]}
        for r in con.execute(
            """SELECT o.id, o.kind, o."at", o.reason, x.old_status, x.new_status, x.old_version, x.new_version, o.undone_by
               FROM op_samples x JOIN operations o ON o.id = x.op_id WHERE x.sample_id = ? ORDER BY o.id""",
            [int(sample_id)],
        ).fetchall()
    )
    return SampleDetail(**d, versions=versions, flags=flags, cluster=cluster, history=history)


def stats(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Counts for the Home screen and `studio stats`: totals, by status / lang / source file / kind,
    quality flags per rule, duplicate clusters, imports, operations."""
    def one(sql: str, p: tuple[Any, ...] = ()) -> tuple[Any, ...]:
        return one_row(con.execute(sql, list(p)))

    total, dups, min_id, max_id, scored = one(
        "SELECT count(*), count(duplicate_of), min(id), max(id), count(judge_score) FROM samples"
    )
    by = lambda col: {  # noqa: E731
        (k if k is not None else ""): int(n)
        for k, n in con.execute(f"SELECT {col}, count(*) FROM samples GROUP BY 1 ORDER BY 2 DESC, 1").fetchall()
    }
    by_lang = {k: int(n) for k, n in con.execute(
        "SELECT lang, count(*) FROM samples WHERE lang IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1").fetchall()}
    by_status = {s: 0 for s in STATUSES}
    by_status.update(by("status"))
    flags = {
        r: {"samples": int(n), "pending": int(p)}
        for r, n, p in con.execute(
            """SELECT f.rule_id, count(DISTINCT f.sample_id), count(DISTINCT f.sample_id) FILTER (WHERE s.status = 'pending')
               FROM quality_flags f JOIN samples s ON s.id = f.sample_id GROUP BY 1 ORDER BY 2 DESC, 1"""
        ).fetchall()
    }
    flagged = one("SELECT count(DISTINCT sample_id) FROM quality_flags")[0]
    clusters, unresolved, members = one(
        "SELECT count(*), count(*) FILTER (WHERE NOT resolved), coalesce(sum(size), 0) FROM dup_clusters"
    )
    imports = [
        {"id": int(i), "path": p, "format": f, "rows": int(r), "rejected": int(rj), "op_id": int(op), "at": str(at)}
        for i, p, f, r, rj, op, at in con.execute(
            'SELECT id, path, format, rows, rejected, op_id, "at" FROM imports ORDER BY id'
        ).fetchall()
    ]
    ops, last_op = one("SELECT count(*) FILTER (WHERE undone_by IS NULL AND kind <> 'undo'), max(id) FROM operations")
    return {
        "total": int(total),
        "id_range": [min_id, max_id],
        "by_status": by_status,
        "by_lang": by_lang,
        "lang_undetected": total - sum(by_lang.values()),  # a fast import's rows until store.fill_derived
        "by_source": by("source_file"),
        "by_kind": by("kind"),
        "judged": int(scored),
        "flags": flags,
        "flagged_samples": int(flagged),
        "clusters": {"count": int(clusters), "unresolved": int(unresolved), "members": int(members),
                     "duplicates_marked": int(dups)},
        "imports": imports,
        "operations": {"count": int(ops), "last_id": last_op},
        "exportable": {
            "approved": int(one("SELECT count(*) FROM samples WHERE status = 'approved' AND duplicate_of IS NULL")[0]),
            "approved+pending": int(one("SELECT count(*) FROM samples WHERE status <> 'rejected' AND duplicate_of IS NULL")[0]),
        },
    }


# -- small reads behind the studio's header, lists and screens -----------------------------------------
def status_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Samples per review status, every status present (0 when it has none)."""
    counts = {st: 0 for st in STATUSES}
    counts.update({st: int(n) for st, n in con.execute("SELECT status, count(*) FROM samples GROUP BY 1").fetchall()})
    return counts


def max_sample_id(con: duckdb.DuckDBPyConnection) -> int:
    """The highest sample id, 0 in an empty workspace (the width of a list's id column)."""
    return int(con.execute("SELECT coalesce(max(id), 0) FROM samples").fetchall()[0][0])


def status_and_preview(con: duckdb.DuckDBPyConnection, ids: list[int], chars: int = 80) -> dict[int, tuple[str, str]]:
    """id -> (status, the first `chars` characters of the instruction or text) for these samples;
    ids that do not exist are left out."""
    if not ids:
        return {}
    return {int(i): (st, prev) for i, st, prev in con.execute(
        "SELECT id, status, left(coalesce(instruction, text, ''), ?) FROM samples WHERE id IN (SELECT unnest(?))",
        [int(chars), [int(i) for i in ids]]).fetchall()}


def cluster_count(con: duckdb.DuckDBPyConnection) -> int:
    """How many duplicate clusters the workspace holds."""
    return int(con.execute("SELECT count(*) FROM dup_clusters").fetchall()[0][0])


def cluster_size(con: duckdb.DuckDBPyConnection, cluster_id: int) -> int:
    """How many samples a duplicate cluster holds, its keeper included."""
    row = con.execute("SELECT size FROM dup_clusters WHERE id = ?", [int(cluster_id)]).fetchall()
    if not row:
        raise NotFound(f"no duplicate cluster {cluster_id}; `studio dedup --json` lists them.")
    return int(row[0][0])
