"""Review: approve, reject and edit, each one operation in the audit log; the log itself.

Every change here lands in one transaction with its `operations` row and one `op_samples` row per
sample it changed (old and new status, old and new version), so the log says exactly what
happened and undo knows what to put back. Undo itself is curation.undo; this module hands it the
handlers of the kinds it makes (`UNDO_HANDLERS`: status, edit, import).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import duckdb

from .errors import NotFound, StudioError
from .samples import STATUSES, Message, Sample, from_row, validate
from .sql_json import columns_sql, messages_sql
from .store import SEARCH_TEXT_SQL, delete_samples

if TYPE_CHECKING:
    from .workspace import Workspace


@dataclass(frozen=True)
class Operation:
    """One row of the audit log."""

    id: int
    kind: str
    at: Any
    reason: str | None
    sample_count: int
    details: dict[str, Any]
    undone_by: int | None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "at": str(self.at), "reason": self.reason,
                "sample_count": self.sample_count, "details": self.details, "undone_by": self.undone_by}


OP_COLUMNS = 'id, kind, "at", reason, sample_count, details, undone_by'


def operation_from_row(row: tuple) -> Operation:
    """An `Operation` from a row of `SELECT {OP_COLUMNS} FROM operations`."""
    details = row[5]
    if isinstance(details, str):
        details = json.loads(details) if details else {}
    return Operation(int(row[0]), row[1], row[2], row[3], int(row[4]), details or {}, row[6])


# -- status --------------------------------------------------------------------------------------
def _unique_ids(ids: Iterable[int]) -> list[int]:
    return sorted({int(i) for i in ids})


def _missing(ids: list[int], found: set[int]) -> NotFound:
    missing = [i for i in ids if i not in found]
    shown = ", ".join(map(str, missing[:10])) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
    return NotFound(f"no sample with id {shown}; nothing was changed. `studio stats` shows the id range.")


def set_status(ws: Workspace, ids: Iterable[int], status: str, reason: str | None = None) -> int | None:
    """Give every sample in `ids` the status `status` ('pending', 'approved', 'rejected') as one
    operation; returns its id. Samples that already have that status are left out of `op_samples`;
    when every sample already has it nothing is recorded (undo must not meet an empty operation)
    and the result is None. Unknown ids raise NotFound and change nothing."""
    if status not in STATUSES:
        raise StudioError(f"unknown status {status!r}: use one of {', '.join(STATUSES)}.")
    id_list = _unique_ids(ids)
    if not id_list:
        raise StudioError("no samples selected: name ids (e.g. 12 15 20-30) or a filter.")
    with ws.transaction() as con:
        # One scan reads what exists and what changes; the audit rows then go in from lists and
        # the UPDATE touches only the samples that change (benches/workspace_bench.py).
        current = con.execute(
            "SELECT id, status, version FROM samples WHERE id IN (SELECT unnest(?))", [id_list]
        ).fetchall()
        if len(current) != len(id_list):
            raise _missing(id_list, {r[0] for r in current})
        changing = [r for r in current if r[1] != status]
        if not changing:
            return None
        op_id = ws.record_operation("status", reason=reason, sample_count=len(changing),
                                    details={"status": status, "requested": len(id_list)})
        changed_ids = [r[0] for r in changing]
        con.execute(
            """INSERT INTO op_samples (op_id, sample_id, old_status, new_status, old_version, new_version)
               SELECT ?, unnest(?), unnest(?), ?, unnest(?), unnest(?)""",
            [op_id, changed_ids, [r[1] for r in changing], status, [r[2] for r in changing], [r[2] for r in changing]],
        )
        con.execute("UPDATE samples SET status = ? WHERE id IN (SELECT unnest(?))", [status, changed_ids])
    return op_id


def approve(ws: Workspace, ids: Iterable[int], reason: str | None = None) -> int | None:
    return set_status(ws, ids, "approved", reason)


def reject(ws: Workspace, ids: Iterable[int], reason: str | None = None) -> int | None:
    return set_status(ws, ids, "rejected", reason)


def _undo_status(ws: Workspace, op: Operation) -> None:
    ws.con.execute(
        """UPDATE samples SET status = x.old_status FROM op_samples x
           WHERE x.op_id = ? AND x.sample_id = samples.id AND x.old_status IS NOT NULL""",
        [op.id],
    )


# -- edit ----------------------------------------------------------------------------------------
_UNSET: Any = object()


TURN_KEYS = {"role", "content", "tool_calls", "tool_call_id", "name", "weight"}  # a stored turn (samples.Message)


def _as_messages(messages: Sequence[Any]) -> tuple[Message, ...]:
    out = []
    for i, m in enumerate(messages):
        if isinstance(m, Message):
            out.append(m)
        elif isinstance(m, dict) and "role" in m and set(m) <= TURN_KEYS:
            out.append(Message.from_dict(m))  # tool calls, tool results and weights survive an edit
        else:
            raise StudioError(f"messages[{i}]: expected {{role, content}} (and the tool fields "
                              f"{', '.join(sorted(TURN_KEYS - {'role', 'content'}))}), got {m!r:.80}")
    return tuple(out)


def _current(con: duckdb.DuckDBPyConnection, sample_id: int) -> tuple[Sample, dict[str, Any]]:
    cols = ["id", "kind", "system", "messages", "text", "version", "status", "source_file", "source_row",
            "source_id", "lang", "tags", "parent_id", "operation", "lineage"]
    row = con.execute(f"SELECT {columns_sql(cols)} FROM samples WHERE id = ?", [int(sample_id)]).fetchone()
    if row is None:
        raise NotFound(f"no sample with id {sample_id} in this workspace.")
    d = dict(zip(cols, row))
    return from_row(d), d


def _write_content(con: duckdb.DuckDBPyConnection, sample_id: int, s: Sample, version: int) -> None:
    con.execute(
        """UPDATE samples SET system = ?, messages = ?, text = ?, instruction = ?, answer = ?, lang = ?,
           content_hash = ?, version = ? WHERE id = ?""",
        [s.system, s.messages_json(), s.text, s.instruction, s.answer, s.detected_lang(), s.content_hash(),
         version, int(sample_id)],
    )
    con.execute(f"UPDATE samples SET search_text = {SEARCH_TEXT_SQL} WHERE id = ?", [int(sample_id)])


def edit(ws: Workspace, sample_id: int, *, system: Any = _UNSET, messages: Any = _UNSET, text: Any = _UNSET,
         reason: str | None = None) -> int | None:
    """Change a sample's content as one operation; returns its id, or None when nothing changed.
    The previous content is kept in `sample_versions`; `version` goes up by one; instruction,
    answer, lang and content_hash are recomputed. Invalid content raises StudioError naming each
    problem's field (`messages[1].role: ...`) and changes nothing."""
    con = ws.con
    old, row = _current(con, sample_id)
    new = old
    if system is not _UNSET:
        new = replace(new, system=system if system != "" else None)
    if messages is not _UNSET:
        new = replace(new, messages=_as_messages(messages or ()))
    if text is not _UNSET:
        new = replace(new, text=text)
    new = replace(new, lang=None)  # detect the language of the new content
    problems = validate(new)
    if problems:
        raise StudioError(f"sample {sample_id} not changed: " + "; ".join(f"{p.field}: {p.message}" for p in problems))
    if new.content_hash() == old.content_hash():
        return None
    v = int(row["version"])
    with ws.transaction():
        op_id = ws.record_operation("edit", reason=reason, sample_count=1,
                                    details={"sample_id": int(sample_id), "from_version": v, "to_version": v + 1})
        con.execute(
            f"""INSERT INTO sample_versions (sample_id, version, system, messages, text, op_id)
               SELECT id, version, system, {messages_sql()}, text, ? FROM samples WHERE id = ?""",
            [op_id, int(sample_id)],
        )
        _write_content(con, sample_id, new, v + 1)
        con.execute(
            "INSERT INTO op_samples VALUES (?, ?, ?, ?, ?, ?)",
            [op_id, int(sample_id), row["status"], row["status"], v, v + 1],
        )
    return op_id


def _undo_edit(ws: Workspace, op: Operation) -> None:
    con = ws.con
    for sample_id, old_v, new_v in con.execute(
        "SELECT sample_id, old_version, new_version FROM op_samples WHERE op_id = ?", [op.id]
    ).fetchall():
        current, row = _current(con, sample_id)
        if int(row["version"]) != new_v:
            raise StudioError(f"cannot undo edit {op.id}: sample {sample_id} is at version {row['version']}, not {new_v}.")
        prev = con.execute(
            "SELECT system, messages, text FROM sample_versions WHERE sample_id = ? AND version = ?", [sample_id, old_v]
        ).fetchone()
        if prev is None:
            raise StudioError(f"cannot undo edit {op.id}: version {old_v} of sample {sample_id} is missing.")
        restored = replace(current, system=prev[0], text=prev[2], lang=None,
                           messages=_as_messages(json.loads(prev[1]) if prev[1] else ()))
        _write_content(con, sample_id, restored, old_v)
        con.execute("DELETE FROM sample_versions WHERE sample_id = ? AND version = ?", [sample_id, old_v])


# -- import ---------------------------------------------------------------------------------------
def _undo_import(ws: Workspace, op: Operation) -> None:
    con = ws.con
    import_ids = [r[0] for r in con.execute("SELECT id FROM imports WHERE op_id = ?", [op.id]).fetchall()]
    if not import_ids and op.details.get("import_id") is not None:
        import_ids = [int(op.details["import_id"])]
    ids = [r[0] for r in con.execute("SELECT id FROM samples WHERE import_id IN (SELECT unnest(?))", [import_ids]).fetchall()]
    delete_samples(con, ids)
    con.execute("DELETE FROM imports WHERE id IN (SELECT unnest(?))", [import_ids])


# -- undo ---------------------------------------------------------------------------------------
# The kinds this module makes and how each is reverted; curation.undo joins them with the other
# modules' handlers and runs them.
UNDO_HANDLERS: dict[str, Callable[[Workspace, Operation], None]] = {
    "status": _undo_status,
    "edit": _undo_edit,
    "import": _undo_import,
}


def get_operation(con: duckdb.DuckDBPyConnection, op_id: int) -> Operation:
    """One operation of the audit log by id."""
    rows = con.execute(f"SELECT {OP_COLUMNS} FROM operations WHERE id = ?", [int(op_id)]).fetchall()
    if not rows:
        raise NotFound(f"no operation {op_id}; `studio history` lists them.")
    return operation_from_row(rows[0])


def history(con: duckdb.DuckDBPyConnection, limit: int = 50) -> list[Operation]:
    """The latest operations, newest first."""
    return [operation_from_row(r) for r in con.execute(f"SELECT {OP_COLUMNS} FROM operations ORDER BY id DESC LIMIT ?", [int(limit)]).fetchall()]
