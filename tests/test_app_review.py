"""The review story through the real app (Pilot) on a real DuckDB workspace: walk, approve,
reject, undo, search, select, bulk actions, edit; what lands in the file is what the keys meant."""
from __future__ import annotations

import io

import pytest
from rich.console import Console

from curation.workspace import open_workspace
from studio.app import StudioApp
from studio.widgets.sample_list import SampleList
from tests._studio_ws import make_workspace


def plain(renderable) -> str:
    console = Console(file=io.StringIO(), width=200, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


@pytest.fixture
def studio_ws(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return make_workspace(tmp_path / "ws")


DIALOG_GROUPS = {"bulk", "edit", "filter"}  # workers that wait on a dialog the test answers


async def settle(pilot) -> None:
    """Let every data worker finish (pages, counts, details, writes), then one more frame."""
    for _ in range(3):
        await pilot.pause()
        busy = [w for w in pilot.app.workers if not w.is_finished and w.group not in DIALOG_GROUPS]
        if busy:  # (an empty list would mean "wait for all")
            await pilot.app.workers.wait_for_complete(busy)
    await pilot.pause()


def statuses(path) -> dict[int, str]:
    with open_workspace(path, create=False) as ws:
        return dict(ws.con.execute("SELECT id, status FROM samples ORDER BY id").fetchall())


def detail_text(app) -> str:
    return plain(app.screen.query_one("#sample-detail").content)


async def test_approve_three_reject_one_undo_one(studio_ws):
    app = StudioApp(studio_ws, screen="review")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        for key in "aaar":
            await pilot.press(key)
        await settle(pilot)
        lst = app.screen.query_one(SampleList)
        assert [lst.row_at(i).status for i in range(4)] == ["approved"] * 3 + ["rejected"]
        assert lst.cursor == 4  # the cursor moved on after each decision
        await pilot.press("u")
        await settle(pilot)
        assert lst.row_at(3).status == "pending"
    got = statuses(studio_ws)
    assert got == {i: ("approved" if i <= 3 else "pending") for i in range(1, 13)}


async def test_j_and_k_move_and_show_the_sample(studio_ws):
    app = StudioApp(studio_ws, screen="review")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        assert "You are terse." in detail_text(app)
        await pilot.press("j", "j", "j", "k")
        await settle(pilot)
        assert app.screen.query_one(SampleList).cursor == 2
        text = detail_text(app)
        assert "#3" in text and "用中文解释第3个概念" in text and "这是第3个回答。" in text


async def test_search_filters_the_list(studio_ws):
    app = StudioApp(studio_ws, screen="review")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("slash", *"中文", "enter")
        await settle(pilot)
        lst = app.screen.query_one(SampleList)
        assert lst.total == 4
        assert [lst.row_at(i).id for i in range(4)] == [3, 6, 9, 12]
        await pilot.press("x")  # clear
        await settle(pilot)
        assert lst.total == 12


async def test_escape_sequences_and_markup_in_data_are_shown_not_run(studio_ws):
    app = StudioApp(studio_ws, screen="review")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press(*"jjjj")
        await settle(pilot)
        lst = app.screen.query_one(SampleList)
        line = "".join(seg.text for seg in lst.render_line(4))
        assert "\x1b" not in line and "\\x1b[31mred" in line
        text = detail_text(app)
        assert "\\x1b[31mred\\x1b[0m and [bold]bold[/bold] text" in text


async def test_select_a_range_and_bulk_approve(studio_ws):
    app = StudioApp(studio_ws, screen="review")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("j", "space", "j", "j", "v")  # rows 2..4
        await settle(pilot)
        await pilot.press("j", "j", "space")            # and row 6
        assert app.screen.query_one(SampleList).selected == {2, 3, 4, 6}
        await pilot.press("A")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
    got = statuses(studio_ws)
    assert {i for i, s in got.items() if s == "approved"} == {2, 3, 4, 6}


async def test_reject_everything_matching_a_filter(studio_ws):
    app = StudioApp(studio_ws, screen="review")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("slash", *"中文", "enter")
        await settle(pilot)
        await pilot.press("asterisk", "R")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
    got = statuses(studio_ws)
    assert {i for i, s in got.items() if s == "rejected"} == {3, 6, 9, 12}
    assert {s for i, s in got.items() if i not in {3, 6, 9, 12}} == {"pending"}


async def test_edit_in_app_saves_a_new_version(studio_ws):
    app = StudioApp(studio_ws, screen="review")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("j", "e")
        await settle(pilot)
        area = app.screen.query_one("#edit-text")
        area.text = area.text.replace("Concept 2 is explained here.", "Concept two, explained better.")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "Concept two, explained better." in detail_text(app)
    with open_workspace(studio_ws, create=False) as ws:
        assert ws.con.execute("SELECT answer, version FROM samples WHERE id = 2").fetchone() == ("Concept two, explained better.", 2)


async def test_bad_json_in_the_editor_is_refused_with_its_line(studio_ws):
    app = StudioApp(studio_ws, screen="review")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("e")
        await settle(pilot)
        app.screen.query_one("#edit-text").text = '{"messages": [\n  oops\n]}'
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "line 2" in plain(app.screen.query_one("#edit-error").content)
        await pilot.press("escape")
        await settle(pilot)
    with open_workspace(studio_ws, create=False) as ws:
        assert ws.con.execute("SELECT version FROM samples WHERE id = 1").fetchone() == (1,)
