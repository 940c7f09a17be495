"""A workspace: a folder with one DuckDB file (`studio.duckdb`), `splits/` and `runs/`.

DuckDB locks its file exclusively: while one process has it open, no other can open it, not even
read-only. So one process owns a workspace at a time; `open_workspace` turns DuckDB's lock error
into a `WorkspaceLocked` that names the holder and says what to do.

DuckDB 2.0: a `fetchone()` leaves its result open, and a later `con.register()` / `con.sql()` on
that connection then fails with "unfinished result". Fetch with `fetchall()` here.

Threads: a DuckDB connection must not be used from two threads at once. Code running in a worker
thread takes its own cursor with `ws.cursor()` (cursors share the database and see each other's
committed writes).
"""
from __future__ import annotations

import json
import os
import re
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Iterator

import duckdb

from .errors import SchemaTooNew, StudioError, WorkspaceLocked
from .paths import default_path

DB_NAME = "studio.duckdb"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """The numbered SQL files in curation/migrations, in order."""
    found = []
    for entry in resources.files("curation.migrations").iterdir():
        m = re.fullmatch(r"(\d{4})_(\w+)\.sql", entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two migrations share a number: {versions}")
    return found


SCHEMA_VERSION = max(m.version for m in migrations())


def _lock_holder(message: str) -> str:
    """Describe the process named in DuckDB's lock error ("... (PID 123) ...")."""
    m = re.search(r"PID (\d+)", message)
    if not m:
        return "another process"
    pid = int(m.group(1))
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        cmd = ""
    return f"process {pid}" + (f" ({cmd})" if cmd else "")


class Workspace:
    """An open workspace. Use `open_workspace()`; close with `close()` or a `with` block."""

    def __init__(self, root: Path, con: duckdb.DuckDBPyConnection, read_only: bool = False):
        self.root = root
        self.con = con
        self.read_only = read_only
        self._tx_depth = 0
        self._lock = threading.RLock()

    # -- paths ------------------------------------------------------------------------------
    @property
    def db_path(self) -> Path:
        return self.root / DB_NAME

    @property
    def splits_dir(self) -> Path:
        return self.root / "splits"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def config_path(self) -> Path:
        """Workspace settings a person may edit (providers, defaults). Never holds a secret."""
        return self.root / "studio.yaml"

    # -- connections ------------------------------------------------------------------------
    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A connection for another thread (DuckDB connections are not shared across threads)."""
        return self.con.cursor()

    def close(self) -> None:
        try:
            self.con.close()
        except duckdb.Error:
            pass

    def __enter__(self) -> "Workspace":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self, con: duckdb.DuckDBPyConnection | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """One transaction: everything inside commits together or not at all. Nests (inner blocks
        join the outer transaction) when used on the workspace's own connection."""
        con = con or self.con
        if con is self.con:
            with self._lock:
                if self._tx_depth:
                    self._tx_depth += 1
                    try:
                        yield con
                    finally:
                        self._tx_depth -= 1
                    return
                self._tx_depth = 1
                try:
                    con.execute("BEGIN TRANSACTION")
                    try:
                        yield con
                    except BaseException:
                        con.execute("ROLLBACK")
                        raise
                    con.execute("COMMIT")
                finally:
                    self._tx_depth = 0
        else:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    # -- audit log --------------------------------------------------------------------------
    def record_operation(
        self,
        kind: str,
        *,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
        sample_count: int = 0,
        con: duckdb.DuckDBPyConnection | None = None,
    ) -> int:
        """Append one operation to the audit log and return its id. Call inside the transaction
        that makes the change, so the change and its record land together."""
        con = con or self.con
        op_id = con.execute("SELECT nextval('op_id_seq')").fetchall()[0][0]
        con.execute(
            "INSERT INTO operations (id, kind, reason, sample_count, details) VALUES (?, ?, ?, ?, ?)",
            [op_id, kind, reason, sample_count, json.dumps(details or {}, ensure_ascii=False)],
        )
        return int(op_id)

    def last_operation_id(self) -> int | None:
        row = self.con.execute("SELECT max(id) FROM operations").fetchall()[0]
        return None if row[0] is None else int(row[0])

    # -- settings ---------------------------------------------------------------------------
    def read_config(self) -> dict[str, Any]:
        import yaml

        if not self.config_path.exists():
            return {}
        try:
            data = yaml.safe_load(self.config_path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise StudioError(f"{self.config_path}: not valid YAML: {exc}. Fix the file or delete it.") from exc
        if not isinstance(data, dict):
            raise StudioError(f"{self.config_path}: expected a mapping at the top level.")
        return data

    def write_config(self, data: dict[str, Any]) -> None:
        import yaml

        tmp = self.config_path.with_suffix(".yaml.tmp")
        tmp.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
        os.replace(tmp, self.config_path)

    # -- small queries used everywhere --------------------------------------------------------
    def schema_version(self) -> int:
        return int(self.con.execute("SELECT max(version) FROM schema_migrations").fetchall()[0][0])

    def count(self, where: str = "TRUE", params: Iterable[Any] = ()) -> int:
        return int(self.con.execute(f"SELECT count(*) FROM samples WHERE {where}", list(params)).fetchall()[0][0])


def _connect(db: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    try:
        return duckdb.connect(str(db), read_only=read_only)
    except duckdb.IOException as exc:
        msg = str(exc)
        if "lock" in msg.lower():
            holder = _lock_holder(msg)
            raise WorkspaceLocked(
                f"workspace {db.parent} is open in {holder}. DuckDB lets one process use a "
                f"workspace at a time: close that studio or wait for that command to finish, "
                f"or use another workspace with --workspace DIR."
            ) from None
        raise StudioError(f"cannot open {db}: {msg}") from None
    except duckdb.Error as exc:
        raise StudioError(f"{db} is not a usable workspace database: {exc}") from None


def _migrate(con: duckdb.DuckDBPyConnection, db: Path) -> None:
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT, "
        "applied_at TIMESTAMP DEFAULT current_timestamp)"
    )
    applied = {r[0] for r in con.execute("SELECT version FROM schema_migrations").fetchall()}
    known = {m.version for m in migrations()}
    newer = sorted(v for v in applied if v not in known and v > max(known))
    if newer:
        raise SchemaTooNew(
            f"{db} has schema version {max(applied)}, newer than this studio knows ({max(known)}). "
            f"Upgrade the studio (pip install -U finetune-studio) to open it."
        )
    for m in migrations():
        if m.version in applied:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(m.sql)
            con.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [m.version, m.name])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise


def open_workspace(path: str | os.PathLike[str] | None = None, *, create: bool = True, read_only: bool = False) -> Workspace:
    """Open (and with `create`, make) the workspace at `path`, migrating its schema to this version."""
    root = Path(path) if path is not None else default_path()
    db = root / DB_NAME
    if root.exists() and not root.is_dir():
        raise StudioError(f"workspace path {root} is a file, not a folder. Pass --workspace DIR with a folder.")
    if not db.exists():
        if not create:
            raise StudioError(
                f"no workspace at {root} (no {DB_NAME} there). Import data with `studio import FILE "
                f"--workspace {root}` or pass the right --workspace."
            )
        if read_only:
            raise StudioError(f"no workspace at {root} to open read-only.")
        root.mkdir(parents=True, exist_ok=True)
    con = _connect(db, read_only)
    if not read_only:
        _migrate(con, db)
        (root / "splits").mkdir(exist_ok=True)
        (root / "runs").mkdir(exist_ok=True)
    return Workspace(root, con, read_only=read_only)
