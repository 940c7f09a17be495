"""After training: `studio chat`, `studio merge` and the serve session on runs made by the real
trainer (tiny base, trl + peft on CPU), found in the workspace by run id."""
from __future__ import annotations

import json

import pytest

from tests.training_fixtures import tiny_config, write_split

pytest.importorskip("trl")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    from training import runs

    ws = tmp_path_factory.mktemp("ws")
    split = write_split(ws / "splits" / "v1")
    for name, lr in (("r1", 1e-2), ("r2", 3e-3)):
        # Same seed and split: both runs build the same tiny base, so one session can hold both.
        st = runs.execute(runs.create_run(ws / "runs", tiny_config(split, **{"train.max_steps": 6,
                                                                               "train.learning_rate": lr}), name=name))
        assert st.state == "done"
    return ws


def _studio(ws, *argv, capsys):
    from studio.cli import main

    code = main(["-w", str(ws), *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_chat_prompt_prints_base_and_adapter(workspace, capsys):
    code, out, _ = _studio(workspace, "chat", "r1", "--prompt", "What is ice?", "--temperature", "0",
                           "--max-new-tokens", "8", "--json", capsys=capsys)
    assert code == 0
    data = json.loads(out)
    assert data["run"] == "r1" and data["base_model"] == "tiny" and data["untrained_base"] is True
    assert data["base_answer"] != data["adapter_answer"]
    code, out, _ = _studio(workspace, "chat", "r1", "--prompt", "What is ice?", "--temperature", "0",
                           "--max-new-tokens", "8", capsys=capsys)
    assert "── base tiny (untrained tiny base: its answers mean nothing) ──" in out and "── adapter r1 ──" in out


def test_chat_interactive_keeps_history_until_reset(workspace, capsys, monkeypatch):
    lines = iter(["hello", "/reset", "/quit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    code, out, _ = _studio(workspace, "chat", "r1", "--temperature", "0", "--max-new-tokens", "4", "--no-base",
                           capsys=capsys)
    assert code == 0 and "history cleared" in out and out.count("── adapter r1 ──") == 1


def test_chat_unknown_run_is_a_clean_error(workspace, capsys):
    code, _, err = _studio(workspace, "chat", "nope", "--prompt", "x", capsys=capsys)
    assert code == 2 and "no run 'nope'" in err and "Traceback" not in err


def test_merge_cli_verifies_and_saves(workspace, capsys):
    code, out, _ = _studio(workspace, "merge", "r1", "--dtype", "fp32", "--device", "cpu", "--json", capsys=capsys)
    data = json.loads(out)
    assert code == 0 and data["ok"] and data["max_abs_diff"] < 1e-4
    merged = workspace / "runs" / "r1" / "merged"
    assert (merged / "config.json").is_file() and (merged / "UNTRAINED.txt").is_file()
    code, _, err = _studio(workspace, "merge", "r1", capsys=capsys)
    assert code == 2 and "already exists" in err


def test_trained_runs_share_the_tiny_base_and_load_in_one_session(workspace):
    from training.inference import load_session

    session = load_session([workspace / "runs" / "r1", workspace / "runs" / "r2"])
    assert session.adapters == ["r1", "r2"]
    chat = [{"role": "user", "content": "What is ice?"}]
    outs = {a: session.generate(chat, adapter=a, max_new_tokens=6, temperature=0).text for a in (None, "r1", "r2")}
    assert len(set(outs.values())) == 3, outs


def test_serve_refuses_non_loopback_without_a_key(workspace, capsys):
    code, _, err = _studio(workspace, "serve", "r1", "--host", "0.0.0.0", capsys=capsys)
    assert code == 2 and "STUDIO_SERVE_API_KEY" in err


def test_qlora_run_chats_and_merges_into_a_full_precision_base(workspace, tmp_path):
    """A QLoRA adapter (trained on the 4-bit base) merges into the base reloaded in fp32, never 4-bit."""
    from training import runs
    from training.inference import load_session
    from training.merge import merge_run

    split = workspace / "splits" / "v1"
    run = runs.create_run(workspace / "runs", tiny_config(split, **{"train.max_steps": 3, "method": "qlora"}),
                          name="q1")
    assert runs.execute(run).state == "done"
    result = merge_run(run, tmp_path / "q-merged", dtype="fp32", device="cpu")
    assert result.ok and result.max_abs_diff < 1e-4
    session = load_session(run, device="cpu")  # on a CPU the base loads unquantised
    assert not getattr(session.model.base_model.model, "is_loaded_in_4bit", False)
    assert session.generate([{"role": "user", "content": "What is ice?"}], adapter="q1", max_new_tokens=3,
                            temperature=0).completion_tokens >= 1


def test_studio_serve_command_answers_openai_clients(workspace):
    """The real `studio serve` process: prints its URL, answers the openai client, stops on SIGINT."""
    import os
    import signal
    import subprocess
    import sys

    openai = pytest.importorskip("openai")
    from tests.conftest import ROOT

    # Ctrl-C in a terminal: SIGINT at its default in the child, whatever the test runner inherited
    # (a shell's background job ignores SIGINT, and Python then installs no KeyboardInterrupt).
    proc = subprocess.Popen([sys.executable, "-m", "studio.cli", "-w", str(workspace), "serve", "r1", "r2",
                             "--port", "0"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        first = proc.stdout.readline()
        assert first.startswith("serving tiny, r1, r2 at http://127.0.0.1:"), first
        url = first.split(" at ")[1].strip()
        client = openai.OpenAI(base_url=url, api_key="x", max_retries=0, timeout=60)
        assert [m.id for m in client.models.list()] == ["tiny", "r1", "r2"]
        resp = client.chat.completions.create(model="r2", messages=[{"role": "user", "content": "What is ice?"}],
                                              max_tokens=5, temperature=0)
        assert resp.usage.completion_tokens >= 1 and resp.choices[0].finish_reason in ("stop", "length")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert proc.returncode == 0
