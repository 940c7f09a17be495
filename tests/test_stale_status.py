"""A run whose process was killed (kill -9, the OOM killer) is written `failed` into status.json by
the first reader that notices (`studio runs`, the Train screen, `effective_status`): the file is the
contract, so it must agree with what `studio runs` shows. Remote mirrors and other hosts' runs are
left alone."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

from studio.cli import main
from tests.training_fixtures import tiny_config, write_split
from training import rundir, runs


def file_status(run) -> dict:
    return json.loads((run / "status.json").read_text(encoding="utf-8"))


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_kill_9_then_studio_runs_writes_failed_into_status_json(tmp_path, capsys):
    split = write_split(tmp_path / "split")
    ws = tmp_path / "ws"
    cfg = tiny_config(split, **{"train.max_steps": 1000, "train.save_steps": 1000, "train.eval_steps": 1000,
                                "debug.step_sleep_s": 0.2})
    run = runs.create_run(ws / "runs", cfg, name="k")
    pid = runs.launch(run)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        st = runs.read_status(run)
        if st.state == "running" and (st.step or 0) >= 1:
            break
        time.sleep(0.2)
    else:
        raise AssertionError((run / "train.log").read_text()[-2000:])
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)  # our child (launch started it): reap it
    assert file_status(run)["state"] == "running"  # what the dead process left behind

    capsys.readouterr()
    assert main(["-w", str(ws), "runs"]) == 0
    out = capsys.readouterr().out
    assert any(line.startswith("k ") and " failed " in line for line in out.splitlines()), out
    st = file_status(run)
    assert st["state"] == "failed" and st["finished_at"], st
    assert st["error"] == (f"the training process (pid {pid}) ended without a word: killed or out of memory? "
                           f"See train.log. Resume with `studio train --resume k`")
    assert runs.run_info(run).state == "failed" and runs.effective_status(run).to_json() == st  # written once, then read


def test_remote_mirrors_other_hosts_and_queued_runs_without_a_pid_are_not_written(tmp_path):
    gone = dead_pid()
    cases = {
        "other-host": {"state": "running", "pid": gone, "host": "gpu-box-that-is-not-this-one"},
        "mirror": {"state": "running", "pid": gone, "host": socket.gethostname()},
        "queued-no-pid": {"state": "queued", "pid": None, "host": socket.gethostname()},
        "done": {"state": "done", "pid": gone, "host": socket.gethostname()},
    }
    for name, status in cases.items():
        run = tmp_path / name
        run.mkdir()
        (run / "status.json").write_text(json.dumps(status))
        if name == "mirror":
            (run / "remote.json").write_text(json.dumps({"remote_dir": "/srv/runs/mirror", "pid": gone}))
        before = (run / "status.json").read_text()
        st = runs.effective_status(run)
        assert (run / "status.json").read_text() == before, name
        # a mirror on this host reads as failed (as before), but its file is its host's to write
        assert st.state == ("failed" if name == "mirror" else status["state"]), (name, st)


def test_a_local_run_that_died_is_reconciled_once_and_an_unwritable_file_still_reads_failed(tmp_path, monkeypatch):
    import errno

    gone = dead_pid()
    run = tmp_path / "r"
    run.mkdir()
    (run / "status.json").write_text(json.dumps({"state": "running", "pid": gone, "host": socket.gethostname(),
                                                 "step": 7}))
    st = runs.effective_status(run)
    assert st.state == "failed" and st.step == 7 and f"pid {gone}" in st.error
    assert file_status(run) == st.to_json()
    assert runs.effective_status(run) == st  # no second write: finished_at and updated_at stay

    full = tmp_path / "full"
    full.mkdir()
    (full / "status.json").write_text(json.dumps({"state": "queued", "pid": gone, "host": socket.gethostname()}))

    def no_space(*a, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rundir, "write_status", no_space)  # effective_status writes through rundir
    st = runs.effective_status(full)
    assert st.state == "failed" and f"pid {gone}" in st.error
    assert file_status(full)["state"] == "queued"  # could not be written; read as failed all the same


def test_home_lists_a_run_whose_process_died_as_failed(tmp_path):
    """Home read status.json as it was, so a killed run said `running` there until another reader
    noticed; it reads the effective status now, as `studio runs` does."""
    from studio.screens.home import read_runs

    gone = dead_pid()
    run = tmp_path / "runs" / "dead"
    run.mkdir(parents=True)
    (run / "status.json").write_text(json.dumps({"state": "running", "pid": gone, "host": socket.gethostname(),
                                                 "started_at": "2026-12-06T10:00:00Z"}))
    [(name, st)] = read_runs(tmp_path / "runs")
    assert name == "dead" and st is not None and st.state == "failed" and f"pid {gone}" in st.error
    assert file_status(run)["state"] == "failed"  # the contract: the first reader writes it
