"""Long work from the studio: a job runs in a worker while the interface keeps answering, and
ctrl+x (from the one key registry) cancels it at its next safe point."""
from __future__ import annotations

import asyncio
import threading

import pytest

from curation.errors import Cancelled
from studio.app import StudioApp
from tests._studio_ws import make_workspace
from tests.test_app_review import settle


@pytest.fixture
def studio_ws(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return make_workspace(tmp_path / "ws")


async def test_ctrl_x_cancels_a_running_job_and_the_ui_keeps_answering(studio_ws):
    started, finished = threading.Event(), threading.Event()
    outcome: dict = {}

    def slow(job):
        job.set_total(10_000)
        started.set()
        try:
            for _ in range(10_000):
                threading.Event().wait(0.01)
                job.advance(1)
        except Cancelled as exc:
            outcome["cancelled"] = str(exc)
            raise
        finally:
            finished.set()

    app = StudioApp(studio_ws)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        app.run_job("slow", slow)
        for _ in range(100):
            if started.is_set():
                break
            await asyncio.sleep(0.05)
        assert app.jobs, "the job should be listed while it runs"
        await pilot.press("2")  # the interface answers while the job runs
        for _ in range(40):
            await pilot.pause(0.05)
            if app.current_mode == "review":
                break
        assert app.current_mode == "review" and not finished.is_set()
        await pilot.press("ctrl+x")
        for _ in range(100):
            if finished.is_set():
                break
            await asyncio.sleep(0.05)
        await pilot.pause()
        assert "cancelled" in outcome.get("cancelled", "")
        assert not app.jobs
