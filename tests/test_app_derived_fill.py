"""A command-line import leaves the language and the search column of its rows to a background
job (curation.store.fill_derived): the studio starts it when it opens the workspace, shows its
progress, and Home's languages panel counts the detected languages when it ends. Real app (Pilot),
real DuckDB workspace, a file the fast import takes."""
from __future__ import annotations

import json
import threading

from curation import store
from curation.importers import import_paths
from curation.workspace import open_workspace
from studio.app import StudioApp
from studio.screens._curation import DERIVED_JOB
from tests.test_app_launch import settle, until
from tests.test_app_review import plain

ROWS = ([{"instruction": f"解释一下第{i}个概念是什么？", "output": f"这是第{i}个概念的中文解释。"} for i in range(30)]
        + [{"instruction": f"Explain concept {i}.", "output": f"Concept {i} is explained here in English."} for i in range(70)])


async def test_the_studio_fills_languages_a_command_line_import_left_and_home_counts_them(tmp_path, monkeypatch):
    src = tmp_path / "rows.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS), encoding="utf-8")
    ws_path = tmp_path / "ws"
    with open_workspace(ws_path) as ws:
        assert import_paths(ws, [src]).files[0].fast_path
        assert store.derived_missing(ws.con)[0] == len(ROWS)
    seen_jobs: list[str] = []
    run_job = StudioApp.run_job

    def spy(self, kind, *args, **kwargs):  # the job may start and end between two looks at app.jobs
        seen_jobs.append(kind)
        return run_job(self, kind, *args, **kwargs)

    monkeypatch.setattr(StudioApp, "run_job", spy)
    go = threading.Event()  # the fill waits until Home has shown the rows as not yet detected
    fill = store.fill_derived
    monkeypatch.setattr(store, "fill_derived", lambda *a, **k: go.wait(60) and fill(*a, **k))
    app = StudioApp(ws_path, screen="home")
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: "detecting" in plain(app.screen.query_one("#home-languages").content), "Home's 'detecting'")
        go.set()
        await until(pilot, lambda: app.engine.write(lambda w: store.derived_missing(w.con)).result()[0] == 0, "the fill job")
        await settle(pilot)
        await until(pilot, lambda: "zh" in plain(app.screen.query_one("#home-languages").content), "Home's languages")
        panel = plain(app.screen.query_one("#home-languages").content)
        counts = dict(app.engine.reader().execute("SELECT lang, count(*) FROM samples GROUP BY lang").fetchall())
    assert counts == {"zh": 30, "en": 70}
    assert "70" in panel and "30" in panel and "(none)" not in panel and "detecting" not in panel
    assert DERIVED_JOB in seen_jobs
