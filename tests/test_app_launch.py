"""Launching asks first, tables fit, quitting is quick (issue 15 items 2, 4, 6 and the Augment jobs table).

Through the real app (Pilot) and the real CLI: Enter on the Train screen's Launch button opens a
confirmation that shows the plan's memory and the device, and nothing is created before Launch; a
7B base on a CPU is refused with the reason, in the dialog and by `studio train`; Augment's ctrl+s
shows the request count and cost of the dry run and sends nothing before Launch (against the real
local OpenAI-protocol server, tests/llm_server.py), and its cost cap applies; `language = 5` is a
field error and starts nothing; the runs table shows state, step/total, loss and eval loss of every
row at 80x24 and 100x30; the Playground waits for no model thread when the studio quits, lists a run
that finishes while it is shown, and its run list takes no type-ahead.
"""
from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import sys
import threading
import time

import pytest
from rich.console import Console
from textual.widgets import Button, Input, Select
from textual.worker import WorkerCancelled

from curation.workspace import open_workspace
from studio.app import StudioApp
from tests._studio_ws import make_workspace
from tests.augment_helpers import configure
from tests.llm_server import FakeLLM
from tests.test_app_augment_screen import fill
from tests.test_app_review import plain
from tests.training_fixtures import tiny_config

QWEN_7B = "Qwen/Qwen2.5-7B-Instruct"  # training/shapes.py knows its shape: no download
CPU = {"kind": "cpu", "name": "cpu", "count": 0, "memory_gb": None, "cores": 2, "ram_gb": 16.0}


async def settle(pilot, rounds: int = 20) -> None:
    """Wait for one-shot workers (not the Train screen's follow timers' endless ones, nor a stream)."""
    for _ in range(rounds):
        await pilot.pause()
        busy = [w for w in pilot.app.workers if not w.is_finished and w.group not in ("tr-stream", "pg-generate")]
        if not busy:
            break
        try:
            await asyncio.wait_for(pilot.app.workers.wait_for_complete(busy), 120)
        except WorkerCancelled:  # an exclusive worker replaced by a newer one
            pass
    await pilot.pause()


async def until(pilot, predicate, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await pilot.pause(0.05)


def dialog_of(app):
    return app.screen if type(app.screen).__name__ == "LaunchConfirmScreen" else None


async def open_confirmation(pilot, key: str = "ctrl+s"):
    await pilot.press(key)
    await until(pilot, lambda: dialog_of(pilot.app) is not None, "the launch confirmation")
    await pilot.pause()
    return pilot.app.screen


def dialog_text(dialog) -> str:
    return " ".join(plain(w.content) for w in dialog.query("#cf-title, #cf-rows, #cf-refusal, #cf-note"))


def run_dirs(ws) -> list[str]:
    runs = ws / "runs"
    return sorted(p.name for p in runs.iterdir()) if runs.is_dir() else []


async def train_form(pilot, preset: str, base: str | None = None, sets: str = "") -> None:
    screen = pilot.app.screen
    await settle(pilot)
    screen.query_one("#tr-preset", Select).value = preset
    await pilot.pause()
    if base is not None:
        screen.query_one("#tr-base", Input).value = base
    screen.query_one("#tr-sets", Input).value = sets
    await pilot.pause()


# -- the Train screen: asked first, refused when it cannot work ------------------------------------------
async def test_enter_on_the_launch_button_asks_first_and_creates_nothing(train_ws):
    app = StudioApp(train_ws, screen="train")
    async with app.run_test(size=(80, 24)) as pilot:
        await train_form(pilot, "tiny-demo", sets="train.max_steps=2")
        app.screen.query_one("#tr-go", Button).focus()
        dialog = await open_confirmation(pilot, "enter")
        assert run_dirs(train_ws) == []
        assert dialog.focused is dialog.query_one("#cf-cancel")  # a second Enter cancels
        for w in dialog.query("#cf-dialog, #cf-cancel, #cf-launch"):  # it fits 80x24
            assert dialog.region.contains_region(w.region) and w.region.height >= 1, w
        await pilot.press("enter")
        await pilot.pause()
        assert dialog_of(app) is None and run_dirs(train_ws) == []
        assert "cancelled" in plain(app.screen.query_one("#tr-message").content)


async def test_the_confirmation_shows_the_plan_memory_and_device_and_launch_starts_it(train_ws):
    from studio.screens.train import _gb, run_request
    from training import runs
    from training.launch import run_config
    from training.plan import describe_device, local_device, make_plan

    app = StudioApp(train_ws, screen="train")
    async with app.run_test(size=(100, 30)) as pilot:
        await train_form(pilot, "tiny-demo", sets="train.max_steps=2 train.save_steps=1000")
        cfg = run_config(run_request(train_ws, app.screen.form()))
        dialog = await open_confirmation(pilot)
        text = dialog_text(dialog)
        device = local_device()
        est = make_plan(cfg)["memory_gb"][cfg.method]
        memory = _gb(est["total_gb"]) if device["kind"] == "cuda" else _gb(2 * est["peak_gb"])
        assert describe_device(device) in text and "this machine" in text
        assert memory in text and "memory" in text and "time" in text and "steps" in text
        assert run_dirs(train_ws) == []
        await pilot.press("y")
        await until(pilot, lambda: run_dirs(train_ws) != [], "the run directory")
        run_dir = train_ws / "runs" / run_dirs(train_ws)[0]
        try:
            await until(pilot, lambda: app.screen.selected == run_dir.name, "the started run selected")
        finally:
            runs.cancel(run_dir, wait_s=10)


async def test_a_7b_base_on_a_cpu_is_refused_with_the_reason(train_ws, monkeypatch):
    import training.plan

    monkeypatch.setattr(training.plan, "local_device", lambda: dict(CPU))
    app = StudioApp(train_ws, screen="train")
    async with app.run_test(size=(80, 24)) as pilot:
        await train_form(pilot, "seed", base=QWEN_7B)
        dialog = await open_confirmation(pilot)
        refusal = plain(dialog.query_one("#cf-refusal").content)
        assert "7.6B parameters" in refusal and "CPU" in refusal and "smollm2-cpu" in refusal and "GPU host" in refusal
        assert not dialog.query("#cf-launch")  # nothing to confirm
        await pilot.press("y")
        await pilot.pause()
        assert dialog_of(app) is dialog
        await pilot.press("escape")
        await pilot.pause()
        assert dialog_of(app) is None
        assert "not launched" in plain(app.screen.query_one("#tr-message").content)
    assert run_dirs(train_ws) == []


def test_the_cli_refuses_a_7b_base_on_a_cpu_in_one_line(train_ws, monkeypatch, capsys):
    import training.plan
    from studio import cli

    monkeypatch.setattr(training.plan, "local_device", lambda: dict(CPU))
    argv = ["train", "v1", "-w", str(train_ws), "--base", QWEN_7B, "--preset", "seed"]
    rc = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert rc != 0 and run_dirs(train_ws) == []
    assert len(err.splitlines()) == 1 and "refused" in err and "7.6B parameters" in err and "--force" in err

    def stop_here(cfg, *, local=True):  # --force goes past the refusal (to the next check)
        from curation.errors import StudioError

        raise StudioError("preflight reached")

    monkeypatch.setattr(training.plan, "preflight", stop_here)
    assert cli.main(argv + ["--force"]) != 0
    assert "preflight reached" in capsys.readouterr().err and run_dirs(train_ws) == []


def test_launch_refusal_rules():
    from training.plan import launch_refusal

    def plan(params_b: float, total: float = 10.0, peak: float = 9.0) -> dict:
        mem = {"total_gb": total, "peak_gb": peak}
        return {"base": "b", "method": "lora", "params_b": params_b, "memory_gb": {"lora": mem}}

    assert launch_refusal(plan(0.135, 1.0, 0.5), CPU) is None
    assert "above 1.5B" in launch_refusal(plan(7.6), CPU)
    assert "RAM" in launch_refusal(plan(1.2, 12.0, 11.0), CPU)  # fp32: twice 11 GB > 16 GB
    gpu = {"kind": "cuda", "name": "NVIDIA L4", "count": 1, "memory_gb": 22.0, "cores": 8, "ram_gb": 64.0}
    assert launch_refusal(plan(7.6, 15.5), gpu) is None
    assert "22 GB" in launch_refusal(plan(7.6, 40.0), gpu)


# -- the runs table fits ---------------------------------------------------------------------------------
def fake_runs(ws) -> list[str]:
    """Three runs with long date-prefixed ids and fixed metrics: running (this process's pid), done, failed."""
    from training import runs

    made = []
    specs = [("20260312-141503-smollm2-135m-instruct-lora", "running", 35, 248, 6.17123, 6.30456),
             ("20260312-150001-qwen2.5-7b-instruct-qlora", "done", 1240, 1240, 0.91234, 1.0456),
             ("20260313-090000-tiny-lora", "failed", 3, 124, 7.5, None)]
    for name, state, step, total, loss, ev in specs:
        run_dir = runs.create_run(ws / "runs", tiny_config(ws / "splits" / "v1"), name=name)
        lines = [{"step": step, "epoch": 1.0, "loss": loss, "time": 1000.0 + step}]
        if ev is not None:
            lines.append({"step": step, "epoch": 1.0, "eval_loss": ev, "time": 1000.0 + step})
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
        runs.write_status(run_dir, state=state, step=step, max_steps=total, pid=os.getpid() if state == "running" else None,
                          host=socket.gethostname(), started_at="2026-03-12T14:15:03+00:00")
        made.append(name)
    return made


def check_runs_table(screen, ids: list[str]) -> dict[str, dict[str, str]]:
    """Every row shows its state, step/total, loss and eval loss whole, and the columns fit the table."""
    from studio.screens.train import STATE_ICONS

    table = screen.query_one("#tr-runs")
    keys = [str(k.value) for k in table.columns]
    assert keys[:5] == ["run", "state", "step", "loss", "eval"], keys
    assert table.virtual_size.width <= table.scrollable_content_region.width, (table.virtual_size, table.size)
    rows = {}
    for rid in ids:
        cells = {k: (c.plain if hasattr(c, "plain") else str(c)) for k, c in zip(keys, table.get_row(rid))}
        for key, col in zip(keys, table.columns.values()):
            assert len(cells[key]) <= col.width, (key, cells[key], col.width)
            assert "…" not in cells[key] or key == "run", (key, cells[key])
        rows[rid] = cells
    by = {rid[:8] + rid[9:15]: c for rid, c in rows.items()}
    running, done, failed = by["20260312141503"], by["20260312150001"], by["20260313090000"]
    assert running["state"].startswith(STATE_ICONS["running"][0]) and running["step"] == "35/248"
    assert running["loss"] in ("6.1712", "6.171") and running["eval"] in ("6.3046", "6.305")
    assert done["state"].startswith(STATE_ICONS["done"][0]) and done["step"] == "1240/1240"
    assert done["loss"] in ("0.9123", "0.912") and done["eval"] in ("1.0456", "1.046")
    assert failed["state"].startswith(STATE_ICONS["failed"][0]) and failed["step"] == "3/124" and failed["eval"] == "-"
    return rows


@pytest.mark.parametrize("size", [(80, 24), (100, 30)], ids=["80x24", "100x30"])
async def test_the_runs_table_shows_state_steps_and_losses_at_any_width(train_ws, size):
    ids = fake_runs(train_ws)
    app = StudioApp(train_ws, screen="train")
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        await until(pilot, lambda: len(app.screen.query_one("#tr-runs").rows) == 3, "the runs listed")
        rows = check_runs_table(app.screen, ids)
        assert all(r["run"] for r in rows.values())


async def test_the_runs_table_is_laid_out_again_on_resize(train_ws):
    ids = fake_runs(train_ws)
    app = StudioApp(train_ws, screen="train")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await until(pilot, lambda: len(app.screen.query_one("#tr-runs").rows) == 3, "the runs listed")
        narrow = [str(k.value) for k in app.screen.query_one("#tr-runs").columns]
        await pilot.resize_terminal(160, 30)
        await settle(pilot)
        await pilot.pause(0.2)
        wide = [str(k.value) for k in app.screen.query_one("#tr-runs").columns]
        assert "method" not in narrow and "method" in wide, (narrow, wide)
        check_runs_table(app.screen, ids)
        run = dict(zip(wide, (c.plain if hasattr(c, "plain") else str(c)
                              for c in app.screen.query_one("#tr-runs").get_row(ids[0]))))["run"]
        assert run == ids[0] + " (UNTRAINED)"  # room for the whole id (a tiny base: untrained)


def test_short_run_names():
    from studio.screens.train import middle, short_run_name

    rid = "20260312-141503-smollm2-135m-instruct-lora"
    assert short_run_name(rid, 60) == rid
    assert short_run_name(rid, 30) == "smollm2-135m-instruct-lora"
    cut = short_run_name(rid, 12)
    assert len(cut) == 12 and cut.startswith("smoll") and cut.endswith("lora") and "…" in cut
    assert middle("abcdef", 1) == "…" and middle("abc", 3) == "abc"


# -- Augment: the dry run's count and cost first, nothing sent before Launch ---------------------------------
@pytest.fixture
def augment_ws(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    ws = make_workspace(tmp_path / "ws")
    server = FakeLLM().start()
    with open_workspace(ws, create=False) as w:
        configure(w, server, monkeypatch)
    yield ws, server
    server.stop()


def db(ws, sql: str):
    with open_workspace(ws, create=False) as w:
        return w.con.execute(sql).fetchall()


async def test_augment_asks_with_the_request_count_and_cost_and_sends_nothing_before(augment_ws):
    ws, server = augment_ws
    app = StudioApp(ws, screen="augment")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await fill(pilot, op="answers", lang="zh", n=2, max_cost="5")
        screen = app.screen
        est = screen.estimate
        assert est.requests == 8
        dialog = await open_confirmation(pilot)
        text = dialog_text(dialog)
        assert "Send 8 requests to fake" in text and "8: 8 to send" in text
        assert f"~${est.usd:.4f} expected, at most ${est.usd_max:.4f}" in text and server.base_url in text
        assert dialog.query_one("#cf-cap", Input).value == "5"  # the job's cap, editable
        assert server.total_requests() == 0
        await pilot.press("enter")  # Cancel has the focus
        await settle(pilot)
        assert dialog_of(app) is None and screen.job is None and server.total_requests() == 0
        assert db(ws, "SELECT count(*) FROM jobs") == [(0,)]
        await open_confirmation(pilot)
        await pilot.press("y")
        await until(pilot, lambda: screen.result is not None, "the job's end")
        assert screen.result.state == "done" and server.total_requests() == 8


async def test_the_cost_cap_of_the_confirmation_applies(augment_ws):
    ws, server = augment_ws
    app = StudioApp(ws, screen="augment")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await fill(pilot, op="answers", lang="zh", n=2)
        dialog = await open_confirmation(pilot)
        cap = dialog.query_one("#cf-cap", Input)
        assert cap.value == ""  # no cap in the form: none proposed
        cap.value = "0.000001"
        await pilot.click("#cf-launch")
        await until(pilot, lambda: app.screen.result is not None, "the job's end")
        result = app.screen.result
        assert result.state == "cancelled" and result.stop_reason == "budget"
    assert server.total_requests() == 0


async def test_language_5_is_a_field_error_and_starts_nothing(augment_ws, capsys):
    ws, server = augment_ws
    app = StudioApp(ws, screen="augment")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await fill(pilot, lang="5")
        screen = app.screen
        err = screen.query_one("#au-err-lang")
        assert err.has_class("-shown") and "not a language code" in plain(err.content)
        assert err.region.height >= 1 and err.region.y > screen.query_one("#au-lang").region.y  # under its field
        assert screen.query_one("#au-lang").has_class("-invalid")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert dialog_of(app) is None and screen.job is None
        assert "language" in plain(screen.query_one("#au-result").content)
        await fill(pilot, lang="en")
        assert not screen.query_one("#au-err-lang").has_class("-shown")
    assert server.total_requests() == 0 and db(ws, "SELECT count(*) FROM jobs") == [(0,)]
    from studio import cli

    assert cli.main(["augment", "answers", "-w", str(ws), "--lang", "5", "--dry-run"]) == 2  # the same check
    assert "--lang 5" in capsys.readouterr().err


async def test_a_filter_that_matches_nothing_launches_nothing(augment_ws):
    ws, server = augment_ws
    app = StudioApp(ws, screen="augment")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await fill(pilot, lang="fr")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert dialog_of(app) is None and app.screen.job is None
        assert "nothing to launch" in plain(app.screen.query_one("#au-result").content)
    assert server.total_requests() == 0 and db(ws, "SELECT count(*) FROM jobs") == [(0,)]


@pytest.mark.parametrize("width", [30, 40, 48, 70])
def test_past_jobs_and_usage_tables_choose_columns_by_width(width):
    from studio.screens.augment import jobs_table, usage_table

    jobs = [{"id": 12, "kind": "augment:answers", "state": "interrupted", "done": 130, "total": 274, "tokens": 123456,
             "usd": 0.0512}, {"id": 9, "kind": "augment:judge", "state": "done", "done": 8, "total": 8, "tokens": 900,
                              "usd": 0.001}]
    usage = [{"provider": "fake", "model": "fake-model-2025", "requests": 282, "cached": 3, "failed": 1,
              "prompt_tokens": 100000, "completion_tokens": 24356, "usd": 0.0522}]
    for table, must in ((jobs_table(jobs, width), ["12", "130/274", "$0.0512"]),
                        (usage_table(usage, width), ["fake", "282", "$0.0522"])):
        console = Console(file=io.StringIO(), width=width, record=True, color_system=None)
        console.print(table)
        text = console.export_text()
        assert "…" not in text and all(len(line.rstrip()) <= width for line in text.splitlines()), text
        for value in must:
            assert value in text, (value, text)
    jobs_text = plain(jobs_table(jobs, width))
    assert "interrupted" in jobs_text or "halted" in jobs_text  # a shorter word where space is short
    if width >= 70:
        assert "augment:answers" in jobs_text and "123,456" in jobs_text and "interrupted" in jobs_text


# -- the Playground: quitting waits for no thread; runs appear; no type-ahead ---------------------------------
@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    from tests._tiny_lora import build_base

    return build_base(tmp_path_factory.mktemp("tiny-base") / "base")


def tiny_run(ws, name: str, base) -> None:
    from tests._tiny_lora import make_run

    make_run(ws / "runs", name, base)


@pytest.fixture
def pg_ws(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return make_workspace(tmp_path / "ws")


async def test_quitting_after_the_playground_loaded_a_model_waits_for_no_thread(pg_ws, tiny_base, monkeypatch):
    """A generation still running when the studio quits is told to stop and not waited for: its thread is a
    daemon (not the event loop's executor, whose threads the interpreter joins), and quitting neither
    joins it nor releases the model."""
    import training.inference

    tiny_run(pg_ws, "tiny-a", tiny_base)
    started, release = threading.Event(), threading.Event()
    seen: dict = {}

    def slow_stream(session, messages, **kw):
        seen["thread"] = threading.current_thread()
        yield "base", "first piece"
        started.set()
        release.wait(60)  # a long answer: quitting must not wait for it
        yield "adapter", "late piece"

    monkeypatch.setattr(training.inference, "chat_pair_stream", slow_stream)
    app = StudioApp(pg_ws, screen="playground")
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            screen = app.screen
            await until(pilot, lambda: screen.session is not None, "the tiny model loaded", timeout=60)
            box = screen.query_one("#pg-prompt", Input)
            box.focus()
            box.value = "Tell me a long story."
            await pilot.press("enter")
            await until(pilot, lambda: started.is_set(), "the generation's first piece")
            stop = screen._stop
        # the app has quit: the generation thread was told to stop and is still running (not joined)
        assert stop.is_set() and screen.session is None
        assert seen["thread"].daemon and seen["thread"].is_alive()
    finally:
        release.set()
    seen["thread"].join(10)
    assert not seen["thread"].is_alive()


def test_the_studio_exits_without_the_interpreter_teardown_once_torch_is_loaded(tmp_path, monkeypatch):
    """With torch loaded, a quit from a terminal ends the process at once (the teardown took 1-4 s)."""
    import studio.app as app_mod

    calls: list[int] = []
    monkeypatch.setattr(app_mod.os, "_exit", calls.append)
    app = StudioApp(tmp_path / "ws")
    monkeypatch.setitem(sys.modules, "torch", sys.modules.get("torch") or object())
    app.exit_without_teardown()
    assert calls == [0]
    monkeypatch.delitem(sys.modules, "torch")
    app.exit_without_teardown()
    assert calls == [0]  # nothing heavy loaded: a normal exit


async def test_a_run_that_finishes_appears_in_the_playground(pg_ws, tiny_base, monkeypatch):
    import studio.screens.playground as pg

    monkeypatch.setattr(pg, "RUNS_POLL_S", 0.2)
    app = StudioApp(pg_ws, screen="playground")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        box = app.screen.query_one("#pg-run", Select)
        assert box.value is Select.NULL
        await asyncio.to_thread(tiny_run, pg_ws, "finished-later", tiny_base)
        await until(pilot, lambda: box.value == "finished-later", "the finished run in the list", timeout=30)
        await until(pilot, lambda: app.screen.session is not None, "its model loaded", timeout=60)


async def test_typed_text_on_the_run_list_picks_no_run(pg_ws, tiny_base):
    tiny_run(pg_ws, "alpha-run", tiny_base)
    await asyncio.sleep(0.05)  # list_runs orders by mtime: zeta-run is the newest
    tiny_run(pg_ws, "zeta-run", tiny_base)
    app = StudioApp(pg_ws, screen="playground")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await until(pilot, lambda: screen.session is not None, "the model loaded", timeout=60)
        box = screen.query_one("#pg-run", Select)
        assert box.value == "zeta-run" and app.focused is box
        await pilot.press("enter", "a", "l", "enter")  # the list opens; typed letters must not pick alpha-run
        await settle(pilot)
        assert box.value == "zeta-run"
