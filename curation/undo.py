"""Undo: revert the most recent operations of the audit log, newest first.

Undo is a stack: an older operation is never undone under a newer one. Undo is itself an operation
(kind 'undo'); each reverted operation gets `undone_by` set to it. How an operation is undone
depends on its kind alone: `undo_handlers()` is the table from kind to a function `fn(ws, op)`
(`op` is a curation.review.Operation; the function runs inside the undo transaction), one per
module that makes the kind. An operation stores what it changed, never which code reverts it
(workspaces written before migration 0007 stored a "module:function" name or a recipe in
`details`; that migration drops them). An operation of a kind the table lacks cannot be undone:
undo stops there with a clear error rather than skip it and revert older work out of order.

This module sits above the modules whose operations it reverts (review, dedup, quality,
augment.jobs), so none of them needs to import another to be undone.
"""
from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Callable

import duckdb

from .errors import StudioError
from .review import OP_COLUMNS, Operation, operation_from_row
from .review import UNDO_HANDLERS as REVIEW_HANDLERS

if TYPE_CHECKING:
    from .workspace import Workspace

UndoHandler = Callable[["Workspace", Operation], None]


@cache
def undo_handlers() -> dict[str, UndoHandler]:
    """Operation kind -> the function that reverts it. The modules that own the other kinds are
    imported here, on the first undo, not at the top: they add about 0.1 s to every approve and
    reject from the command line otherwise."""
    from . import dedup, quality
    from .augment import jobs as augment_jobs
    from .augment.templates import OPERATIONS as AUGMENT_OPERATIONS

    return {
        **REVIEW_HANDLERS,
        "dedup": dedup.undo_operation,
        "keeper": dedup.undo_operation,
        "quality": quality.undo_operation,
        **{f"augment:{name}": augment_jobs.undo_augment for name in AUGMENT_OPERATIONS},
        "augment:lineage": augment_jobs.undo_lineage,
    }


# A status change that changed no sample: no longer recorded, but workspaces written before that
# hold some. Undo passes over them (marking them undone with the next real operation).
_EMPTY_OP_SQL = "(kind = 'status' AND sample_count = 0)"


def undoable(con: duckdb.DuckDBPyConnection, n: int = 1) -> list[Operation]:
    """The next `n` operations undo would revert, newest first."""
    rows = con.execute(
        f"SELECT {OP_COLUMNS} FROM operations WHERE undone_by IS NULL AND kind <> 'undo' AND NOT {_EMPTY_OP_SQL} "
        f"ORDER BY id DESC LIMIT ?", [int(n)]
    ).fetchall()
    return [operation_from_row(r) for r in rows]


def undo(ws: Workspace, n: int = 1, reason: str | None = None) -> list[int]:
    """Revert the last `n` operations not yet undone, newest first, in one transaction; returns the
    ids undone (empty when there is nothing to undo). Records an operation of kind 'undo'."""
    if n < 1:
        raise StudioError(f"undo count must be at least 1, got {n}.")
    ops = undoable(ws.con, n)
    if not ops:
        return []
    table = undo_handlers()
    handlers = []
    for op in ops:
        h = table.get(op.kind)
        if h is None:
            raise StudioError(
                f"operation {op.id} ({op.kind}) cannot be undone: this studio has no undo for that kind. "
                f"Nothing was undone; `studio history` lists the operations."
            )
        handlers.append(h)
    with ws.transaction() as con:
        undo_id = ws.record_operation(
            "undo", reason=reason, sample_count=sum(o.sample_count for o in ops),
            details={"undid": [o.id for o in ops], "kinds": [o.kind for o in ops]},
        )
        for op, h in zip(ops, handlers):
            h(ws, op)
            con.execute("UPDATE operations SET undone_by = ? WHERE id = ?", [undo_id, op.id])
        con.execute(f"UPDATE operations SET undone_by = ? WHERE undone_by IS NULL AND {_EMPTY_OP_SQL} AND id > ?",
                    [undo_id, min(o.id for o in ops)])
    return [o.id for o in ops]
