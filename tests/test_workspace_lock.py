"""One process owns a workspace (DuckDB locks the file): a second `studio` command says who holds
it and what to do, without a traceback. And workspaces written by older studios migrate, while a
newer one is refused plainly."""
from __future__ import annotations

import subprocess
import sys

import duckdb
import pytest

from curation import browse
from curation.errors import SchemaTooNew
from curation.workspace import SCHEMA_VERSION, migrations, open_workspace
from tests.conftest import ROOT

HOLD = """
import sys
from curation.workspace import open_workspace
ws = open_workspace(sys.argv[1])
print("ready", flush=True)
sys.stdin.read()
"""


def test_second_command_on_a_held_workspace_names_the_holder(ws_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(ws_path)], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        proc = subprocess.run([sys.executable, "-m", "studio.cli", "stats", "--workspace", str(ws_path)],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2
        assert f"process {holder.pid}" in proc.stderr
        assert "close that studio or wait for that command to finish" in proc.stderr
        assert "Traceback" not in proc.stderr and proc.stdout == ""
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    # once the holder is gone, the same command works
    proc = subprocess.run([sys.executable, "-m", "studio.cli", "stats", "--json", "--workspace", str(ws_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def _db_at_version_1(ws_path):
    ws_path.mkdir()
    con = duckdb.connect(str(ws_path / "studio.duckdb"))
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT, applied_at TIMESTAMP DEFAULT current_timestamp)")
    first = migrations()[0]
    con.execute(first.sql)
    con.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [first.version, first.name])
    con.execute("INSERT INTO samples (id, kind, messages, instruction, answer, status, content_hash) "
                "VALUES (1, 'chat', '[]', 'Old Question', 'old answer', 'approved', 'h')")
    con.close()


def test_old_workspace_migrates_and_keeps_its_samples(ws_path):
    _db_at_version_1(ws_path)
    with open_workspace(ws_path) as ws:
        assert ws.schema_version() == SCHEMA_VERSION
        assert browse.ids(ws.con, browse.Filter(status="approved")) == [1]
        assert browse.ids(ws.con, browse.Filter(search="old question")) == [1]  # search_text filled by 0005
        applied = [r[0] for r in ws.con.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()]
        assert applied == [m.version for m in migrations()]
        # 0008 and 0010 change only how columns are stored: recorded, not run, on a table with rows
        # (a rewrite of every row ran out of memory at 10M samples); the values are as they were
        assert ws.con.execute("SELECT messages, search_text, instruction, answer FROM samples").fetchall() == [
            ("[]", "old question\nold answer", "Old Question", "old answer")]
        assert "USING COMPRESSION" not in _samples_ddl(ws)


def _samples_ddl(ws) -> str:
    return ws.con.execute("SELECT sql FROM duckdb_tables() WHERE table_name = 'samples'").fetchall()[0][0]


def test_a_new_workspace_stores_the_derived_text_uncompressed(ws_path):
    with open_workspace(ws_path) as ws:
        ddl = _samples_ddl(ws)
        assert "messages JSON USING COMPRESSION Uncompressed" in ddl
        assert "search_text VARCHAR USING COMPRESSION Uncompressed" in ddl
        assert "instruction VARCHAR USING COMPRESSION Uncompressed" in ddl  # 0010
        assert "answer VARCHAR USING COMPRESSION Uncompressed" in ddl


def test_an_old_empty_workspace_gets_the_new_layout(ws_path):
    ws_path.mkdir()
    con = duckdb.connect(str(ws_path / "studio.duckdb"))
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT, "
                "applied_at TIMESTAMP DEFAULT current_timestamp)")
    for m in migrations()[:7]:
        con.execute(m.sql)
        con.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [m.version, m.name])
    con.close()
    with open_workspace(ws_path) as ws:
        assert ws.schema_version() == SCHEMA_VERSION
        assert "messages JSON USING COMPRESSION Uncompressed" in _samples_ddl(ws)
        assert "answer VARCHAR USING COMPRESSION Uncompressed" in _samples_ddl(ws)


def test_newer_workspace_is_refused_clearly(ws_path):
    with open_workspace(ws_path) as ws:
        ws.con.execute("INSERT INTO schema_migrations (version, name) VALUES (9999, 'future')")
    with pytest.raises(SchemaTooNew, match="schema version 9999, newer than this studio knows"):
        open_workspace(ws_path)
    proc = subprocess.run([sys.executable, "-m", "studio.cli", "stats", "--workspace", str(ws_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Upgrade the studio" in proc.stderr and "Traceback" not in proc.stderr


def _signatures_ddl(ws) -> str:
    return ws.con.execute("SELECT sql FROM duckdb_tables() WHERE table_name = 'minhash_signatures'").fetchall()[0][0]


def test_signatures_are_stored_uncompressed_in_a_new_workspace_and_kept_in_an_old_one(ws_path, tmp_path):
    with open_workspace(ws_path) as ws:
        assert "signature BLOB USING COMPRESSION Uncompressed NOT NULL" in _signatures_ddl(ws)
    # a workspace at 0008 that holds signatures keeps them, and its layout (0009 recorded, not run)
    old = tmp_path / "old"
    old.mkdir()
    con = duckdb.connect(str(old / "studio.duckdb"))
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT, applied_at TIMESTAMP DEFAULT current_timestamp)")
    for m in migrations():
        if m.version <= 8:
            con.execute(m.sql)
            con.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [m.version, m.name])
    con.execute("INSERT INTO minhash_signatures VALUES (1, 'k', 'h', 7, 3, '\\x00\\x01'::BLOB)")
    con.close()
    with open_workspace(old) as ws:
        assert ws.schema_version() == SCHEMA_VERSION
        assert ws.con.execute("SELECT sample_id, exact_key FROM minhash_signatures").fetchall() == [(1, 7)]
        assert "USING COMPRESSION" not in _signatures_ddl(ws)
