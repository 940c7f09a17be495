"""What Home and Review look like at 80x24 and 120x40 on the small fixed workspace. Update after
an intended change with `pytest tests/test_app_snapshots.py --snapshot-update` and look at the
SVGs in tests/__snapshots__/ before committing them."""
from __future__ import annotations

import pytest

from studio.app import StudioApp
from tests._studio_ws import make_workspace
from tests.test_app_review import settle


@pytest.fixture
def studio_ws(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return make_workspace(tmp_path / "ws")


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_home(snap_compare, studio_ws, size):
    assert snap_compare(StudioApp(studio_ws), terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_review(snap_compare, studio_ws, size):
    async def walk(pilot):
        await settle(pilot)
        await pilot.press("j", "a", "space", "j")  # approve #2, select #3, stand on #4 (flags)
        await settle(pilot)

    assert snap_compare(StudioApp(studio_ws, screen="review"), terminal_size=size, run_before=walk)


def test_filter_dialog(snap_compare, studio_ws):
    """The filter dialog at 100x30: two columns of compact fields, the buttons and the keys visible."""
    async def open_filter(pilot):
        await settle(pilot)
        await pilot.press("f")
        await settle(pilot)

    assert snap_compare(StudioApp(studio_ws, screen="review"), terminal_size=(100, 30), run_before=open_filter)
