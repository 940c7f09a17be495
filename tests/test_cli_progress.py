"""CLI progress (issue 18 item 5): a rich bar with percent, rate and time left on a terminal;
plain lines without control characters elsewhere; nothing with -q or --json (stdout stays JSON).
The commands run in this process, with sys.stderr replaced."""
from __future__ import annotations

import io
import json
import re
import sys
import time

from rich.console import Console

from curation.jobs import Job
from studio.cli import main
from studio.commands._common import CliProgress
from tests.conftest import SAMPLE_DATA

SAMPLES = [str(SAMPLE_DATA / name) for name in ("alpaca_mixed.json", "sharegpt_chat.jsonl", "raw_text.jsonl")]
CLOCK = re.compile(r"-:--:--|\d+:\d\d:\d\d")  # rich's TimeRemainingColumn (or elapsed, once finished)
PERCENT = re.compile(r"\d+%")


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


class NotTTY(io.StringIO):
    def isatty(self) -> bool:
        return False


def _import_export(ws_path, *extra: str, capsys) -> list[str]:
    """import the sample data then export it; the stdout of each."""
    outs = []
    assert main(["import", *SAMPLES, "-w", str(ws_path), *extra]) == 0
    outs.append(capsys.readouterr().out)
    assert main(["export", "v1", "--include", "approved+pending", "-w", str(ws_path), *extra]) == 0
    outs.append(capsys.readouterr().out)
    return outs


def test_terminal_shows_a_live_bar_with_percent_and_time_left(ws_path, monkeypatch, capsys):
    err = FakeTTY()
    monkeypatch.setattr(sys, "stderr", err)
    _import_export(ws_path, capsys=capsys)
    assert main(["dedup", "-w", str(ws_path)]) == 0
    text = err.getvalue()
    assert "\x1b[" in text, text  # drawn in place
    assert re.search(r"import .*\d+/\d+.*" + PERCENT.pattern, text), text
    assert CLOCK.search(text), text
    assert "dedup" in text


def test_bar_columns_done_total_percent_rate_and_eta():
    buf = io.StringIO()
    bar = CliProgress("train", console=Console(file=buf, force_terminal=True, width=120))
    bar.update(10, 100)  # where it starts (a resumed run), not a jump from 0
    for step in (15, 20):  # the rate needs two steps seen
        time.sleep(0.2)
        bar.update(step, 100, "loss 1.2345")
    time.sleep(0.3)  # an auto refresh draws the last update
    bar.finish()
    text = buf.getvalue()
    assert "20/100" in text and "20%" in text, text
    assert re.search(r"\d[\d.,]*/s", text), text  # the rate
    assert re.search(r"0:00:\d\d", text), text  # time left
    assert "loss 1.2345" in text


def test_not_a_terminal_plain_lines_without_control_characters(ws_path, monkeypatch, capsys):
    # FORCE_COLOR (set by many CI systems) makes rich call a pipe a terminal: it must not matter here
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setattr(CliProgress, "PLAIN_EVERY_S", 0.0)
    err = NotTTY()
    monkeypatch.setattr(sys, "stderr", err)
    _import_export(ws_path, capsys=capsys)
    text = err.getvalue()
    assert "\x1b" not in text and "\r" not in text, repr(text)
    lines = [line for line in text.splitlines() if line.startswith("import:")]
    assert lines and PERCENT.search(lines[-1]), text

    # a line in the middle of a job says how long is left
    err.truncate(0), err.seek(0)
    job = Job(kind="quality", on_progress=CliProgress("quality"), min_interval=0.0)
    job.set_total(10)
    for _ in range(4):
        time.sleep(0.02)
        job.advance(1, message="rule\x1b[31m x")
    job.on_progress.finish()
    text = err.getvalue()
    assert "\x1b" not in text and "\r" not in text, repr(text)
    assert re.search(r"quality: 4/10 \(40%\).*about 0:00:\d\d left", text), text


def test_quiet_and_json_print_no_progress(ws_path, tmp_path, monkeypatch, capsys):
    """--json was quiet before; -q is new on import (dedup and quality had it)."""
    err = FakeTTY()
    monkeypatch.setattr(sys, "stderr", err)
    outs = _import_export(ws_path, "--json", capsys=capsys)
    assert main(["import", *SAMPLES, "-w", str(tmp_path / "ws2"), "-q"]) == 0
    capsys.readouterr()
    for command in (["dedup", "-q"], ["quality", "-q"], ["dedup", "--json"], ["quality", "--json"],
                    ["dedup", "--json", "-q"], ["quality", "--json", "-q"]):
        assert main([*command, "-w", str(ws_path)]) == 0
        out = capsys.readouterr().out
        if "--json" in command:
            outs.append(out)
    assert err.getvalue() == "", repr(err.getvalue())
    for out in outs:
        json.loads(out)  # stdout is JSON alone
