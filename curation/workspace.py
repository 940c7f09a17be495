"""A workspace: a folder with one DuckDB file (`studio.duckdb`), `splits/` and `runs/`.

DuckDB locks its file exclusively: while one process has it open, no other can open it, not even
read-only. So one process owns a workspace at a time; `open_workspace` turns DuckDB's lock error
into a `WorkspaceLocked` that names the holder and says what to do.

DuckDB 2.0: a `fetchone()` leaves its result open, and a later `con.register()` / `con.sql()` on
that connection then fails with "unfinished result". Fetch with `fetchall()` here.

Threads: a DuckDB connection must not be used from two threads at once. Code running in a worker
thread takes its own cursor with `ws.cursor()` (cursors share the database and see each other's
committed writes).

Damage: DuckDB 2.0 opens a `studio.duckdb` cut short (a full disk, a bad copy) without complaint
and fails on the first query that reads a missing block; it silently skips a `studio.duckdb.wal`
that is not a write-ahead log (and truncates it at the first write), losing the changes in it. So
`open_workspace` checks both before handing out the workspace (`inspect_wal` before connecting,
`probe_file` after) and raises `WorkspaceDamaged`, one line that names the file and the way back.
`studio check` (curation.check) reports, repairs what is safe, and salvages.

Jobs: a row of `jobs` whose state is still `running` although the process that ran it is gone
(killed, crashed) becomes `interrupted` when the workspace is opened read-write
(`interrupt_dead_jobs`). Since DuckDB lets one process hold the file, a running job of another
process cannot be alive while this one has the workspace open; within this process, a job is alive
while it is registered with `live_job`.
"""
from __future__ import annotations

import json
import os
import re
import struct
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Iterator

import duckdb

from .errors import SchemaTooNew, StudioError, WorkspaceDamaged, WorkspaceLocked
from .paths import default_path

DB_NAME = "studio.duckdb"
WAL_SUFFIX = ".wal"


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
# Tables whose rows only describe a sample (by sample_id): without the sample they mean nothing, and
# some get in the way (an augment_outputs row stops a rerun from landing that answer again).
# store.delete_samples clears them; `studio check` reports rows left behind in them. The tables that
# keep a deleted sample's id on purpose (the audit log, what undo puts back) are check.HISTORY_TABLES.
SAMPLE_TABLES = ("sample_versions", "quality_flags", "quality_values", "dup_members", "minhash_signatures",
                 "augment_outputs")


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
        self.interrupted_jobs: list[int] = []  # jobs found running with their process gone, set on open

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
        from .yaml_lines import parse_yaml

        if not self.config_path.exists():
            return {}
        data = parse_yaml(self.config_path.read_text(encoding="utf-8"), str(self.config_path), StudioError).data or {}
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


def one_row(cursor: duckdb.DuckDBPyConnection) -> tuple[Any, ...]:
    """The row of a query that always has one (an aggregate: count, min, max...)."""
    row = cursor.fetchone()
    if row is None:  # a bug in the query, not something a user can cause
        raise RuntimeError("an aggregate query returned no row")
    return row


@contextmanager
def rolled_back(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """A transaction that never commits: whatever runs inside is rolled back at the end, so code
    that must not write (a command the studio serves for another process) changes nothing."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    finally:
        try:
            con.execute("ROLLBACK")
        except duckdb.Error:
            pass


# -- damage: the WAL before connecting, the file after ------------------------------------------------
# A DuckDB 2.0 WAL starts with a WAL_VERSION entry written without size and checksum, in DuckDB's
# binary serialization: field 100 (0x64 0x00) = entry type 98 ('b', WAL_VERSION), field 101 = the
# version, 102 = the database identifier (16 varints), 103 = the checkpoint iteration, 0xFFFF = end.
# Every later entry is [uint64 size][uint64 checksum][size bytes]. DuckDB checks each checksum itself
# (a mismatch fails the open); a file without this header it ignores silently.
_WAL_MAGIC = b"\x64\x00\x62"
FILE_HEADER_BYTES = 3 * 4096  # DuckDB: the main header and two database headers precede block 0


@dataclass(frozen=True)
class WalInfo:
    """What `studio.duckdb.wal` holds. state: absent, empty, ok (entries DuckDB will replay),
    torn (complete entries, then `tail_bytes` of an entry cut short by a crash: DuckDB drops them,
    nothing acknowledged is lost), corrupt (damaged in the middle: DuckDB replays the entries before
    the damage and silently drops `dropped_entries` complete ones after it), garbage (not a DuckDB
    WAL: DuckDB would skip all of it), unknown (a WAL layout this studio cannot walk)."""

    path: Path
    state: str
    size: int = 0
    entries: int = 0
    tail_bytes: int = 0
    dropped_entries: int = 0  # corrupt: complete entries after the damage that DuckDB would drop

    @property
    def damaged(self) -> bool:
        return self.state in ("garbage", "corrupt")

    def describe(self) -> str:
        name = self.path.name
        if self.state == "absent":
            return f"no {name}: every change is checkpointed into {self.path.name[:-len(WAL_SUFFIX)]}"
        if self.state == "empty":
            return f"{name} is empty"
        if self.state == "ok":
            return f"{name}: {self.entries} entries ({self.size:,} bytes) not yet checkpointed; DuckDB replays them on open"
        if self.state == "torn":
            return (f"{name}: {self.entries} complete entries, then {self.tail_bytes:,} bytes of an entry cut short "
                    f"(a write interrupted by a crash; DuckDB drops it, nothing acknowledged is lost)")
        if self.state == "corrupt":
            return (f"{name} is damaged after its first {self.entries} entries: DuckDB would replay those and "
                    f"silently drop the {self.dropped_entries} complete entries after the damage")
        if self.state == "garbage":
            return (f"{name} ({self.size:,} bytes) is not a DuckDB write-ahead log: the un-checkpointed changes "
                    f"in it cannot be read, and DuckDB would silently drop it")
        return f"{name}: {self.size:,} bytes in a layout this studio does not know; DuckDB replays it on open"


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("varint past the end")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, pos


def inspect_wal(db: Path) -> WalInfo:
    """Read the WAL beside `db` (nothing is changed) and say what DuckDB will make of it."""
    path = Path(str(db) + WAL_SUFFIX)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return WalInfo(path, "absent")
    if not data:
        return WalInfo(path, "empty")
    size = len(data)
    if not data.startswith(_WAL_MAGIC):
        return WalInfo(path, "garbage", size)
    try:
        pos = len(_WAL_MAGIC)
        while True:
            if data[pos:pos + 2] == b"\xff\xff":
                pos += 2
                break
            field = struct.unpack_from("<H", data, pos)[0]
            pos += 2
            if field in (101, 103):
                _, pos = _varint(data, pos)
            elif field == 102:
                count, pos = _varint(data, pos)
                for _ in range(count):
                    _, pos = _varint(data, pos)
            else:
                return WalInfo(path, "unknown", size)
    except (ValueError, struct.error):  # the header itself is cut short: nothing was committed after it
        return WalInfo(path, "torn", size, 0, size)
    entries, end = _walk_entries(data, pos)
    if end == size:
        return WalInfo(path, "ok", size, entries)
    # The chain of entries breaks before the end. A write cut short leaves less than one entry; a
    # damaged size field leaves complete entries after the break, which DuckDB drops just as silently.
    later = _resync(data, end + 1)
    if later:
        return WalInfo(path, "corrupt", size, entries, size - end, later)
    return WalInfo(path, "torn", size, entries, size - end)


def _walk_entries(data: bytes, pos: int) -> tuple[int, int]:
    """(complete entries from pos, offset where the chain stops): where DuckDB's reader stops too,
    at a size that runs past the end."""
    entries = 0
    size = len(data)
    while size - pos >= 16:
        length = struct.unpack_from("<Q", data, pos)[0]
        if length > size - pos - 16:
            break
        pos += 16 + length
        entries += 1
    return entries, pos


def _resync(data: bytes, start: int) -> int:
    """The number of well-formed entries of a chain that starts after `start` and ends exactly at
    the end of the file (0 if none): each entry's body starts with field 100, the entry type.
    Every candidate start is walked at most once (linear in the size of the WAL)."""
    size = len(data)
    seen: set[int] = set()
    pos = start
    while True:
        pos = data.find(b"\x64\x00", pos + 16)
        if pos < 0:
            return 0
        head = pos - 16
        pos = head + 1
        if head < start or head in seen:
            continue
        entries = 0
        while size - head >= 16 and head not in seen:
            seen.add(head)
            length = struct.unpack_from("<Q", data, head)[0]
            if length > size - head - 16 or data[head + 16:head + 18] != b"\x64\x00":
                break
            head += 16 + length
            entries += 1
        if entries and head == size:
            return entries


def recovery_hint(root: Path) -> str:
    """The way back from a damaged workspace, for the end of a one-line message."""
    splits = []
    if (root / "splits").is_dir():
        splits = sorted((d for d in (root / "splits").iterdir()
                         if d.is_dir() and not d.name.startswith(".") and (d / "manifest.json").exists()),
                        key=lambda d: (d / "manifest.json").stat().st_mtime)
    export = (f"restore from your last export (import {splits[-1]}/train.jsonl and val.jsonl into a new workspace)"
              if splits else "restore from your last export (splits/NAME/train.jsonl and val.jsonl) or a backup")
    return f"run `studio check --salvage NEW_DIR -w {root}` to copy what can be read into a new workspace, or {export}"


def probe_file(con: duckdb.DuckDBPyConnection, db: Path) -> str | None:
    """None when the database file holds every block DuckDB's headers say it uses; else what is
    missing. Cheap (the headers and the catalog, no table data). DuckDB 2.0 opens a truncated file
    without complaint and fails later, on the first query that reads a missing block."""
    try:
        name = con.execute("SELECT current_database()").fetchall()[0][0]
        rows = [r for r in con.execute("PRAGMA database_size").fetchall() if r[0] == name]
        if not rows:
            return None
        block, total, used = int(rows[0][2]), int(rows[0][3]), int(rows[0][4])
        size = db.stat().st_size
        if size >= FILE_HEADER_BYTES + total * block:
            return None
        # After a checkpoint DuckDB cuts trailing free blocks off the file while the header still
        # counts them, so a shorter file can be whole: compare with the blocks actually in use.
        need = used
        if size >= FILE_HEADER_BYTES + need * block:
            highest = -1
            for (bid,) in con.execute("SELECT block_id FROM pragma_metadata_info()").fetchall():
                highest = max(highest, int(bid))
            tables = [r[0] for r in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()").fetchall()]
            for t in tables:
                got = con.execute(
                    "SELECT max(greatest(block_id, coalesce(list_max(additional_block_ids), -1))) "
                    "FROM pragma_storage_info(?)", [t]).fetchall()[0][0]
                if got is not None:
                    highest = max(highest, int(got))
            need = highest + 1
        if size >= FILE_HEADER_BYTES + need * block:
            return None
        missing = FILE_HEADER_BYTES + need * block - size
        return f"{db} is cut short: {size:,} bytes, but its blocks need at least {size + missing:,}"
    except duckdb.Error as exc:
        return f"{db} cannot be read: {_one_line(str(exc))}"


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


_DAMAGE_TEXT = ("could not read enough bytes", "not a valid duckdb database", "corrupt", "checksum",
                "wal does not match", "checkpoint iteration does not match", "replaying wal", "serialization error")
_WAL_TEXT = ("replaying wal", "wal file", "wal does not match", "this wal", ".wal\"")


MEMORY_ENV = "STUDIO_DUCKDB_MEMORY"


DEFAULT_MEMORY_SHARE = 0.25  # of the memory DuckDB sees (the machine's, or the cgroup's limit)
_SIZE = re.compile(r"([0-9.]+)\s*(bytes|[KMGT]i?B)", re.I)


def duckdb_config() -> dict[str, str]:
    """DuckDB settings from the environment: `$STUDIO_DUCKDB_MEMORY` (e.g. `4GB`) caps the memory
    DuckDB's buffer manager may use; past it DuckDB spills to `studio.duckdb.tmp/`. Unset: a quarter
    of the memory DuckDB sees (`default_memory_limit`)."""
    value = os.environ.get(MEMORY_ENV, "").strip()
    if not value:
        return {}
    if not re.fullmatch(r"\d+(\.\d+)?\s*(B|[KMGT]i?B)", value, flags=re.I):
        raise StudioError(f"{MEMORY_ENV}={value!r} is not a memory size: set it like 4GB or 512MB, or unset it.")
    return {"memory_limit": value}


def default_memory_limit(con: duckdb.DuckDBPyConnection) -> None:
    """Lower DuckDB's own default memory_limit (80% of the memory it sees, a cgroup's limit
    included) to DEFAULT_MEMORY_SHARE of it: the studio's process holds more than DuckDB's buffers
    (dedup's signatures and pairs, quality's chunks, the worker processes), and DuckDB keeps the
    blocks a scan read cached up to its limit: a 10M-row dedup under an 8 GB cgroup limit was
    killed with DuckDB at half (3.9 GiB) once its hashing pass had read every text
    (benches/results/scale.md). DuckDB reports the setting as text ('6.3 GiB'); one it cannot
    parse is left as it is."""
    m = _SIZE.fullmatch(str(con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]).strip())
    if not m:
        return
    unit = m.group(2).lower()
    scale = {"bytes": 1, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
             "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}.get(unit)
    if scale is None:
        return
    seen = float(m.group(1)) * scale / 0.8
    con.execute(f"SET memory_limit = '{int(seen * DEFAULT_MEMORY_SHARE) // 2**20}MiB'")


def _connect(db: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    config: dict[str, Any] = dict(duckdb_config())
    try:
        con = duckdb.connect(str(db), read_only=read_only, config=config)
        if "memory_limit" not in config:
            default_memory_limit(con)
        return con
    except duckdb.Error as exc:
        msg = str(exc)
        if isinstance(exc, duckdb.IOException) and "lock" in msg.lower():
            holder = _lock_holder(msg)
            raise WorkspaceLocked(
                f"workspace {db.parent} is open in {holder}. DuckDB lets one process use a "
                f"workspace at a time: close that studio or wait for that command to finish, "
                f"or use another workspace with --workspace DIR."
            ) from None
        low = msg.lower()
        if any(t in low for t in _DAMAGE_TEXT):
            if any(t in low for t in _WAL_TEXT):
                raise WorkspaceDamaged(
                    f"{db}{WAL_SUFFIX} (the changes since the last checkpoint) cannot be replayed: {_one_line(msg)}. "
                    f"Run `studio check --repair -w {db.parent}` to move it aside and open the workspace as of its "
                    f"last checkpoint, or {recovery_hint(db.parent)}."
                ) from None
            raise WorkspaceDamaged(f"{db} is damaged: {_one_line(msg)}. To recover, {recovery_hint(db.parent)}.") from None
        if isinstance(exc, duckdb.IOException):
            raise StudioError(f"cannot open {db}: {msg}") from None
        raise StudioError(f"{db} is not a usable workspace database: {exc}") from None


# -- jobs whose process is gone -----------------------------------------------------------------------
_LIVE_JOBS: set[int] = set()
_LIVE_LOCK = threading.Lock()


@contextmanager
def live_job(job_id: int) -> Iterator[None]:
    """Mark a job of the `jobs` table as running in this process while the block runs (so another
    `open_workspace` in this process leaves it `running`)."""
    with _LIVE_LOCK:
        _LIVE_JOBS.add(int(job_id))
    try:
        yield
    finally:
        with _LIVE_LOCK:
            _LIVE_JOBS.discard(int(job_id))


def register_live_job(job_id: int) -> None:
    """`live_job` for code that cannot use a block; pair with `unregister_live_job`."""
    with _LIVE_LOCK:
        _LIVE_JOBS.add(int(job_id))


def unregister_live_job(job_id: int) -> None:
    with _LIVE_LOCK:
        _LIVE_JOBS.discard(int(job_id))


def pid_alive(pid: int | None) -> bool:
    """Whether a process with this id exists on this machine (a zombie counts as alive)."""
    if pid is None or int(pid) <= 0:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, owned by someone else
        return True
    return True


# A running job is dead when its process is not this one (DuckDB's lock: no other process can hold
# the workspace while this one does), or, for an augment job (one this process would have
# registered), when this process does not run it. Other kinds of this process are left alone.
_DEAD_JOBS_WHERE = """state = 'running' AND (pid IS NULL OR pid <> ?
    OR (id IN (SELECT job_id FROM augment_jobs) AND id NOT IN (SELECT unnest(?::BIGINT[]))))"""


def dead_jobs(con: duckdb.DuckDBPyConnection) -> list[tuple[int, str, int | None]]:
    """(id, kind, pid) of the jobs still marked running whose process no longer runs them."""
    present = con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
                          "AND schema_name = 'main' AND table_name IN ('jobs', 'augment_jobs')").fetchall()[0][0]
    if present != 2:  # a workspace not yet migrated, opened read-only
        return []
    with _LIVE_LOCK:
        live = sorted(_LIVE_JOBS)
    rows = con.execute(f"SELECT id, kind, pid FROM jobs WHERE {_DEAD_JOBS_WHERE} ORDER BY id",
                       [os.getpid(), live]).fetchall()
    return [(int(i), str(k), None if p is None else int(p)) for i, k, p in rows]


def interrupt_dead_jobs(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Set `interrupted` on the jobs still marked running whose process is gone; their ids. An
    interrupted augment job continues with `studio augment resume JOB`."""
    dead = dead_jobs(con)
    if not dead:
        return []
    ids = [d[0] for d in dead]
    con.execute(
        """UPDATE jobs SET state = 'interrupted', finished_at = coalesce(finished_at, current_timestamp),
               message = 'interrupted: process ' || coalesce(pid::TEXT, '?') || ' ended before the job finished'
                         || coalesce('; ' || message, '')
           WHERE state = 'running' AND id IN (SELECT unnest(?::BIGINT[]))""", [ids])
    return ids


def _skipped_on_data(con: duckdb.DuckDBPyConnection, m: Migration) -> bool:
    """Whether migration `m` is recorded without running because it only changes how a table is
    stored and that table holds rows: a first line `-- only while empty: TABLE` says so. Such a
    migration rewrites every row (DuckDB cannot change a column's compression in place), which at
    10M samples ran out of DuckDB's memory limit (1.9 GiB under an 8 GiB cap) when a workspace was
    opened; the old layout works the same, a little slower."""
    first = m.sql.split("\n", 1)[0]
    found = re.fullmatch(r"-- only while empty: (\w+)\s*", first)
    if found is None:
        return False
    return bool(con.execute(f"SELECT EXISTS (SELECT 1 FROM {found.group(1)})").fetchall()[0][0])


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
            if not _skipped_on_data(con, m):
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
    wal = inspect_wal(db)
    if wal.damaged:
        raise WorkspaceDamaged(
            f"{wal.describe()}. Run `studio check --repair -w {root}` to move it aside (it is kept, renamed) and "
            f"open the workspace as of its last checkpoint, or {recovery_hint(root)}.")
    con = _connect(db, read_only)
    damage = probe_file(con, db)
    if damage:
        try:
            con.close()
        except duckdb.Error:
            pass
        raise WorkspaceDamaged(f"{damage}. To recover, {recovery_hint(root)}.")
    ws = Workspace(root, con, read_only=read_only)
    if not read_only:
        try:
            _migrate(con, db)
            ws.interrupted_jobs = interrupt_dead_jobs(con)
        except BaseException:
            ws.close()
            raise
        (root / "splits").mkdir(exist_ok=True)
        (root / "runs").mkdir(exist_ok=True)
    return ws
