"""The studio's shell through the real app: Home's counts, the help screen and palette generated
from the one action registry, themes saved in the config folder, a held workspace explained, and
`studio --serve` answering on 127.0.0.1 only."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from studio.app import StudioApp, WorkspaceErrorScreen
from studio.bindings import all_actions, key_display
from tests._studio_ws import make_workspace
from tests.conftest import ROOT
from tests.test_app_review import plain, settle, statuses


@pytest.fixture
def studio_ws(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return make_workspace(tmp_path / "ws")


async def test_home_shows_the_workspace_counts(studio_ws):
    app = StudioApp(studio_ws)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        samples = plain(app.screen.query_one("#home-samples").content)
        assert "pending" in samples and " 12" in samples
        assert "en" in plain(app.screen.query_one("#home-languages").content)
        sources = plain(app.screen.query_one("#home-sources").content)
        assert "chat_en.jsonl" in sources and "alpaca_zh.json" in sources
        flags = plain(app.screen.query_one("#home-flags").content)
        assert "answer_too_short" in flags and "contains_url" in flags
        assert "marked duplicate" in plain(app.screen.query_one("#home-duplicates").content)
        assert app.sub_title.startswith("ws · 12 samples · 12 pending")


async def test_home_lists_jobs_and_runs(studio_ws):
    (studio_ws / "runs" / "2026-01-01-lora").mkdir(parents=True)
    (studio_ws / "runs" / "2026-01-01-lora" / "status.json").write_text(json.dumps({"state": "running", "step": 7, "max_steps": 50}))
    (studio_ws / "runs" / "2026-01-02-broken").mkdir()
    from curation.workspace import open_workspace

    with open_workspace(studio_ws) as ws:
        ws.con.execute("INSERT INTO jobs (id, kind, state, done, total) VALUES (1, 'dedup', 'done', 12, 12)")
    app = StudioApp(studio_ws)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        activity = plain(app.screen.query_one("#home-activity").content)
        assert "job 1 dedup" in activity and "12/12" in activity
        assert "run 2026-01-01-lora" in activity and "7/50" in activity
        assert "unreadable" in activity


async def test_help_lists_every_registry_action(studio_ws):
    app = StudioApp(studio_ws)
    async with app.run_test(size=(120, 60)) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        text = plain(app.screen.query_one("#help-table").content)
        for action in all_actions():
            assert action.id in text and action.description in text and key_display(action.keys) in text


async def test_palette_finds_an_action_and_runs_it(studio_ws):
    app = StudioApp(studio_ws)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"review approve")
        await pilot.pause(0.5)
        from textual.command import CommandList

        options = app.screen.query_one(CommandList)
        first = str(options.get_option_at_index(0).prompt)
        assert "Review: Approve" in first
        await pilot.press("enter")
        await settle(pilot)
        assert app.current_mode == "review"
    assert statuses(studio_ws)[1] == "approved"


async def test_screen_keys_switch_screens(studio_ws):
    app = StudioApp(studio_ws)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        assert type(app.screen).__name__ == "ReviewScreen"
        await pilot.press("1")
        await settle(pilot)
        assert type(app.screen).__name__ == "HomeScreen"


async def test_theme_choice_is_saved_in_the_config_folder(studio_ws, tmp_path):
    app = StudioApp(studio_ws)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        app.theme = "nord"
        await pilot.pause()
    saved = json.loads((tmp_path / "config" / "finetune-studio" / "settings.json").read_text())
    assert saved["theme"] == "nord"
    again = StudioApp(studio_ws)
    async with again.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        assert again.theme == "nord"


async def test_a_workspace_held_by_another_process_is_explained(studio_ws):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from curation.workspace import open_workspace; "
         "ws = open_workspace(sys.argv[1]); print('ready', flush=True); time.sleep(60)", str(studio_ws)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        app = StudioApp(studio_ws)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            assert isinstance(app.screen, WorkspaceErrorScreen)
            assert f"process {holder.pid}" in app.screen.message
            await pilot.press("q")
        assert app.return_code == 0
    finally:
        holder.kill()
        holder.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_answers_on_localhost_only(studio_ws):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "studio.cli", "--workspace", str(studio_ws), "--serve", "--port", str(port)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url = next(word for line in proc.stderr for word in line.split() if "?token=" in word)
        deadline = time.monotonic() + 20
        while True:
            try:
                page = urllib.request.urlopen(url, timeout=2).read().decode()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        assert "THE STUDIO" in page
        with pytest.raises(urllib.error.HTTPError, match="403"):  # the page without its token
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
        listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout
        local = [line.split()[3] for line in listening.splitlines()]
        assert local == [f"127.0.0.1:{port}"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
