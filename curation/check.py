"""Check, repair, salvage and compact a workspace (`studio check`, `studio compact`).

    report = check_workspace(root)                 # read only: one Finding per thing looked at
    report = check_workspace(root, repair=True)    # and fix what is safe (see below)
    result = salvage(root, dest)                   # copy what can be read into a new workspace
    result = compact(open_workspace(root))         # rewrite the DuckDB file without its free blocks

What `check` looks at: the WAL (`workspace.inspect_wal`); whether DuckDB can open the file; whether
the file holds every block it uses (`workspace.probe_file`); every table read in full (each block's
checksum is verified on the way); the schema migrations applied against those this studio knows;
rows that hang off samples which no longer exist (ORPHAN_TABLES); jobs still marked running whose
process is gone; the leftovers of killed exports (`splits/.NAME.tmp-PID`, `.NAME.old-PID`) and
compactions (`.studio.duckdb.compact-PID`).

What `repair` does, and nothing else: moves a WAL that DuckDB cannot use aside (renamed, never
deleted; a WAL damaged in the middle is copied aside, then DuckDB replays what it can and the rest
is checkpointed), applies pending migrations, deletes orphan rows in one transaction, marks dead
jobs `interrupted` (an augment job stays resumable), removes dead temporary folders, and puts back
a split a killed export had moved to `.NAME.old-PID`. It never writes to a damaged database file:
that is what `salvage` is for.

DuckDB 2.0, measured: COPY FROM DATABASE (into an ATTACHed new file) carries tables with their
primary keys and defaults, the ENUM type, sequences at their current value and schema_migrations;
`sum(hash(row))` per table is the same on both sides, which is how compaction is verified.
"""
from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from .errors import StudioError, WorkspaceDamaged, WorkspaceLocked, human_size
from .workspace import (
    DB_NAME,
    FILE_HEADER_BYTES,
    SAMPLE_TABLES,
    WAL_SUFFIX,
    WalInfo,
    Workspace,
    _connect,
    dead_jobs,
    inspect_wal,
    migrations,
    open_workspace,
    pid_alive,
    probe_file,
    recovery_hint,
)

# Tables whose rows only describe a sample (sample_id): rows there without their sample are orphans.
ORPHAN_TABLES = SAMPLE_TABLES
# Tables with a sample_id that record history (the audit log, what undo puts back, failed requests):
# a deleted sample's rows stay there on purpose.
HISTORY_TABLES = ("op_samples", "dup_undo_members", "dup_undo_samples", "quality_undo", "llm_failures")
# Sequences and the column whose ids they hand out (salvage sets each past the highest id copied).
SEQUENCE_COLUMNS = {"sample_id_seq": ("samples", "id"), "op_id_seq": ("operations", "id"),
                    "job_id_seq": ("jobs", "id"), "cluster_id_seq": ("dup_clusters", "id")}
BACKUP_SUFFIX = ".bak"
COMPACT_PREFIX = f".{DB_NAME}.compact-"


@dataclass
class Finding:
    check: str                 # wal, open, file, tables, schema, orphans, jobs, temp, files
    status: str                # ok, problem, fixed, note
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    root: Path
    findings: list[Finding] = field(default_factory=list)

    def add(self, check: str, status: str, message: str, **details: Any) -> Finding:
        f = Finding(check, status, message, details)
        self.findings.append(f)
        return f

    @property
    def clean(self) -> bool:
        """No problem left (fixed ones count as clean)."""
        return not any(f.status == "problem" for f in self.findings)

    def as_dict(self) -> dict[str, Any]:
        return {"workspace": str(self.root), "clean": self.clean,
                "findings": [_jsonable(asdict(f)) for f in self.findings]}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def tables(con: duckdb.DuckDBPyConnection, database: str | None = None) -> list[str]:
    """The tables of a database's main schema (default: the connection's own), by name."""
    db = database or con.execute("SELECT current_database()").fetchall()[0][0]
    return [r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = ? AND schema_name = 'main' ORDER BY 1",
        [db]).fetchall()]


def table_digest(con: duckdb.DuckDBPyConnection, qualified: str) -> tuple[int, int]:
    """(rows, sum of every row's hash): reads every column of every row, so every block's checksum
    is verified; equal on two copies of a table whatever the row order."""
    n, h = con.execute(f"SELECT count(*), coalesce(sum(hash(r)::HUGEINT), 0) FROM {qualified} AS r").fetchall()[0]
    return int(n), int(h)


# -- check and repair -----------------------------------------------------------------------------------
def check_workspace(root: str | os.PathLike[str], *, repair: bool = False) -> Report:
    """Look the workspace over (and with `repair`, fix what is safe); see the module docstring."""
    root = Path(root)
    db = root / DB_NAME
    if not db.exists():
        raise StudioError(f"no workspace at {root} (no {DB_NAME} there): pass the right --workspace.")
    report = Report(root)
    # Take the workspace first (read-only): another process holding it raises WorkspaceLocked
    # before anything is looked at or changed.
    con = _open_for_check(report, db, repair)
    wal = inspect_wal(db)
    if wal.damaged and repair and con is not None:
        con.close()
        _check_wal(report, wal, db, repair=True)
        con = _open_for_check(report, db, False, quiet=True)
    else:
        _check_wal(report, wal, db, repair=False)
    damaged = con is None
    unreadable: list[str] = []
    if con is not None:
        try:
            damage = probe_file(con, db)
            if damage:
                damaged = True
                report.add("file", "problem", f"{damage}; to recover, {recovery_hint(root)}")
            else:
                report.add("file", "ok", f"{db.name}: {human_size(db.stat().st_size)}, every block it uses is there")
            unreadable = _check_tables(report, con)
            damaged = damaged or bool(unreadable)
            _check_schema(report, con)
            _check_orphans(report, con, unreadable)
            _check_jobs(report, con, unreadable)
        finally:
            con.close()
    _check_split_leftovers(report, root, repair)
    _check_root_leftovers(report, root, repair)
    if repair:
        if damaged:
            for f in report.findings:
                if f.status == "problem" and f.check in ("orphans", "jobs", "schema"):
                    f.message += " (not repaired: the database file is damaged; salvage it first)"
        elif any(f.status == "problem" and f.check in ("orphans", "jobs", "schema") for f in report.findings):
            _repair_database(report, root)
    return report


def _check_wal(report: Report, wal: WalInfo, db: Path, repair: bool) -> None:
    if not wal.damaged:
        report.add("wal", "note" if wal.state in ("torn", "unknown") else "ok", wal.describe(),
                   state=wal.state, bytes=wal.size, entries=wal.entries)
        return
    if not repair:
        fix = ("keeps a copy, then lets DuckDB replay the readable entries" if wal.state == "corrupt"
               else "moves it aside (renamed, kept)")
        report.add("wal", "problem", f"{wal.describe()}; `studio check --repair` {fix}",
                   state=wal.state, bytes=wal.size, entries=wal.entries)
        return
    kept = _aside(wal.path)
    if wal.state == "corrupt":
        # Keep a copy, then let DuckDB replay the entries before the damage and checkpoint them.
        shutil.copy2(wal.path, kept)
        try:
            con = duckdb.connect(str(db))
            con.execute("CHECKPOINT")
            con.close()
        except duckdb.Error as exc:
            report.add("wal", "problem", f"{wal.describe()}; copied to {kept.name}, but replaying it failed: "
                       f"{' '.join(str(exc).split())}", state=wal.state, kept=kept)
            return
        report.add("wal", "fixed", f"{wal.describe()}: kept a copy as {kept.name}, replayed the {wal.entries} "
                   f"readable entries and checkpointed them; the {wal.dropped_entries} after the damage are only in "
                   f"the copy", state=wal.state, kept=kept)
        return
    os.replace(wal.path, kept)
    report.add("wal", "fixed", f"{wal.describe()}: moved aside to {kept.name}; the workspace opens as of its last "
               f"checkpoint", state=wal.state, kept=kept)


def _aside(path: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    kept = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while kept.exists():
        n += 1
        kept = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    return kept


def _open_for_check(report: Report, db: Path, repair: bool, quiet: bool = False) -> duckdb.DuckDBPyConnection | None:
    """A read-only connection for looking (another process holding the workspace: WorkspaceLocked).
    A WAL DuckDB refuses to replay is moved aside with `repair`; a file it cannot open is reported."""
    wal_path = Path(str(db) + WAL_SUFFIX)
    try:
        con = _connect(db, read_only=True)
        if not quiet:
            report.add("open", "ok", f"DuckDB opens {db.name}")
        return con
    except WorkspaceLocked:
        raise
    except WorkspaceDamaged as exc:
        text = str(exc)
        if text.startswith(str(wal_path)) and wal_path.exists():
            if not repair:
                report.add("open", "problem", text.split(". Run `studio check")[0] + "; `studio check --repair` "
                           "moves it aside (renamed, kept) so the workspace opens as of its last checkpoint")
                return None
            kept = _aside(wal_path)
            os.replace(wal_path, kept)
            report.add("open", "fixed", f"DuckDB could not replay {wal_path.name}: moved it aside to {kept.name}; "
                       f"the workspace opens as of its last checkpoint", kept=kept)
            return _open_for_check(report, db, False)
        report.add("open", "problem", text.rstrip("."))
        return None
    except StudioError as exc:
        report.add("open", "problem", str(exc))
        return None


def _check_tables(report: Report, con: duckdb.DuckDBPyConnection) -> list[str]:
    """Read every table in full; the names of those DuckDB cannot read."""
    bad: list[str] = []
    rows = 0
    try:
        names = tables(con)
    except duckdb.Error as exc:
        report.add("tables", "problem", f"the catalog cannot be read: {exc}")
        return ["*"]
    for t in names:
        try:
            rows += table_digest(con, _q(t))[0]
        except duckdb.Error as exc:
            bad.append(t)
            report.add("tables", "problem", f"table {t} cannot be read in full: {' '.join(str(exc).split())}", table=t)
    if not bad:
        report.add("tables", "ok", f"all {len(names)} tables read in full ({rows:,} rows)", tables=len(names), rows=rows)
    return bad


def _check_schema(report: Report, con: duckdb.DuckDBPyConnection) -> None:
    known = {m.version: m.name for m in migrations()}
    try:
        applied = {int(v) for (v,) in con.execute("SELECT version FROM schema_migrations").fetchall()}
    except duckdb.Error as exc:
        report.add("schema", "problem", f"schema_migrations cannot be read: {exc}")
        return
    unknown = sorted(v for v in applied if v not in known)
    pending = sorted(v for v in known if v not in applied)
    if unknown and max(unknown) > max(known):
        report.add("schema", "problem", f"migrations {unknown} are newer than this studio knows (up to {max(known)}): "
                   f"upgrade the studio (pip install -U finetune-studio)", applied=sorted(applied), unknown=unknown)
    elif unknown:
        report.add("schema", "note", f"migrations {unknown} are not among this studio's", applied=sorted(applied))
    if pending:
        report.add("schema", "problem", f"migrations {pending} are not applied yet (they are when the workspace is "
                   f"opened read-write, e.g. by `studio check --repair`)", pending=pending)
    if not unknown and not pending:
        report.add("schema", "ok", f"schema version {max(applied)}: migrations {min(applied)}-{max(applied)} applied, "
                   f"all known", version=max(applied))


def _orphans(con: duckdb.DuckDBPyConnection, skip: list[str]) -> dict[str, int]:
    present = set(tables(con))
    if "samples" not in present or "samples" in skip or "*" in skip:
        return {}
    found = {}
    for t in ORPHAN_TABLES:
        if t in present and t not in skip:
            n = con.execute(f"SELECT count(*) FROM {_q(t)} WHERE sample_id NOT IN (SELECT id FROM samples)").fetchall()[0][0]
            if n:
                found[t] = int(n)
    return found


def _check_orphans(report: Report, con: duckdb.DuckDBPyConnection, skip: list[str]) -> None:
    found = _orphans(con, skip)
    if found:
        what = ", ".join(f"{n:,} in {t}" for t, n in found.items())
        report.add("orphans", "problem", f"rows of samples that no longer exist: {what} "
                   f"(`studio check --repair` deletes them)", tables=found)
    elif "samples" not in skip:
        report.add("orphans", "ok", "no rows hang off a sample that no longer exists")


def _check_jobs(report: Report, con: duckdb.DuckDBPyConnection, skip: list[str]) -> None:
    if "jobs" in skip or "*" in skip:
        return
    dead = dead_jobs(con)
    if not dead:
        report.add("jobs", "ok", "no job is marked running without its process")
        return
    for job_id, kind, pid in dead:
        report.add("jobs", "problem", f"job {job_id} ({kind}) is marked running, but its process "
                   f"{pid if pid is not None else '?'} no longer runs it (killed?); `studio check --repair` marks it "
                   f"interrupted" + (f", then `studio augment resume {job_id}` continues it" if kind.startswith("augment:") else ""),
                   job=job_id, kind=kind, pid=pid)


def _check_split_leftovers(report: Report, root: Path, repair: bool) -> None:
    from .export import split_leftovers

    items = split_leftovers(root / "splits")
    if not items:
        report.add("temp", "ok", "no leftovers of killed exports in splits/")
        return
    for item in items:
        rel = f"splits/{item['path'].name}"
        if item["alive"]:
            report.add("temp", "note", f"{rel}: process {item['pid']} still runs, left alone", path=item["path"])
            continue
        target = root / "splits" / item["name"]
        if item["kind"] == "tmp":
            msg = f"{rel}: a split a killed export (process {item['pid']}) left half-written, {human_size(item['bytes'])}"
            if repair:
                shutil.rmtree(item["path"], ignore_errors=True)
                report.add("temp", "fixed" if not item["path"].exists() else "problem", f"{msg}: removed", path=item["path"])
            else:
                report.add("temp", "problem", f"{msg} (`studio check --repair` or the next export removes it)",
                           path=item["path"], bytes=item["bytes"])
        elif target.exists():
            msg = f"{rel}: the previous copy of split {item['name']!r}, replaced by a killed export, {human_size(item['bytes'])}"
            if repair:
                shutil.rmtree(item["path"], ignore_errors=True)
                report.add("temp", "fixed" if not item["path"].exists() else "problem", f"{msg}: removed", path=item["path"])
            else:
                report.add("temp", "problem", f"{msg} (`studio check --repair` removes it)", path=item["path"])
        else:
            msg = f"{rel}: split {item['name']!r}, moved aside by an export killed before it put the new one in place"
            if repair:
                os.replace(item["path"], target)
                report.add("temp", "fixed", f"{msg}: put back as splits/{item['name']}", path=target)
            else:
                report.add("temp", "problem", f"{msg} (`studio check --repair` puts it back)", path=item["path"])


def _check_root_leftovers(report: Report, root: Path, repair: bool) -> None:
    for path in sorted(root.glob(COMPACT_PREFIX + "*")):
        pid_text = path.name[len(COMPACT_PREFIX):].split(".")[0]
        pid = int(pid_text) if pid_text.isdigit() else None
        if pid is not None and (pid == os.getpid() or pid_alive(pid)):
            report.add("files", "note", f"{path.name}: a compaction by process {pid} is running", path=path)
            continue
        msg = f"{path.name}: the new file of a compaction that did not finish, {human_size(path.stat().st_size)}"
        if repair:
            path.unlink(missing_ok=True)
            report.add("files", "fixed", f"{msg}: removed (the workspace was never switched to it)", path=path)
        else:
            report.add("files", "problem", f"{msg} (`studio check --repair` removes it)", path=path)
    bak = root / (DB_NAME + BACKUP_SUFFIX)
    if bak.exists():
        report.add("files", "note", f"{bak.name}: the file before a `studio compact` ({human_size(bak.stat().st_size)}); "
                   f"delete it when the workspace works", path=bak)
    for kept in sorted(root.glob(DB_NAME + WAL_SUFFIX + ".damaged-*")):
        report.add("files", "note", f"{kept.name}: a damaged write-ahead log moved aside by `studio check --repair`",
                   path=kept)


def _repair_database(report: Report, root: Path) -> None:
    """Open read-write (applies pending migrations, marks dead jobs interrupted), delete orphans."""
    try:
        ws = open_workspace(root, create=False)
    except StudioError as exc:
        report.add("repair", "problem", f"cannot open the workspace to repair it: {exc}")
        return
    try:
        for f in report.findings:
            if f.status != "problem":
                continue
            if f.check == "schema" and "pending" in f.details:
                f.status = "fixed"
                f.message = f"applied migrations {f.details['pending']}"
            elif f.check == "jobs" and f.details.get("job") in ws.interrupted_jobs:
                f.status = "fixed"
                job, kind = f.details["job"], f.details.get("kind", "")
                f.message = f"job {job} ({kind}) marked interrupted: its process {f.details.get('pid')} had ended" + (
                    f"; `studio augment resume {job}` continues it" if kind.startswith("augment:") else "")
        orphan = next((f for f in report.findings if f.check == "orphans" and f.status == "problem"), None)
        if orphan is not None:
            deleted = {}
            with ws.transaction() as con:
                for t in orphan.details["tables"]:
                    deleted[t] = int(con.execute(
                        f"DELETE FROM {_q(t)} WHERE sample_id NOT IN (SELECT id FROM samples)").fetchall()[0][0])
            orphan.status = "fixed"
            orphan.message = ("deleted rows of samples that no longer exist: "
                              + ", ".join(f"{n:,} from {t}" for t, n in deleted.items()))
            orphan.details["deleted"] = deleted
    finally:
        ws.close()


# -- salvage -----------------------------------------------------------------------------------------------
def salvage(root: str | os.PathLike[str], dest: str | os.PathLike[str],
            on_table: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Copy every table DuckDB can read from the workspace at `root` (opened read-only, never
    written) into a new workspace at `dest`. A table that cannot be read whole is copied one row
    group at a time. Returns {"dest", "source_as_of", "tables": [{table, rows, copied, unreadable,
    note}], "complete"}."""
    root, dest = Path(root), Path(dest)
    src = root / DB_NAME
    if not src.exists():
        raise StudioError(f"no workspace at {root} (no {DB_NAME} there): pass the damaged workspace with -w.")
    if dest.resolve() == root.resolve():
        raise StudioError("--salvage needs a new folder, not the damaged workspace itself.")
    if (dest / DB_NAME).exists():
        raise StudioError(f"{dest} already holds a workspace: choose a new folder for --salvage.")
    ws = open_workspace(dest)
    con = ws.con
    as_of = "its last write"
    copy_of: Path | None = None
    try:
        try:
            con.execute(f"ATTACH {_lit(str(src))} AS salvage_src (READ_ONLY)")
            if inspect_wal(src).damaged:
                as_of = "its last checkpoint (the damaged write-ahead log was not read)"
        except duckdb.Error as exc:
            if "lock" in str(exc).lower():
                raise WorkspaceLocked(f"workspace {root} is open in another process: close it, then salvage.") from None
            # Most often a WAL DuckDB refuses to replay: read the file alone, as of its last checkpoint.
            copy_of = dest / f".salvage-source-{os.getpid()}.duckdb"
            shutil.copyfile(src, copy_of)
            try:
                con.execute(f"ATTACH {_lit(str(copy_of))} AS salvage_src (READ_ONLY)")
            except duckdb.Error as exc2:
                raise WorkspaceDamaged(f"nothing in {src} can be read ({' '.join(str(exc2).split())}); "
                                       f"{recovery_hint(root).split(', or ', 1)[-1]}.") from None
            as_of = f"its last checkpoint (DuckDB could not replay its write-ahead log: {' '.join(str(exc).split())})"
        results = [_salvage_table(con, t, tables(con)) for t in tables(con, "salvage_src") if t != "schema_migrations"]
        for r in results:
            if on_table:
                on_table(r)
        _salvage_sequences(con)
        con.execute("DETACH salvage_src")
        con.execute("CHECKPOINT")
    finally:
        ws.close()
        if copy_of is not None:
            copy_of.unlink(missing_ok=True)
            Path(str(copy_of) + WAL_SUFFIX).unlink(missing_ok=True)
    complete = all(r["unreadable"] == 0 and r["note"] is None for r in results)
    return {"dest": str(dest), "source": str(root), "source_as_of": as_of, "tables": results, "complete": complete}


def _columns(con: duckdb.DuckDBPyConnection, database: str, table: str) -> list[str]:
    return [r[0] for r in con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE database_name = ? AND schema_name = 'main' AND table_name = ? "
        "ORDER BY column_index", [database, table]).fetchall()]


def _salvage_table(con: duckdb.DuckDBPyConnection, table: str, dest_tables: list[str]) -> dict[str, Any]:
    src = f"salvage_src.main.{_q(table)}"
    try:
        rows = int(con.execute(f"SELECT count(*) FROM {src}").fetchall()[0][0])
    except duckdb.Error:
        rows = None
    out: dict[str, Any] = {"table": table, "rows": rows, "copied": 0, "unreadable": 0, "note": None}
    if table not in dest_tables:
        out["note"] = "not in this studio's schema: not copied"
        out["unreadable"] = rows or 0
        return out
    dest_db = con.execute("SELECT current_database()").fetchall()[0][0]
    common = [c for c in _columns(con, "salvage_src", table) if c in set(_columns(con, dest_db, table))]
    cols = ", ".join(_q(c) for c in common)
    insert = f"INSERT INTO main.{_q(table)} ({cols}) SELECT {cols} FROM {src}"
    try:
        con.execute("BEGIN TRANSACTION")
        con.execute(insert)
        con.execute("COMMIT")
        out["copied"] = int(con.execute(f"SELECT count(*) FROM main.{_q(table)}").fetchall()[0][0])
    except duckdb.Error:
        con.execute("ROLLBACK")
        out["copied"] = _salvage_by_row_group(con, insert, src)
    if rows is not None:
        out["unreadable"] = max(rows - out["copied"], 0)
    elif out["copied"] == 0:
        out["note"] = "unreadable"
    return out


def _salvage_by_row_group(con: duckdb.DuckDBPyConnection, insert: str, src: str, step: int = 122_880) -> int:
    """Copy what can be read, one row group's range of row ids at a time (a truncated file loses the
    row groups whose blocks are missing, not the whole table)."""
    try:
        top = con.execute(f"SELECT max(rowid) FROM {src}").fetchall()[0][0]
    except duckdb.Error:
        return 0
    if top is None:
        return 0
    copied = 0
    for start in range(0, int(top) + 1, step):
        try:
            con.execute("BEGIN TRANSACTION")
            n = con.execute(f"{insert} WHERE rowid >= {start} AND rowid < {start + step}").fetchall()[0][0]
            con.execute("COMMIT")
            copied += int(n)
        except duckdb.Error:
            con.execute("ROLLBACK")
    return copied


def _salvage_sequences(con: duckdb.DuckDBPyConnection) -> None:
    """Set each sequence of the new workspace past the source's value and the highest id copied, so
    new samples, operations and jobs never reuse an id."""
    src = {r[0]: r[1] for r in con.execute(
        "SELECT sequence_name, last_value FROM duckdb_sequences() WHERE database_name = 'salvage_src'").fetchall()}
    for seq, (table, col) in SEQUENCE_COLUMNS.items():
        try:
            top = con.execute(f"SELECT max({_q(col)}) FROM main.{_q(table)}").fetchall()[0][0]
        except duckdb.Error:
            continue
        start = max(int(top or 0), int(src.get(seq) or 0)) + 1
        con.execute(f"CREATE OR REPLACE SEQUENCE {_q(seq)} START {start}")


# -- compact -----------------------------------------------------------------------------------------------
def compact(ws: Workspace, *, keep_backup: bool = False) -> dict[str, Any]:
    """Rewrite the workspace's DuckDB file without its free blocks: copy every table, sequence and
    type into a new file (COPY FROM DATABASE), check rows and a content hash per table, switch files
    atomically (the old one kept as studio.duckdb.bak until the new one opened and matched; with
    `keep_backup` it stays). Takes `ws` (opened normally, so this process holds the workspace) and
    closes it. Returns before/after sizes and the rows per table."""
    root, db = ws.root, ws.db_path
    bak = root / (DB_NAME + BACKUP_SUFFIX)
    tmp = root / f"{COMPACT_PREFIX}{os.getpid()}"
    con = ws.con
    try:
        if bak.exists():
            raise StudioError(f"{bak} exists (kept by an earlier `studio compact --keep-backup`): delete or move it, "
                              f"then compact again.")
        con.execute("CHECKPOINT")
        name = con.execute("SELECT current_database()").fetchall()[0][0]
        size_row = next(r for r in con.execute("PRAGMA database_size").fetchall() if r[0] == name)
        block, used = int(size_row[2]), int(size_row[4])
        before = db.stat().st_size
        need = int((FILE_HEADER_BYTES + used * block) * 1.1) + (16 << 20)
        free = shutil.disk_usage(root).free
        if free < need:
            raise StudioError(f"not enough free space to compact {db}: the copy needs about {human_size(need)} in {root}, "
                              f"{human_size(free)} is free. Free some space there and run `studio compact` again; "
                              f"nothing was changed.")
        names = tables(con)
        digests = {t: table_digest(con, _q(t)) for t in names}
        catalog = _catalog(con, name)
        for p in (tmp, Path(str(tmp) + WAL_SUFFIX)):
            p.unlink(missing_ok=True)
        con.execute(f"ATTACH {_lit(str(tmp))} AS compact_new")
        try:
            con.execute(f"COPY FROM DATABASE {_q(name)} TO compact_new")
            copied = {t: table_digest(con, f"compact_new.main.{_q(t)}") for t in tables(con, "compact_new")}
            new_catalog = _catalog(con, "compact_new")
        finally:
            con.execute("DETACH compact_new")
        problem = _compare(digests, copied, catalog, new_catalog)
        if problem or Path(str(db) + WAL_SUFFIX).exists():
            tmp.unlink(missing_ok=True)
            raise StudioError(f"compaction stopped, the workspace is unchanged: the copy differs ({problem or 'a WAL appeared'}).")
        # Switch while this process still holds the old file: `bak` becomes a second name for it,
        # then the new file takes the workspace's name in one rename (a process that opens the
        # workspace from then on gets the new, complete file).
        try:
            os.link(db, bak)
            linked = True
        except OSError:
            linked = False
        if linked:
            try:
                os.replace(tmp, db)
            except BaseException:
                bak.unlink(missing_ok=True)  # the same file as db: nothing is lost
                raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        Path(str(tmp) + WAL_SUFFIX).unlink(missing_ok=True)
        ws.close()
        raise
    ws.close()
    if not linked:  # a file system without hard links: rename after closing
        os.replace(db, bak)
        os.replace(tmp, db)
    try:
        check = open_workspace(root, create=False)
    except WorkspaceLocked as exc:  # another process took the new file: it is complete; keep the old one
        raise StudioError(f"compacted {db}, but another process opened it before the check ({exc}); the original is "
                          f"kept as {bak}: delete it once `studio check` is clean.") from None
    except StudioError as exc:
        os.replace(bak, db)
        raise StudioError(f"the compacted file did not open ({exc}); the original is back in place.") from None
    try:
        after_digests = {t: table_digest(check.con, _q(t)) for t in tables(check.con)}
    finally:
        check.close()
    problem = _compare(digests, after_digests, None, None)
    if problem:
        os.replace(bak, db)
        raise StudioError(f"the compacted file differs from the original ({problem}); the original is back in place.")
    if not keep_backup:
        bak.unlink()
    after = db.stat().st_size
    return {"workspace": str(root), "before_bytes": before, "after_bytes": after,
            "tables": {t: n for t, (n, _) in digests.items()},
            "backup": str(bak) if keep_backup else None}


def _catalog(con: duckdb.DuckDBPyConnection, database: str) -> dict[str, Any]:
    """What must survive a copy besides the rows: sequences with their values, types, views, indexes."""
    def q(sql: str) -> list[tuple]:
        return sorted(tuple(r) for r in con.execute(sql, [database]).fetchall())

    return {
        "sequences": q("SELECT sequence_name, last_value FROM duckdb_sequences() WHERE database_name = ?"),
        "types": q("SELECT type_name FROM duckdb_types() WHERE database_name = ? AND NOT internal"),
        "views": q("SELECT view_name FROM duckdb_views() WHERE database_name = ? AND NOT internal"),
        "indexes": q("SELECT index_name, table_name FROM duckdb_indexes() WHERE database_name = ?"),
    }


def _compare(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]],
             cat_before: dict[str, Any] | None, cat_after: dict[str, Any] | None) -> str | None:
    if set(before) != set(after):
        return f"tables {sorted(set(before) ^ set(after))} are on one side only"
    for t, (n, h) in before.items():
        if after[t][0] != n:
            return f"table {t}: {n} rows before, {after[t][0]} after"
        if after[t][1] != h:
            return f"table {t}: the content hash differs"
    if cat_before is not None and cat_after is not None:
        for key in cat_before:
            if cat_before[key] != cat_after.get(key):
                return f"{key}: {cat_before[key]} before, {cat_after.get(key)} after"
    return None
