"""A damaged workspace is refused in one line that names the way back, `studio check` finds what is
wrong (and with --repair fixes what is safe), `--salvage` copies what can be read, and what killed
exports and augment jobs leave behind does not stay forever. Real DuckDB files, built with the CLI."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys

import duckdb
import pytest

from curation.errors import StudioError
from curation.workspace import open_workspace
from studio.cli import main
from tests.conftest import SAMPLE_DATA

FILES = ["alpaca_mixed.json", "sharegpt_chat.jsonl", "raw_text.jsonl"]


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """One workspace imported with the CLI from sample_data/, copied by each test."""
    ws = tmp_path_factory.mktemp("template") / "ws"
    assert main(["import", *[str(SAMPLE_DATA / f) for f in FILES], "-w", str(ws)]) == 0
    return ws


@pytest.fixture
def ws_dir(template, tmp_path):
    dest = tmp_path / "ws"
    shutil.copytree(template, dest)
    return dest


def run(capsys, *argv):
    capsys.readouterr()
    rc = main(list(argv))
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def rows(db, table):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return sorted(con.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
    finally:
        con.close()


# -- a damaged file ---------------------------------------------------------------------------------------
def test_a_truncated_database_is_refused_in_one_line_that_names_the_recovery(ws_dir, capsys):
    db = ws_dir / "studio.duckdb"
    os.truncate(db, db.stat().st_size // 2)
    before = sha(db)
    rc, out, err = run(capsys, "stats", "-w", str(ws_dir))
    assert rc == 2 and out == ""
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert "studio.duckdb is cut short" in err
    assert f"studio check --salvage NEW_DIR -w {ws_dir}" in err and "restore from your last export" in err
    assert sha(db) == before  # refusing wrote nothing
    with pytest.raises(StudioError, match="cut short"):
        open_workspace(ws_dir, read_only=True)

    rc, out, _ = run(capsys, "check", "-w", str(ws_dir))
    assert rc == 1
    assert "PROBLEM  file    " in out and "cannot be read in full" in out
    assert sha(db) == before


def test_a_garbage_wal_is_refused_and_repair_moves_it_aside(ws_dir, capsys):
    wal = ws_dir / "studio.duckdb.wal"
    junk = os.urandom(3000)
    wal.write_bytes(junk)
    rc, out, err = run(capsys, "stats", "-w", str(ws_dir))
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "studio.duckdb.wal (3,000 bytes) is not a DuckDB write-ahead log" in err
    assert "un-checkpointed changes in it cannot be read" in err and "studio check --repair" in err
    assert wal.read_bytes() == junk  # never dropped silently

    rc, out, _ = run(capsys, "check", "-w", str(ws_dir))
    assert rc == 1 and "PROBLEM  wal" in out
    assert wal.read_bytes() == junk

    rc, out, _ = run(capsys, "check", "--repair", "-w", str(ws_dir))
    assert rc == 0, out
    assert "fixed    wal" in out and out.rstrip().endswith("clean: repaired 1 thing")
    kept = list(ws_dir.glob("studio.duckdb.wal.damaged-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == junk and not wal.exists()
    rc, _, err = run(capsys, "stats", "-w", str(ws_dir))
    assert rc == 0, err


def _wal_with_commits(ws_dir, n: int) -> None:
    """Leave n committed, un-checkpointed inserts into `operations` in studio.duckdb.wal."""
    con = duckdb.connect(str(ws_dir / "studio.duckdb"))
    con.execute("PRAGMA disable_checkpoint_on_shutdown")
    con.execute("SET wal_autocheckpoint = '1GB'")
    for i in range(n):
        con.execute("INSERT INTO operations (id, kind) VALUES (?, 'test')", [1000 + i])
    con.close()


def _entry_offsets(data: bytes) -> list[int]:
    pos = data.index(b"\xff\xff", 3) + 2  # end of the WAL_VERSION header
    offsets = []
    while pos + 16 <= len(data):
        offsets.append(pos)
        pos += 16 + struct.unpack_from("<Q", data, pos)[0]
    assert pos == len(data)
    return offsets


def test_a_wal_damaged_in_the_middle_is_detected_and_repair_keeps_what_duckdb_can_replay(ws_dir, capsys):
    _wal_with_commits(ws_dir, 40)
    wal = ws_dir / "studio.duckdb.wal"
    data = bytearray(wal.read_bytes())
    offsets = _entry_offsets(bytes(data))
    cut = offsets[len(offsets) // 2]
    data[cut:cut + 8] = struct.pack("<Q", 1 << 40)  # one size field ruined: DuckDB stops reading there
    wal.write_bytes(bytes(data))
    damaged = bytes(data)

    with pytest.raises(StudioError, match="silently drop the .* complete entries after the damage"):
        open_workspace(ws_dir)
    assert wal.read_bytes() == damaged

    rc, out, _ = run(capsys, "check", "--repair", "-w", str(ws_dir))
    assert rc == 0, out
    kept = list(ws_dir.glob("studio.duckdb.wal.damaged-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == damaged
    with open_workspace(ws_dir) as ws:
        replayed = ws.con.execute("SELECT count(*) FROM operations WHERE kind = 'test'").fetchall()[0][0]
    assert 0 < replayed < 40


def test_a_wal_duckdb_refuses_to_replay_is_one_line_and_repair_moves_it(ws_dir, capsys):
    _wal_with_commits(ws_dir, 5)
    wal = ws_dir / "studio.duckdb.wal"
    data = bytearray(wal.read_bytes())
    data[-3] ^= 0xFF  # a bit flip in the last entry: DuckDB's checksum catches it
    wal.write_bytes(bytes(data))
    rc, _, err = run(capsys, "stats", "-w", str(ws_dir))
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "studio.duckdb.wal (the changes since the last checkpoint) cannot be replayed" in err
    assert "studio check --repair" in err
    rc, out, _ = run(capsys, "check", "--repair", "-w", str(ws_dir))
    assert rc == 0 and "fixed    open" in out
    assert [p.read_bytes() for p in ws_dir.glob("studio.duckdb.wal.damaged-*")] == [bytes(data)]
    rc, _, _ = run(capsys, "stats", "-w", str(ws_dir))
    assert rc == 0


# -- check and repair ------------------------------------------------------------------------------------
def test_check_of_a_clean_workspace_says_so(ws_dir, capsys):
    rc, out, _ = run(capsys, "check", "-w", str(ws_dir))
    assert rc == 0 and out.rstrip().endswith("clean")
    assert "schema version" in out and "all 21 tables read in full" in out
    rc, out, _ = run(capsys, "check", "--json", "-w", str(ws_dir))
    report = json.loads(out)
    assert rc == 0 and report["clean"] is True
    assert {f["status"] for f in report["findings"]} == {"ok"}


def test_every_table_with_a_sample_id_is_classed_as_orphan_or_history(ws_dir):
    from curation.check import HISTORY_TABLES, ORPHAN_TABLES

    with open_workspace(ws_dir) as ws:
        with_sample_id = {r[0] for r in ws.con.execute(
            "SELECT table_name FROM duckdb_columns() WHERE column_name = 'sample_id'").fetchall()}
    assert with_sample_id == set(ORPHAN_TABLES) | set(HISTORY_TABLES)


def test_check_finds_orphan_rows_and_repair_deletes_only_them(ws_dir, capsys):
    with open_workspace(ws_dir) as ws:
        sid = ws.con.execute("SELECT min(id) FROM samples").fetchall()[0][0]
        c = ws.con
        c.execute("INSERT INTO quality_values (sample_id, rule_id, value) VALUES (?, 'len', 1), (999991, 'len', 2), "
                  "(999992, 'len', 3)", [sid])
        c.execute("INSERT INTO sample_versions (sample_id, version, text) VALUES (999991, 1, 'old')")
        c.execute("INSERT INTO augment_outputs (request_key, sample_id) VALUES ('k', 999993)")
        c.execute("INSERT INTO op_samples (op_id, sample_id) VALUES (1, 999994)")  # history: stays
    rc, out, _ = run(capsys, "check", "-w", str(ws_dir))
    assert rc == 1
    line = next(x for x in out.splitlines() if x.startswith("PROBLEM  orphans"))
    assert "2 in quality_values" in line and "1 in sample_versions" in line and "1 in augment_outputs" in line
    rc, out, _ = run(capsys, "check", "--json", "-w", str(ws_dir))
    found = [f for f in json.loads(out)["findings"] if f["check"] == "orphans"][0]
    assert found["details"]["tables"] == {"sample_versions": 1, "quality_values": 2, "augment_outputs": 1}

    rc, out, _ = run(capsys, "check", "--repair", "-w", str(ws_dir))
    assert rc == 0, out
    assert "fixed    orphans deleted rows of samples that no longer exist: 1 from sample_versions, 2 from " \
           "quality_values, 1 from augment_outputs" in out
    db = ws_dir / "studio.duckdb"
    assert rows(db, "quality_values") == [(sid, "len", 1.0, None)]
    assert rows(db, "sample_versions") == [] and rows(db, "augment_outputs") == []
    assert (1, 999994, None, None, None, None) in rows(db, "op_samples")
    rc, out, _ = run(capsys, "check", "-w", str(ws_dir))
    assert rc == 0


def test_leftovers_of_killed_exports_are_found_and_removed(ws_dir, capsys):
    splits = ws_dir / "splits"
    dead = dead_pid()
    tmp = splits / f".v1.tmp-{dead}"
    tmp.mkdir(parents=True)
    (tmp / "train.jsonl").write_text('{"messages": []}\n' * 1000)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        busy = splits / f".v2.tmp-{sleeper.pid}"
        busy.mkdir()
        old = splits / f".v3.old-{dead}"  # killed between its two renames: the only copy of split v3
        old.mkdir()
        (old / "manifest.json").write_text("{}")
        rc, out, _ = run(capsys, "check", "-w", str(ws_dir))
        assert rc == 1
        assert f"PROBLEM  temp    splits/.v1.tmp-{dead}: a split a killed export (process {dead}) left half-written" in out
        assert f"note     temp    splits/.v2.tmp-{sleeper.pid}: process {sleeper.pid} still runs, left alone" in out
        assert "(`studio check --repair` puts it back)" in out
        rc, out, _ = run(capsys, "check", "--repair", "-w", str(ws_dir))
        assert rc == 0, out
        assert not tmp.exists() and busy.exists() and not old.exists()
        assert (splits / "v3" / "manifest.json").read_text() == "{}"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_the_next_export_removes_temp_folders_of_dead_exports(ws_dir, capsys):
    dead = dead_pid()
    tmp = ws_dir / "splits" / f".old-name.tmp-{dead}"
    tmp.mkdir(parents=True)
    (tmp / "train.jsonl").write_text("x\n")
    mine = ws_dir / "splits" / f".other.tmp-{os.getpid()}"  # a live process's (this one): kept
    mine.mkdir()
    rc, _, err = run(capsys, "export", "v1", "--include", "approved+pending", "-w", str(ws_dir))
    assert rc == 0, err
    assert not tmp.exists() and mine.exists()
    assert (ws_dir / "splits" / "v1" / "manifest.json").exists()


def _running_job(ws, pid, kind="augment:answers", augment=True) -> int:
    job_id = ws.con.execute("SELECT nextval('job_id_seq')").fetchall()[0][0]
    ws.con.execute("INSERT INTO jobs (id, kind, state, total, pid) VALUES (?, ?, 'running', 10, ?)", [job_id, kind, pid])
    if augment:
        ws.con.execute("INSERT INTO augment_jobs (job_id, operation, spec) VALUES (?, 'answers', '{}')", [job_id])
    return int(job_id)


def _states(ws_dir) -> dict[int, str]:
    db = ws_dir / "studio.duckdb"
    return {r[0]: r[2] for r in rows(db, "jobs")}


def test_a_killed_augment_job_shows_as_interrupted_and_stays_resumable(ws_dir, capsys):
    from curation.augment import jobs
    from curation.workspace import live_job

    dead = dead_pid()
    with open_workspace(ws_dir) as ws:
        killed = _running_job(ws, dead)
        killed_here = _running_job(ws, os.getpid())           # an earlier process had this pid: not running here
        live = _running_job(ws, os.getpid())
        other_kind = _running_job(ws, os.getpid(), kind="eval:judge", augment=False)
        with live_job(live):
            with open_workspace(ws_dir) as again:              # opened again while the job runs here
                assert sorted(again.interrupted_jobs) == [killed, killed_here]
            states = dict(ws.con.execute("SELECT id, state FROM jobs").fetchall())
            assert states[live] == "running"
    states = _states(ws_dir)
    assert states[killed] == states[killed_here] == "interrupted"
    assert states[other_kind] == "running"
    with open_workspace(ws_dir) as ws:
        message = ws.con.execute("SELECT message FROM jobs WHERE id = ?", [killed]).fetchall()[0][0]
        assert message == f"interrupted: process {dead} ended before the job finished"
        listed = {j["id"]: j["state"] for j in jobs.list_jobs(ws)}
        assert listed[killed] == "interrupted" and listed[live] == "interrupted"  # live no more: its block ended
        assert jobs.last_unfinished(ws) == live  # every state but done resumes


def test_listing_jobs_read_only_shows_a_dead_running_job_as_interrupted(ws_dir):
    from curation.augment import jobs

    con = duckdb.connect(str(ws_dir / "studio.duckdb"))
    con.execute("INSERT INTO jobs (id, kind, state, pid) VALUES (7, 'augment:rewrite', 'running', ?)", [dead_pid()])
    con.execute("INSERT INTO augment_jobs (job_id, operation, spec) VALUES (7, 'rewrite', '{}')")
    con.close()
    with open_workspace(ws_dir, read_only=True) as ws:
        assert [(j["id"], j["state"]) for j in jobs.list_jobs(ws)] == [(7, "interrupted")]
    assert _states(ws_dir)[7] == "running"  # read-only: nothing written


def test_check_reports_a_dead_running_job_and_repair_marks_it_interrupted(ws_dir, capsys):
    con = duckdb.connect(str(ws_dir / "studio.duckdb"))
    pid = dead_pid()
    con.execute("INSERT INTO jobs (id, kind, state, pid) VALUES (3, 'augment:answers', 'running', ?)", [pid])
    con.execute("INSERT INTO augment_jobs (job_id, operation, spec) VALUES (3, 'answers', '{}')")
    con.close()
    rc, out, _ = run(capsys, "check", "-w", str(ws_dir))
    assert rc == 1
    assert f"PROBLEM  jobs    job 3 (augment:answers) is marked running, but its process {pid} no longer runs it" in out
    assert _states(ws_dir)[3] == "running"  # check alone changes nothing
    rc, out, _ = run(capsys, "check", "--repair", "-w", str(ws_dir))
    assert rc == 0, out
    assert "fixed    jobs    job 3 (augment:answers) marked interrupted" in out and "studio augment resume 3" in out
    assert _states(ws_dir)[3] == "interrupted"


# -- salvage ---------------------------------------------------------------------------------------------
def _digests(db) -> dict[str, list]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        names = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
        return {t: sorted(map(repr, con.execute(f'SELECT * FROM "{t}"').fetchall())) for t in names
                if t != "schema_migrations"}
    finally:
        con.close()


def test_salvage_of_a_whole_workspace_copies_every_row(ws_dir, tmp_path, capsys):
    dest = tmp_path / "rescued"
    rc, out, _ = run(capsys, "check", "--salvage", str(dest), "-w", str(ws_dir))
    assert rc == 0, out
    assert "ok       samples: 385 of 385 rows copied" in out
    assert _digests(dest / "studio.duckdb") == _digests(ws_dir / "studio.duckdb")
    # the new workspace goes on where the old one was: new ids do not collide
    more = tmp_path / "more.jsonl"
    more.write_text('{"instruction": "new one", "output": "fresh"}\n')
    rc, _, err = run(capsys, "import", str(more), "-w", str(dest))
    assert rc == 0, err
    with open_workspace(dest) as ws:
        assert ws.con.execute("SELECT max(id) FROM samples").fetchall()[0][0] == 386
        assert ws.con.execute("SELECT max(id) FROM operations").fetchall()[0][0] == 4
    rc, _, err = run(capsys, "check", "--salvage", str(dest), "-w", str(ws_dir))
    assert rc == 2 and "already holds a workspace" in err


def test_salvage_of_a_truncated_workspace_copies_the_readable_tables(ws_dir, tmp_path, capsys):
    src = ws_dir / "studio.duckdb"
    os.truncate(src, src.stat().st_size // 2)
    before = sha(src)
    dest = tmp_path / "rescued"
    rc, out, _ = run(capsys, "check", "--salvage", str(dest), "--json", "-w", str(ws_dir))
    result = json.loads(out)
    assert rc == 1 and result["complete"] is False
    by_table = {t["table"]: t for t in result["tables"]}
    assert by_table["samples"]["rows"] == 385 and by_table["samples"]["unreadable"] > 0
    assert all(t["copied"] + t["unreadable"] == t["rows"] for t in result["tables"])
    copied = {t for t, r in by_table.items() if r["copied"] and not r["unreadable"]}
    assert {"operations", "imports"} <= copied
    assert sha(src) == before  # the damaged file was only read
    with open_workspace(dest) as ws:
        assert ws.con.execute("SELECT count(*) FROM imports").fetchall()[0][0] == 3
        assert ws.count() == by_table["samples"]["copied"]
    rc, out, _ = run(capsys, "check", "--salvage", str(tmp_path / "again"), "-w", str(ws_dir))
    assert "PROBLEM  samples: " in out and "unreadable" in out


HOLD = """
import sys
from curation.workspace import open_workspace
ws = open_workspace(sys.argv[1])
print("ready", flush=True)
sys.stdin.read()
"""


def test_check_repair_touches_nothing_while_another_process_holds_the_workspace(ws_dir, capsys):
    from tests.conftest import ROOT

    dead = dead_pid()
    tmp = ws_dir / "splits" / f".v1.tmp-{dead}"
    tmp.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(ws_dir)], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        rc, out, err = run(capsys, "check", "--repair", "-w", str(ws_dir))
        assert rc == 2 and f"process {holder.pid}" in err and "Traceback" not in err
        assert tmp.exists()
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
