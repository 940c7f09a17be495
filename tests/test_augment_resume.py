"""A job killed with kill -9 mid-way and resumed sends every request exactly once in total: the
answers that arrived before the kill were in the cache, the rest are sent by the resume."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tests.augment_helpers import FAKE_KEY, FAKE_KEY_ENV, add_samples, configure
from tests.conftest import ROOT


def _studio(ws_root, *args, env):
    return [sys.executable, "-m", "studio.cli", "-w", str(ws_root), *args]


def _wait(cond, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return False


def test_kill_9_then_resume_sends_each_request_exactly_once(ws, fake, monkeypatch):
    add_samples(ws, [(f"Question {i}: explain topic {i}", f"Answer {i}") for i in range(30)])
    configure(ws, fake, monkeypatch, concurrency=4)
    root = ws.root
    ws.close()  # one process owns a workspace: the CLI subprocess takes it
    env = {**os.environ, FAKE_KEY_ENV: FAKE_KEY}
    fake.latency = 0.02
    fake.pause_after(20)
    proc = subprocess.Popen(_studio(root, "augment", "answers", "--n", "2", env=env), cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # Until the server has answered 20 and holds the rest unread (so every request it counted
        # was answered), then give the client a moment to write the last answers.
        assert _wait(lambda: fake.answered >= 20 and fake.answered == fake.total_requests()), proc.stderr
        time.sleep(1.0)
        assert proc.poll() is None
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    answered_before_kill = fake.answered
    fake.release()

    from curation.workspace import open_workspace

    with open_workspace(root) as w:
        # every answer that arrived is in the cache, with the samples it produced
        assert w.con.execute("SELECT count(*) FROM llm_cache").fetchone()[0] == answered_before_kill
        assert w.count("operation = 'augment:answers'") == answered_before_kill
        state = w.con.execute("SELECT state FROM jobs").fetchone()[0]
        assert state == "interrupted"  # killed: never finished, and its process is gone

    done = subprocess.run(_studio(root, "augment", "resume", "--json", env=env), cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(fake.counts) == 60                     # 30 samples x 2 answers
    assert set(fake.counts.values()) == {1}           # each sent exactly once in total
    with open_workspace(root) as w:
        assert w.count("operation = 'augment:answers'") == 60
        assert w.con.execute("SELECT count(DISTINCT request_key) FROM augment_outputs").fetchone()[0] == 60
        assert w.con.execute("SELECT state FROM jobs").fetchone()[0] == "done"
        usage = w.con.execute("SELECT requests, cached FROM llm_usage").fetchone()
        assert usage == (60, answered_before_kill)   # sent over both runs; the resume reused the first run's
