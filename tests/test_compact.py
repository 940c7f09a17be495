"""`studio compact` gives back the space a DuckDB file keeps after deletes (here: a big import
removed after a later one), keeps every row, sequence and the schema, and refuses cleanly when it
cannot run. Real DuckDB files, built with the CLI."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections import namedtuple

import duckdb
import pytest

from curation.workspace import open_workspace
from studio.cli import main
from tests.conftest import ROOT, SAMPLE_DATA
from tests.test_check import run  # the CLI in-process: (rc, stdout, stderr)


@pytest.fixture(scope="module")
def bloated(tmp_path_factory):
    """A big import (20k rows), then sample_data/, then the big import's rows deleted (what undoing
    it does): the freed blocks sit before the later data, so DuckDB cannot cut them off the file."""
    base = tmp_path_factory.mktemp("bloated")
    big = base / "big.jsonl"
    with big.open("w", encoding="utf-8") as f:
        for i in range(20_000):
            f.write(json.dumps({"instruction": f"question {i} " + "word " * 60, "output": f"answer {i} " + "text " * 120}) + "\n")
    ws = base / "ws"
    assert main(["import", str(big), "-w", str(ws)]) == 0
    assert main(["import", str(SAMPLE_DATA / "alpaca_mixed.json"), str(SAMPLE_DATA / "sharegpt_chat.jsonl"), "-w", str(ws)]) == 0
    with open_workspace(ws) as w:
        w.con.execute("DELETE FROM samples WHERE import_id = 1")
        w.con.execute("DELETE FROM imports WHERE id = 1")
        w.con.execute("CHECKPOINT")
    return ws


@pytest.fixture
def ws_dir(bloated, tmp_path):
    dest = tmp_path / "ws"
    shutil.copytree(bloated, dest)
    return dest


Snapshot = namedtuple("Snapshot", "tables sequences types")


def snapshot(db) -> Snapshot:
    """Rows and a content hash per table (computed here, independently of curation.check), the
    sequences' values and the user types."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        names = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()]
        tables = {}
        for t in names:
            got = sorted(map(repr, con.execute(f'SELECT * FROM "{t}"').fetchall()))
            tables[t] = (len(got), hashlib.sha256("\n".join(got).encode()).hexdigest())
        seqs = con.execute("SELECT sequence_name, last_value FROM duckdb_sequences() ORDER BY 1").fetchall()
        types = con.execute("SELECT type_name FROM duckdb_types() WHERE NOT internal ORDER BY 1").fetchall()
        return Snapshot(tables, seqs, types)
    finally:
        con.close()


def test_compact_shrinks_a_bloated_workspace_and_keeps_every_row(ws_dir, capsys):
    db = ws_dir / "studio.duckdb"
    before_size = db.stat().st_size
    before = snapshot(db)
    assert before.tables["samples"][0] == 355
    rc, out, err = run(capsys, "compact", "-w", str(ws_dir))
    assert rc == 0, err
    after_size = db.stat().st_size
    assert after_size < before_size / 2, (before_size, after_size)
    assert out.startswith(f"compacted {ws_dir}/studio.duckdb: {before_size / 1e6:,.1f} MB -> {after_size / 1e6:,.1f} MB")
    assert snapshot(db) == before
    assert sorted(p.name for p in ws_dir.iterdir()) == ["runs", "splits", "studio.duckdb"]  # no backup, no temp file
    # the workspace goes on: migrations known, new ids after the old ones, the ENUM still enforced
    more = ws_dir / "more.jsonl"
    more.write_text('{"instruction": "after compaction", "output": "still fine"}\n')
    rc, _, err = run(capsys, "import", str(more), "-w", str(ws_dir))
    assert rc == 0, err
    with open_workspace(ws_dir) as ws:
        assert ws.con.execute("SELECT max(id) FROM samples").fetchall()[0][0] == 20_000 + 355 + 1
        with pytest.raises(duckdb.ConversionException):
            ws.con.execute("UPDATE samples SET status = 'bogus' WHERE id = 20001")
    rc, out, _ = run(capsys, "check", "-w", str(ws_dir))
    assert rc == 0, out


def test_compact_keeps_changes_still_in_the_wal(ws_dir, capsys):
    con = duckdb.connect(str(ws_dir / "studio.duckdb"))
    con.execute("PRAGMA disable_checkpoint_on_shutdown")
    con.execute("UPDATE samples SET status = 'approved' WHERE id % 3 = 0")
    con.close()
    assert (ws_dir / "studio.duckdb.wal").exists()
    rc, out, err = run(capsys, "compact", "--json", "-w", str(ws_dir))
    assert rc == 0, err
    result = json.loads(out)
    assert result["after_bytes"] < result["before_bytes"] and result["tables"]["samples"] == 355
    assert not (ws_dir / "studio.duckdb.wal").exists()
    with open_workspace(ws_dir) as ws:
        assert ws.count("status = 'approved'") == ws.count("id % 3 = 0") > 0


def test_compact_keep_backup_leaves_the_old_file(ws_dir, capsys):
    db = ws_dir / "studio.duckdb"
    before = snapshot(db)
    rc, out, err = run(capsys, "compact", "--keep-backup", "-w", str(ws_dir))
    assert rc == 0, err
    bak = ws_dir / "studio.duckdb.bak"
    assert f"the old file is kept as {bak}" in out
    assert bak.stat().st_size > db.stat().st_size
    assert snapshot(bak) == before == snapshot(db)
    rc, _, err = run(capsys, "compact", "-w", str(ws_dir))  # a second run must not overwrite the backup
    assert rc == 2 and "studio.duckdb.bak exists" in err and err.count("\n") == 1


def test_compact_refuses_cleanly_without_enough_free_space(ws_dir, capsys, monkeypatch):
    db = ws_dir / "studio.duckdb"
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    monkeypatch.setattr("curation.check.shutil.disk_usage", lambda p: shutil._ntuple_diskusage(10**12, 10**12 - 4096, 4096))
    rc, out, err = run(capsys, "compact", "-w", str(ws_dir))
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "not enough free space to compact" in err and "4.0 KB is free" in err and "nothing was changed" in err
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in ws_dir.iterdir()) == ["runs", "splits", "studio.duckdb"]


HOLD = """
import sys
from curation.workspace import open_workspace
ws = open_workspace(sys.argv[1])
print("ready", flush=True)
sys.stdin.read()
"""


def test_compact_needs_the_workspace(ws_dir, capsys):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(ws_dir)], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        size = (ws_dir / "studio.duckdb").stat().st_size
        rc, out, err = run(capsys, "compact", "-w", str(ws_dir))
        assert rc == 2 and f"process {holder.pid}" in err and "Traceback" not in err
        assert (ws_dir / "studio.duckdb").stat().st_size == size
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
