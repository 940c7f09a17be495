"""The review commands as a user types them: stats, show, approve/reject with ids, ranges and
filters, edit in $EDITOR, undo, history, export."""
from __future__ import annotations

import json
import sys
import textwrap

import pytest

from curation import store
from curation.samples import Sample, chat
from curation.workspace import open_workspace
from studio.cli import main


@pytest.fixture
def filled(ws_path):
    with open_workspace(ws_path) as ws:
        with ws.transaction():
            ids = store.insert_samples(ws.con, [chat(f"question {i}", f"answer {i}", source_file="a.json", source_row=i)
                                                for i in range(10)]
                                       + [Sample(kind="text", text="evil \x1b[31mred\x1b[0m text", source_file="b.txt")])
        ws.con.execute("INSERT INTO quality_flags VALUES (?, 'too_short', 8, 10, 'answer has 8 chars', NULL)", [ids[4]])
    return ws_path, ids


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_approve_reject_ranges_filters_undo_history(filled, capsys):
    ws, ids = filled
    code, out, _ = cli(capsys, "approve", f"{ids[0]}-{ids[2]}", ids[5], "--reason", "ok", "-w", ws)
    assert code == 0 and "approved 4 samples" in out
    code, out, _ = cli(capsys, "reject", "--flag", "too_short", "-w", ws)
    assert code == 0 and "rejected 1 sample " in out
    code, out, _ = cli(capsys, "stats", "--json", "-w", ws)
    st = json.loads(out)
    assert st["by_status"] == {"pending": 6, "approved": 4, "rejected": 1}
    code, out, _ = cli(capsys, "undo", "-w", ws)
    assert code == 0 and "undid operation 2: status, 1 sample" in out
    code, out, _ = cli(capsys, "history", "-w", ws)
    assert "undone by 3" in out and "reason: ok" in out
    code, _, err = cli(capsys, "approve", "99999", "-w", ws)
    assert code == 2 and "no sample with id 99999" in err and "Traceback" not in err
    code, _, err = cli(capsys, "approve", "5-3", "-w", ws)
    assert code == 2 and "runs backwards" in err
    code, _, err = cli(capsys, "reject", "-w", ws)
    assert code == 2 and "name the samples" in err


def test_stats_and_show_print_safely(filled, capsys):
    ws, ids = filled
    code, out, _ = cli(capsys, "stats", "-w", ws)
    assert code == 0 and "11 samples" in out and "too_short" in out and "a.json" in out
    code, out, _ = cli(capsys, "show", ids[-1], "-w", ws)
    assert code == 0 and "\x1b" not in out and "evil \\x1b[31mred" in out
    code, out, _ = cli(capsys, "show", ids[4], "-w", ws)
    assert "── user ──" in out and "question 4" in out and "too_short: value 8, threshold 10" in out
    code, out, _ = cli(capsys, "show", ids[4], "--json", "-w", ws)
    assert json.loads(out)["messages"][1]["content"] == "answer 4"
    code, _, err = cli(capsys, "show", "424242", "-w", ws)
    assert code == 2 and "no sample with id 424242" in err


def _editor(tmp_path, monkeypatch, body):
    script = tmp_path / "fake_editor.py"
    script.write_text(textwrap.dedent(body), encoding="utf-8")
    monkeypatch.setenv("EDITOR", f"{sys.executable} {script}")
    monkeypatch.delenv("VISUAL", raising=False)


def test_edit_in_editor_then_undo(filled, capsys, tmp_path, monkeypatch):
    ws, ids = filled
    _editor(tmp_path, monkeypatch, """
        import sys, pathlib
        p = pathlib.Path(sys.argv[1])
        p.write_text(p.read_text(encoding="utf-8").replace("content: answer 3", "content: |-\\n    a much better answer\\n    over two lines"), encoding="utf-8")
    """)
    code, out, _ = cli(capsys, "edit", ids[3], "--reason", "better", "-w", ws)
    assert code == 0 and "version 2" in out
    code, out, _ = cli(capsys, "show", ids[3], "--json", "-w", ws)
    d = json.loads(out)
    assert d["messages"][1]["content"] == "a much better answer\nover two lines" and d["versions"][0]["version"] == 1
    cli(capsys, "undo", "-w", ws)
    code, out, _ = cli(capsys, "show", ids[3], "--json", "-w", ws)
    assert json.loads(out)["messages"][1]["content"] == "answer 3"


def test_edit_reopens_on_invalid_input_and_cancels_unchanged(filled, capsys, tmp_path, monkeypatch):
    ws, ids = filled
    seen = tmp_path / "seen.txt"
    # first save: two user turns in a row (invalid); second open: the error is on top, fix it.
    _editor(tmp_path, monkeypatch, f"""
        import sys, pathlib
        p = pathlib.Path(sys.argv[1]); log = pathlib.Path({str(seen)!r})
        text = p.read_text(encoding="utf-8")
        runs = log.read_text().count("RUN") if log.exists() else 0
        log.write_text((log.read_text() if log.exists() else "") + "RUN\\n" + text)
        if runs == 0:
            p.write_text(text.replace("role: assistant", "role: user"), encoding="utf-8")
        else:
            p.write_text(text.replace("role: user\\n  content: answer", "role: assistant\\n  content: fixed answer"), encoding="utf-8")
    """)
    code, out, err = cli(capsys, "edit", ids[1], "-w", ws)
    assert code == 0, err
    log = seen.read_text()
    assert log.count("RUN") == 2 and "# ERROR: sample" in log and "messages[1].role: expected 'assistant'" in log
    code, out, _ = cli(capsys, "show", ids[1], "--json", "-w", ws)
    assert json.loads(out)["messages"][1] == {"role": "assistant", "content": "fixed answer 1"}
    _editor(tmp_path, monkeypatch, "pass\n")
    code, out, _ = cli(capsys, "edit", ids[2], "-w", ws)
    assert code == 0 and "no changes" in out
    code, out, _ = cli(capsys, "history", "--json", "-w", ws)
    assert [o["kind"] for o in json.loads(out)] == ["edit"]


def test_export_command(filled, capsys):
    ws, ids = filled
    cli(capsys, "approve", f"{ids[0]}-{ids[9]}", "-w", ws)
    code, out, _ = cli(capsys, "export", "v1", "--format", "alpaca", "--val", "0.2", "--json", "-w", ws)
    res = json.loads(out)
    assert code == 0 and res["counts"] == {"train": 8, "val": 2} and res["format"] == "alpaca"
    code, _, err = cli(capsys, "export", "v1", "-w", ws)
    assert code == 2 and "--force" in err
    code, out, _ = cli(capsys, "export", "v1", "--force", "--include", "approved+pending", "-w", ws)
    assert code == 0 and "train 10, val 1" in out
