"""The Augment screen through the real app (Pilot) against a real OpenAI-compatible HTTP server on
127.0.0.1 (tests/llm_server.py): the dry run counts requests and sends nothing, a launch lands
pending generated samples with their parent, a cancel stops a slow job early, and the screen's
look at 120x40 is fixed by a snapshot."""
from __future__ import annotations

import asyncio
import time

import pytest
from textual.widgets import Input, Select

from curation.augment.providers import Provider, add_provider
from curation.workspace import open_workspace
from studio.app import StudioApp
from tests._studio_ws import make_workspace
from tests.augment_helpers import FAKE_KEY, FAKE_KEY_ENV, configure
from tests.llm_server import FakeLLM
from tests.test_app_curation_screens import db, settle
from tests.test_app_review import plain

ZH_SAMPLES = 4  # make_workspace: samples 3, 6, 9, 12 are Chinese, none a duplicate


@pytest.fixture
def studio_ws(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    return make_workspace(tmp_path / "ws")


def serve(studio_ws, monkeypatch, latency: float = 0.0, **kw) -> FakeLLM:
    server = FakeLLM(latency=latency).start()
    with open_workspace(studio_ws, create=False) as ws:
        configure(ws, server, monkeypatch, **kw)
    return server


async def fill(pilot, **values) -> None:
    """Set form fields by id suffix (`op="answers"`, `lang="zh"`) and wait for the estimate."""
    screen = pilot.app.screen
    for name, value in values.items():
        widget = screen.query_one(f"#au-{name.replace('_', '-')}")
        if isinstance(widget, Select):
            widget.value = value
        else:
            assert isinstance(widget, Input)
            widget.value = str(value)
    await settle(pilot)


async def wait_for(predicate, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.05)


async def launch(pilot) -> None:
    """Ctrl+S, then Launch in the confirmation it opens (the dry run first: nothing is sent before)."""
    await pilot.press("ctrl+s")
    await wait_for(lambda: type(pilot.app.screen).__name__ == "LaunchConfirmScreen", "the launch confirmation", 10)
    await pilot.pause()
    await pilot.press("y")
    await pilot.pause()


async def start_slow_job(pilot, server) -> int:
    """On the Augment screen of a slow server (0.4 s a request, two at a time): launch answers x2
    on every sample and wait for the first request. Returns the job's request count."""
    await settle(pilot)
    await fill(pilot, op="answers", n=2)
    total = pilot.app.screen.estimate.requests
    assert total >= 20  # about 5 s of requests
    await launch(pilot)
    await wait_for(lambda: server.total_requests() >= 1, "the first request", timeout=5)
    return total


async def test_dry_run_counts_requests_and_sends_nothing(studio_ws, monkeypatch):
    server = serve(studio_ws, monkeypatch)
    try:
        app = StudioApp(studio_ws, screen="augment")
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            screen = app.screen
            assert screen.query_one("#au-provider", Select).value == "fake"
            await fill(pilot, op="answers", lang="zh", n=2)
            assert screen.estimate.requests == ZH_SAMPLES * 2 and screen.estimate.cached == 0
            shown = plain(screen.query_one("#au-estimate").content)
            assert "requests" in shown and f"{ZH_SAMPLES * 2}" in shown and "USD max" in shown
            await fill(pilot, n=3, limit=2)
            assert screen.estimate.requests == 2 * 3
            assert f"{2 * 3}" in plain(screen.query_one("#au-estimate").content)
        assert server.total_requests() == 0
    finally:
        server.stop()
    assert db(studio_ws, "SELECT count(*) FROM samples") == [(12,)]
    assert db(studio_ws, "SELECT count(*) FROM jobs") == [(0,)]


async def test_launch_lands_pending_generated_samples(studio_ws, monkeypatch):
    server = serve(studio_ws, monkeypatch)
    try:
        app = StudioApp(studio_ws, screen="augment")
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            await fill(pilot, op="answers", lang="zh", n=2)
            await launch(pilot)
            await settle(pilot, rounds=50)
            screen = app.screen
            assert screen.job is None and screen.result is not None
            assert screen.result.state == "done" and len(screen.result.new_sample_ids) == ZH_SAMPLES * 2
            summary = plain(screen.query_one("#au-result").content)
            landing = screen.result.landing["summary"]  # what landed and what was dropped, as the CLI says
            assert landing.startswith(f"{ZH_SAMPLES * 2} ") and "landed as pending" in landing, landing
            assert landing in summary and "0 failed" in summary
            assert f"requests {ZH_SAMPLES * 2}/{ZH_SAMPLES * 2}" in plain(screen.query_one("#au-status-line").content)
            assert "augment:answers" in plain(screen.query_one("#au-jobs").content)
            assert "fake-model" in plain(screen.query_one("#au-usage").content)
            await pilot.press("1")  # Home lists the augment job beside the other jobs
            await settle(pilot)
            activity = plain(app.screen.query_one("#home-activity").content)
            assert f"job {screen.result.job_id} augment:answers" in activity and "done" in activity
        assert server.total_requests() == ZH_SAMPLES * 2
    finally:
        server.stop()
    rows = db(studio_ws, "SELECT status, parent_id, operation FROM samples WHERE id > 12")
    assert len(rows) == ZH_SAMPLES * 2
    assert {r[0] for r in rows} == {"pending"} and {r[2] for r in rows} == {"augment:answers"}
    assert {r[1] for r in rows} == {3, 6, 9, 12}
    assert db(studio_ws, "SELECT count(*) FROM samples") == [(12 + ZH_SAMPLES * 2,)]


async def test_cancel_stops_a_slow_job(studio_ws, monkeypatch):
    server = serve(studio_ws, monkeypatch, latency=0.4, concurrency=2)
    try:
        app = StudioApp(studio_ws, screen="augment")
        async with app.run_test(size=(120, 40)) as pilot:
            total = await start_slow_job(pilot, server)
            app.screen.query_one("#au-go").focus()
            await pilot.press("escape")
            await settle(pilot, rounds=50)
            result = app.screen.result
            assert result is not None and result.state == "cancelled" and result.stop_reason == "cancelled"
            assert result.sent < total
            assert "cancelled" in plain(app.screen.query_one("#au-result").content)
        assert server.total_requests() < total
    finally:
        server.stop()
    assert db(studio_ws, "SELECT state FROM jobs") == [("cancelled",)]


async def test_review_keys_apply_while_an_augment_job_runs(studio_ws, monkeypatch):
    """The job writes on a connection of its own (Engine.job_workspace): an approve in Review lands
    at once, not after minutes of requests queued on the writer thread."""
    server = serve(studio_ws, monkeypatch, latency=0.4, concurrency=2)

    def approved() -> int:
        return app.engine.reader().execute("SELECT count(*) FROM samples WHERE status = 'approved'").fetchone()[0]

    try:
        app = StudioApp(studio_ws, screen="augment")
        async with app.run_test(size=(120, 40)) as pilot:
            total = await start_slow_job(pilot, server)
            aug = app.screen
            await pilot.press("2")
            await wait_for(lambda: type(app.screen).__name__ == "ReviewScreen", "the Review screen")
            await pilot.pause(0.5)
            before = approved()
            await pilot.press("a")
            await wait_for(lambda: approved() == before + 1, "the approve, while the job runs", timeout=3)
            assert aug.job is not None and server.total_requests() < total  # the job is still running
            await wait_for(lambda: aug.job is None, "the job's end")
            assert aug.result.state == "done" and len(aug.result.new_sample_ids) == total
            assert approved() == before + 1
    finally:
        server.stop()
    assert db(studio_ws, "SELECT state FROM jobs") == [("done",)]


def test_augment_screen_snapshot(snap_compare, studio_ws, monkeypatch):
    monkeypatch.setenv(FAKE_KEY_ENV, FAKE_KEY)
    with open_workspace(studio_ws, create=False) as ws:  # never contacted: the dry run sends nothing
        add_provider(ws, Provider(name="fake", base_url="http://127.0.0.1:9/v1", model="fake-model",
                                  api_key_env=FAKE_KEY_ENV, input_usd_per_mtok=2.0, output_usd_per_mtok=8.0))
    assert snap_compare(StudioApp(studio_ws, screen="augment"), terminal_size=(120, 40), run_before=settle)


async def test_quitting_cancels_a_running_job(studio_ws, monkeypatch):
    server = serve(studio_ws, monkeypatch, latency=0.4, concurrency=2)
    try:
        app = StudioApp(studio_ws, screen="augment")
        async with app.run_test(size=(120, 40)) as pilot:
            total = await start_slow_job(pilot, server)
        assert server.total_requests() < total
    finally:
        server.stop()
    assert db(studio_ws, "SELECT state FROM jobs") == [("cancelled",)]


async def test_samples_selected_in_review(studio_ws, monkeypatch):
    server = serve(studio_ws, monkeypatch)
    try:
        app = StudioApp(studio_ws, screen="review")
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            await pilot.press("space", "j", "j", "space")  # samples 1 and 3
            await settle(pilot)
            await pilot.press("7")
            await settle(pilot)
            assert app.current_mode == "augment"
            await fill(pilot, op="answers", n=1, **{"from": "review"})
            assert app.screen.estimate.requests == 2
            assert "2 selected in Review" in plain(app.screen.query_one("#au-estimate").content)
            await launch(pilot)
            await settle(pilot, rounds=50)
            assert app.screen.result.state == "done"
            # `o` opens Review (already open here: a Review made on this key loads its first pages
            # in a thread that reads the list's geometry, which races the screen's first layout)
            await pilot.press("o")
            await settle(pilot, rounds=50)
            assert app.current_mode == "review"
            review = app.screen
            deadline = time.monotonic() + 5  # let Review's page loads finish before the app closes
            while (review.list.flt.status != "pending" or review.list.total != 12 + 2) \
                    and time.monotonic() < deadline:
                await settle(pilot)
            assert review.list.flt.status == "pending" and review.list.total == 12 + 2
            await settle(pilot)
        assert server.total_requests() == 2
    finally:
        server.stop()
    assert db(studio_ws, "SELECT parent_id FROM samples WHERE id > 12 ORDER BY parent_id") == [(1,), (3,)]


async def test_a_missing_key_is_said_where_the_user_looks_and_nothing_is_sent(studio_ws, monkeypatch):
    server = serve(studio_ws, monkeypatch)
    monkeypatch.delenv(FAKE_KEY_ENV)
    try:
        app = StudioApp(studio_ws, screen="augment")
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            await fill(pilot, op="judge", limit=2)
            assert app.screen.estimate.requests == 2  # the dry run needs no key
            await launch(pilot)
            await settle(pilot, rounds=50)
            message = plain(app.screen.query_one("#au-result").content)
            assert FAKE_KEY_ENV in message and "not set" in message and app.screen.job is None
        assert server.total_requests() == 0
    finally:
        server.stop()
