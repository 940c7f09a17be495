"""A held workspace (DuckDB locks the file for one process): `--wait SECONDS` / $STUDIO_WAIT
queues a command behind the holder instead of failing; and while the studio app holds it, the
read-only commands (stats, show, history, export --dry-run) are run by the app over its socket
(studio/ipc.py) and print what they print on a free workspace, while anything else is refused."""
from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import subprocess
import sys

import pytest

from curation.errors import WorkspaceLocked
from studio.app import StudioApp
from studio.cli import main, parse
from studio.ipc import SOCKET_NAME, socket_address
from tests._studio_ws import make_workspace
from tests.conftest import ROOT

# Holds the workspace; exits `sys.argv[2]` seconds after "ready", or when stdin closes if "-".
HOLD = (
    "import sys, time; from curation.workspace import open_workspace; ws = open_workspace(sys.argv[1]); "
    "print('ready', flush=True); time.sleep(float(sys.argv[2])) if sys.argv[2] != '-' else sys.stdin.read()"
)


def _hold(ws_path, seconds: str) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(ws_path), seconds], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "ready"
    return holder


def _studio(*argv, env=None, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "studio.cli", *map(str, argv)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=env)


@pytest.fixture
def studio_ws(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return make_workspace(tmp_path / "ws")


def test_wait_is_a_global_and_a_command_option(capsys):
    assert parse(["--wait", "30", "import", "x.jsonl"]).args.wait == 30
    assert parse(["import", "x.jsonl", "--wait", "2.5"]).args.wait == 2.5
    assert parse(["--wait", "30", "import", "x.jsonl", "--wait", "2.5"]).args.wait == 2.5  # the command's own wins
    assert parse(["stats"]).args.wait is None
    with pytest.raises(SystemExit) as exc:
        main(["stats", "--wait", "-1"])
    assert exc.value.code == 2 and "give a number of seconds, 0 or more" in capsys.readouterr().err


def test_wait_queues_behind_a_holder_that_exits(studio_ws):
    holder = _hold(studio_ws, "1")
    try:
        proc = _studio("--wait", "10", "stats", "--json", "-w", studio_ws)
    finally:
        holder.wait(timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["total"] == 12
    assert f"waiting for the workspace (held by process {holder.pid}) ..." in proc.stderr
    assert proc.stderr.count("waiting for the workspace") == 1

    # a write command, with the wait from the environment
    holder = _hold(studio_ws, "1")
    try:
        proc = _studio("approve", "1", "-w", studio_ws, env={**os.environ, "STUDIO_WAIT": "10"})
    finally:
        holder.wait(timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "approved 1 sample" in proc.stdout


def test_a_short_wait_gives_up_with_one_line(studio_ws):
    holder = _hold(studio_ws, "-")
    try:
        waited = _studio("stats", "-w", studio_ws, "--wait", "0.5")
        plain = _studio("approve", "1", "-w", studio_ws)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert waited.returncode == WorkspaceLocked.exit_code
    lines = waited.stderr.splitlines()
    assert lines[0] == f"studio: waiting for the workspace (held by process {holder.pid}) ..."
    assert len(lines) == 2 and lines[1].startswith(f"studio: error: workspace {studio_ws} is open in process {holder.pid}")
    assert "after waiting 0.5 s" in lines[1] and waited.stdout == ""
    assert plain.returncode == WorkspaceLocked.exit_code
    assert len(plain.stderr.splitlines()) == 1 and "--wait SECONDS" in plain.stderr
    assert f"process {holder.pid}" in plain.stderr and "Traceback" not in plain.stderr


READ_ONLY = [
    ("stats",),
    ("stats", "--json"),
    ("show", "1"),
    ("show", "99"),  # not found: the same error and exit status
    ("history",),
    ("export", "v1", "--dry-run", "--include", "approved+pending"),
    ("export", "v1", "--dry-run", "--json"),
]


def _free_outputs(ws, capsys) -> dict:
    outputs = {}
    for argv in READ_ONLY:
        rc = main([*argv, "-w", str(ws)])
        captured = capsys.readouterr()
        outputs[argv] = (rc, captured.out, captured.err)
    return outputs


async def test_read_only_commands_run_in_the_open_studio(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    # a path too long for a Unix socket address (107 bytes) goes through the folder's fd
    ws = make_workspace(tmp_path / ("long-folder-name-" * 6) / "ws")
    assert len(str(ws / SOCKET_NAME)) > 108
    assert main(["approve", "2", "3", "--reason", "fine", "-w", str(ws)]) == 0
    capsys.readouterr()
    free = _free_outputs(ws, capsys)
    assert free[("show", "99")][0] != 0 and free[("export", "v1", "--dry-run", "--json")][0] == 0

    # a socket left by a studio that died is replaced
    with socket_address(ws / SOCKET_NAME) as address:
        socket.socket(socket.AF_UNIX).bind(address)

    app = StudioApp(ws)
    async with app.run_test(size=(120, 40)):
        assert stat.S_IMODE(os.stat(ws / SOCKET_NAME).st_mode) == 0o600
        served = await asyncio.gather(*(asyncio.to_thread(_studio, *argv, "-w", ws) for argv in READ_ONLY))
        for argv, proc in zip(READ_ONLY, served):
            assert (proc.returncode, proc.stdout, proc.stderr) == free[argv], argv

        refused = await asyncio.to_thread(_studio, "approve", "1", "-w", ws)
        assert refused.returncode == WorkspaceLocked.exit_code and refused.stdout == ""
        assert len(refused.stderr.splitlines()) == 1
        assert f"is open in process {os.getpid()}" in refused.stderr and "--wait SECONDS" in refused.stderr

        # sent raw over the socket, a command that writes is refused, and nothing is written
        for argv in (["approve", "1"], ["export", "v9"], ["import", "x.jsonl"], ["--version"], "stats"):
            reply = await asyncio.to_thread(_raw_request, ws, {"argv": argv, "workspace": str(ws), "cwd": "/"})
            assert reply["rc"] == WorkspaceLocked.exit_code and reply["stdout"] == "", argv
            assert "runs only stats, show, history, export --dry-run" in reply["stderr"]
        assert not (ws / "splits" / "v9").exists()
        # another workspace's path is refused too
        reply = await asyncio.to_thread(_raw_request, ws, {"argv": ["stats"], "workspace": str(tmp_path), "cwd": "/"})
        assert reply["rc"] == WorkspaceLocked.exit_code
        statuses = app.engine.reader().execute("SELECT id, status FROM samples WHERE id <= 3 ORDER BY id").fetchall()
        assert statuses == [(1, "pending"), (2, "approved"), (3, "approved")]
    assert not (ws / SOCKET_NAME).exists()
    assert [p.name for p in ws.iterdir() if p.name.startswith(".studio")] == []


def _raw_request(ws, request) -> dict:
    with socket.socket(socket.AF_UNIX) as sock, socket_address(ws / SOCKET_NAME) as address:
        sock.settimeout(60)
        sock.connect(address)
        sock.sendall(json.dumps(request).encode())
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return json.loads(data)
