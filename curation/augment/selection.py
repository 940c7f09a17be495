"""Which samples an augment job works on: explicit ids, or a filter (status, language, source).

By default a filter leaves out rejected samples, duplicates (they leave every split anyway) and,
except for judge, samples that augmentation itself produced: augmenting augmented data compounds
the model's quirks. The resolved ids are stored with the job, so a resume repeats exactly them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

import duckdb

from ..errors import NotFound, StudioError
from ..lang import detect
from ..lang_sql import lang_filter_sql
from ..sql_json import messages_sql


@dataclass(frozen=True)
class SampleView:
    """The fields augmentation reads from a sample row."""

    id: int
    kind: str
    lang: str | None
    system: str | None
    messages: tuple[dict[str, str], ...]
    instruction: str | None
    answer: str | None
    text: str | None
    tags: tuple[str, ...]
    tools: tuple[dict[str, Any], ...] = ()  # the tool schemas a tool-use sample offers (kept by its copies)


_COLS = f"id, kind, lang, system, {messages_sql()}, instruction, answer, text, tags, tools"


def _view(row: Sequence[Any]) -> SampleView:
    msgs = row[4]
    if isinstance(msgs, str):
        msgs = json.loads(msgs)
    tools = row[9]
    if isinstance(tools, str):
        tools = json.loads(tools)
    lang = row[2]
    if lang is None and row[5] is not None and row[6] is not None:  # not yet filled (store.fill_derived)
        lang = detect(row[5] + " " + row[6])
    return SampleView(id=int(row[0]), kind=row[1], lang=lang, system=row[3],
                      messages=tuple(dict(m) for m in (msgs or [])),  # tool calls and weights kept
                      instruction=row[5], answer=row[6], text=row[7], tags=tuple(row[8] or ()),
                      tools=tuple(tools or ()))


def select_ids(con: duckdb.DuckDBPyConnection, *, ids: Sequence[int] | None = None, status: str | None = None,
               lang: str | None = None, source: str | None = None, limit: int | None = None,
               include_generated: bool = False) -> list[int]:
    if ids:
        wanted = sorted({int(i) for i in ids})
        found = {r[0] for r in con.execute("SELECT id FROM samples WHERE id IN (SELECT unnest(?))", [wanted]).fetchall()}
        missing = [i for i in wanted if i not in found]
        if missing:
            raise NotFound(f"no sample with id {', '.join(map(str, missing[:10]))}"
                           f"{' ...' if len(missing) > 10 else ''}; `studio browse` lists ids.")
        return wanted[:limit] if limit else wanted
    where, params = ["duplicate_of IS NULL"], []
    if status:
        if status not in ("pending", "approved", "rejected", "all"):
            raise StudioError(f"--status {status!r}: choose pending, approved, rejected or all.")
        if status != "all":
            where.append("status = ?")
            params.append(status)
    else:
        where.append("status <> 'rejected'")
    if lang:  # rows not yet given a language (store.fill_derived) are detected here
        where.append(lang_filter_sql())
        params += [lang, lang]
    if source:
        where.append("(source_file = ? OR source_file LIKE ?)")
        params += [source, f"%{source}"]
    if not include_generated:
        where.append("(operation IS NULL OR operation NOT LIKE 'augment:%')")
    sql = f"SELECT id FROM samples WHERE {' AND '.join(where)} ORDER BY id"
    if limit:
        sql += f" LIMIT {int(limit)}"
    return [int(r[0]) for r in con.execute(sql, params).fetchall()]


def load(con: duckdb.DuckDBPyConnection, ids: Sequence[int]) -> list[SampleView]:
    if not ids:
        return []
    rows = con.execute(f"SELECT {_COLS} FROM samples WHERE id IN (SELECT unnest(?)) ORDER BY id", [list(ids)]).fetchall()
    return [_view(r) for r in rows]
