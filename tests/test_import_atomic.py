"""An import is one transaction: `kill -9` in the middle leaves the workspace exactly as before,
and the same import then succeeds."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from curation.importers import import_paths
from curation.workspace import open_workspace
from tests.conftest import ROOT


def state(ws):
    return {t: ws.con.execute(f"SELECT * FROM {t} ORDER BY id").fetchall() for t in ("imports", "operations")} | {
        "samples": ws.con.execute("SELECT count(*), max(id) FROM samples").fetchall()}


def big_file(path, rows: int, python_path: bool) -> None:
    tags = ', "tags": ["t"]' if python_path else ""
    with open(path, "w", encoding="utf-8") as f:
        for i in range(rows):
            f.write(f'{{"instruction": "question number {i} 关于数据", "input": "", "output": "answer {i} with some words", "id": "r{i}"{tags}}}\n')


@pytest.mark.slow
@pytest.mark.parametrize("python_path,rows", [(False, 600_000), (True, 150_000)], ids=["fast-path", "python-path"])
def test_kill_9_mid_import_leaves_workspace_unchanged(tmp_path, python_path, rows):
    ws_dir = tmp_path / "ws"
    small = tmp_path / "small.jsonl"
    small.write_text('{"instruction": "before", "output": "kept"}\n')
    with open_workspace(ws_dir) as ws:
        import_paths(ws, [small])
        before = state(ws)
    src = tmp_path / "big.jsonl"
    big_file(src, rows, python_path)
    proc = subprocess.Popen([sys.executable, "-m", "studio.cli", "import", str(src), "-w", str(ws_dir)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first_line = proc.stderr.readline()  # progress starts as the import begins its transaction
    assert first_line.startswith("import:"), first_line
    time.sleep(1.0)
    assert proc.poll() is None, "import finished before it could be killed; make the file bigger"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with open_workspace(ws_dir) as ws:
        assert state(ws) == before
        report = import_paths(ws, [src])
        assert report.rows_imported == rows
        assert ws.count() == rows + 1
        assert ws.con.execute("SELECT count(*) FROM imports").fetchone()[0] == 2
