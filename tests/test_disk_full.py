"""A full disk ends every command with one line on stderr (what, where, what to do), exit status 74,
and the workspace as it was; a training run that dies of it is marked failed with "disk full".

Two kinds of test: on a REAL full filesystem (a small tmpfs, filled up; needs root to mount, so it is
skipped elsewhere with the reason), and by injection (always run): DuckDB's failed commit, an
OSError(ENOSPC) in the middle of an export, a checkpoint save that fails with ENOSPC and a status
file that can no longer be replaced.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import threading
import time
import uuid
from pathlib import Path

import duckdb
import pytest

from curation.errors import DiskFull, disk_full_error
from curation.workspace import Workspace, open_workspace
from studio.cli import main
from tests.conftest import SAMPLE_DATA
from tests.training_fixtures import write_split

ALPACA = SAMPLE_DATA / "alpaca_mixed.json"


# -- helpers ------------------------------------------------------------------------------------------
def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line(rc: int, err: str, *words: str) -> str:
    """rc 74 (DiskFull), no traceback, and the last line of stderr is the one error line."""
    assert rc == DiskFull.exit_code == 74, err
    assert "Traceback" not in err, err
    errors = [ln for ln in err.splitlines() if ln.startswith("studio: error:")]
    assert len(errors) == 1, err
    assert err.rstrip("\n").splitlines()[-1] == errors[0]
    line = errors[0]
    assert "the disk is full" in line and "free space in" in line and "run the command again" in line
    for w in words:
        assert w in line, line
    return line


def ws_state(ws_dir: Path) -> dict:
    with open_workspace(ws_dir) as ws:
        q = ws.con.execute
        return {"samples": q("SELECT id, status, duplicate_of, cluster_id FROM samples ORDER BY id").fetchall(),
                "operations": q("SELECT id, kind FROM operations ORDER BY id").fetchall(),
                "imports": q("SELECT count(*) FROM imports").fetchall(),
                "clusters": q("SELECT count(*) FROM dup_clusters").fetchall()}


def workspace_with_data(ws_dir: Path) -> Path:
    from curation.importers import import_paths

    with open_workspace(ws_dir) as ws:
        import_paths(ws, [ALPACA])
    return ws_dir


def fail_commits(monkeypatch) -> None:
    """From now on every workspace transaction does its work, then fails to commit as DuckDB does on a
    full disk: rolled back, `TransactionException: Failed to commit: ... No space left on device`."""
    original = Workspace.transaction

    @contextlib.contextmanager
    def transaction(self, con=None):
        outermost = not (con is None or con is self.con) or self._tx_depth == 0  # a nested block joins the outer one
        with original(self, con) as c:
            yield c
            if outermost:  # raised inside the real transaction: it rolls back and re-raises, as DuckDB's commit does
                raise duckdb.TransactionException(
                    f'TransactionContext Error: Failed to commit: Could not write file "{self.root / "studio.duckdb.wal"}": '
                    "No space left on device")

    monkeypatch.setattr(Workspace, "transaction", transaction)


@pytest.fixture
def small_fs(tmp_path):
    """A real 16 MB filesystem (tmpfs) at tmp_path/fs; `fill(folder)` fills it to the last byte.
    Skipped where mount is not allowed (not root, or a container without CAP_SYS_ADMIN)."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("a real full disk needs a small tmpfs, and mounting one needs root (this runs unprivileged); "
                    "the injection tests cover the same paths")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs for a real full disk ({proc.stderr.strip() or proc.returncode}); "
                    "the injection tests cover the same paths")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, check=False)  # lazy: mmapped weights may hold it


def fill(folder: Path) -> Path:
    """Write a filler file until the filesystem has no byte left; returns it (delete it to free space)."""
    filler = folder / f"filler-{uuid.uuid4().hex[:6]}"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for size in (1 << 20, 65536, 4096, 512, 1):
            chunk = b"\0" * size
            while True:
                try:
                    if os.write(fd, chunk) < size:
                        break
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)
    return filler


# -- the classifier ---------------------------------------------------------------------------------------
def test_disk_full_error_knows_the_chain_and_leaves_other_errors_alone(tmp_path):
    err = disk_full_error(OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.json")), tmp_path)
    assert isinstance(err, DiskFull) and f"could not write {tmp_path / 'x.json'}" in str(err)
    assert f"free space in {tmp_path} (" in str(err) and "\n" not in str(err)
    quota = disk_full_error(OSError(errno.EDQUOT, "Disk quota exceeded"), tmp_path)
    assert quota is not None and f"could not write in {tmp_path}" in str(quota)
    try:  # safetensors / torch.save: the OSError is the cause or the context of another error
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 15360 vs 15248")  # noqa: B904  (torch chains implicitly; the test needs __context__)
    except RuntimeError as exc:
        assert disk_full_error(exc, tmp_path) is not None
    assert disk_full_error(RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)")) \
        is not None
    assert disk_full_error(OSError(errno.EACCES, "Permission denied", "/x"), tmp_path) is None
    assert disk_full_error(duckdb.TransactionException("Failed to commit: write-write conflict"), tmp_path) is None
    assert disk_full_error(ValueError("no"), tmp_path) is None


# -- injection: always runs ----------------------------------------------------------------------------
def test_import_whose_commit_fails_for_space_is_one_line_and_changes_nothing(tmp_path, capsys, monkeypatch):
    ws_dir = tmp_path / "ws"
    open_workspace(ws_dir).close()
    before = ws_state(ws_dir)
    fail_commits(monkeypatch)
    rc, _, err = run_cli(capsys, "-w", ws_dir, "import", ALPACA)
    assert_one_line(rc, err, f"could not write {ws_dir / 'studio.duckdb.wal'}", f"free space in {ws_dir}")
    monkeypatch.undo()
    assert ws_state(ws_dir) == before


def test_approve_and_dedup_whose_commit_fails_change_nothing(tmp_path, capsys, monkeypatch):
    ws_dir = workspace_with_data(tmp_path / "ws")
    before = ws_state(ws_dir)
    fail_commits(monkeypatch)
    rc, _, err = run_cli(capsys, "-w", ws_dir, "approve", "1-50")
    assert_one_line(rc, err, f"could not write {ws_dir / 'studio.duckdb.wal'}")
    rc, _, err = run_cli(capsys, "-w", ws_dir, "dedup", "--quiet")
    assert_one_line(rc, err, f"could not write {ws_dir / 'studio.duckdb.wal'}")
    monkeypatch.undo()
    assert ws_state(ws_dir) == before


def test_export_that_runs_out_of_space_leaves_no_split_and_no_temporary_folder(tmp_path, capsys, monkeypatch):
    from curation import export

    ws_dir = workspace_with_data(tmp_path / "ws")
    real = export._line_buffer
    calls = {"n": 0}

    def line_buffer(*a, **kw):  # the disk fills after the first block of lines has gone to its file
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*a, **kw)

    monkeypatch.setattr(export, "_line_buffer", line_buffer)
    rc, _, err = run_cli(capsys, "-w", ws_dir, "export", "v1", "--include", "approved+pending")
    assert_one_line(rc, err, f"could not write in {ws_dir}")
    assert calls["n"] > 1
    assert list((ws_dir / "splits").iterdir()) == []  # no v1, no .v1.tmp-PID


def test_train_whose_save_fails_for_space_is_marked_failed_even_when_status_cannot_be_replaced(
        tmp_path, capsys, monkeypatch):
    """The adapter save fails with ENOSPC wrapped the way torch.save does it; from then on status.json
    cannot be replaced either (no room for its temporary file): it is rewritten in place."""
    from training import recipe, runs

    split = write_split(tmp_path / "split")
    ws_dir = tmp_path / "ws"
    ws_dir.mkdir()
    full = threading.Event()
    real_replace = os.replace

    def save_final(*a, **kw):
        full.set()
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 15360 vs 15248")  # noqa: B904  (torch chains implicitly; the test needs __context__)

    def replace(src, dst, *a, **kw):
        if full.is_set() and Path(dst).name == runs.STATUS_FILE:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst, *a, **kw)

    monkeypatch.setattr(recipe, "save_final", save_final)
    monkeypatch.setattr(runs.os, "replace", replace)
    rc, out, err = run_cli(capsys, "-w", ws_dir, "train", split, "--foreground", "--name", "r", "--preset", "tiny-demo",
                           "--set", "train.max_steps=3", "--set", "train.save_steps=100", "--set", "train.eval_steps=100",
                           "--set", "data.max_length=128")
    monkeypatch.undo()
    assert rc == 74 and "Traceback" not in err, err  # DiskFull.exit_code, as any command on a full disk
    disk_lines = [ln for ln in err.splitlines() if "disk full" in ln]
    assert len(disk_lines) == 1 and err.rstrip("\n").splitlines()[-1] == disk_lines[0], err
    assert disk_lines[0].startswith("error: disk full: could not write in ") and "free space in" in disk_lines[0]
    run = ws_dir / "runs" / "r"
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "failed" and status["error"].startswith("disk full:"), status
    assert "free space in" in status["error"] and status["finished_at"]
    assert not list(run.glob(".status.json.*.tmp"))  # the failed temporary file was removed
    assert "r: failed" in out


# -- a real full disk (tmpfs; root only) -----------------------------------------------------------------
def test_real_full_disk_import_approve_dedup_export_then_import_again(small_fs, capsys):
    ws_dir = small_fs / "ws"
    workspace_with_data(ws_dir)
    before = ws_state(ws_dir)
    filler = fill(small_fs)
    extra = ws_dir.parent.parent / "more.jsonl"  # outside the small disk
    extra.write_text("".join(json.dumps({"instruction": f"question {i} " + "x" * 300, "output": f"answer {i}"}) + "\n"
                             for i in range(2000)), encoding="utf-8")

    rc, _, err = run_cli(capsys, "-w", ws_dir, "import", extra)
    assert_one_line(rc, err, str(ws_dir))
    rc, _, err = run_cli(capsys, "-w", ws_dir, "approve", "1-50")
    assert_one_line(rc, err, str(ws_dir))
    rc, _, err = run_cli(capsys, "-w", ws_dir, "dedup", "--quiet")
    assert_one_line(rc, err, str(ws_dir))
    rc, _, err = run_cli(capsys, "-w", ws_dir, "export", "v1", "--include", "approved+pending")
    assert_one_line(rc, err, str(ws_dir))
    assert [p.name for p in (ws_dir / "splits").iterdir()] == []
    assert ws_state(ws_dir) == before

    filler.unlink()  # "free space ... and run the command again"
    rc, _, err = run_cli(capsys, "-w", ws_dir, "import", extra)
    assert rc == 0, err
    with open_workspace(ws_dir) as ws:
        assert ws.count() == len(before["samples"]) + 2000


def test_real_full_disk_during_training_marks_the_run_failed(small_fs, tmp_path, capsys):
    """The disk fills while a tiny run trains (a filler written from another thread once step 2 is
    logged): the next write fails, the run ends failed with "disk full", status.json says so."""
    split = write_split(tmp_path / "split")
    ws_dir = small_fs / "ws"
    ws_dir.mkdir()
    run = ws_dir / "runs" / "r"
    filled: list[Path] = []

    def filler():
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            try:
                if json.loads((run / "status.json").read_text()).get("step", 0) >= 2:
                    filled.append(fill(small_fs))
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.05)

    t = threading.Thread(target=filler, daemon=True)
    t.start()
    rc, _, err = run_cli(capsys, "-w", ws_dir, "train", split, "--foreground", "--name", "r", "--preset", "tiny-demo",
                         "--set", "train.max_steps=200", "--set", "train.save_steps=1000",
                         "--set", "train.eval_steps=1000", "--set", "debug.step_sleep_s=0.05")
    t.join(5)
    assert filled, "the filler never ran"
    assert rc != 0 and "Traceback" not in err, err[-3000:]
    disk_lines = [ln for ln in err.splitlines() if "disk full" in ln]
    assert len(disk_lines) == 1 and err.rstrip("\n").splitlines()[-1] == disk_lines[0], err[-3000:]
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "failed" and status["error"].startswith("disk full:"), status
    assert f"free space in {run}" in status["error"]
    from training.runs import effective_status

    assert effective_status(run).state == "failed"
