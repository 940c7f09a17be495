"""The studio's first hour through the real app (Pilot, 80x24 unless a size says otherwise): number
keys switch screens from every screen instead of being typed into a field, Escape leaves a field
before it closes anything, the filter dialog fits, the Review detail follows a bulk action, undo
says what it undid, the quality histogram is laid out around the threshold, an empty workspace
says how to import, and engine errors name the app's fields instead of command-line flags
(issue 15, items 1, 3 and 5)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from textual.widgets import Input

from curation import quality
from curation.augment import providers
from curation.samples import chat
from curation.store import insert_samples
from curation.workspace import open_workspace
from studio.app import StudioApp
from studio.bindings import SCREENS
from studio.widgets.sample_list import SampleList
from tests._studio_ws import make_workspace
from tests.test_app_curation_screens import move_to_rule
from tests.test_app_curation_screens import settle as settle_screens
from tests.test_app_eval_screen import record_notifications
from tests.test_app_review import detail_text, plain

ROOT = Path(__file__).resolve().parent.parent
SMALL = (80, 24)


@pytest.fixture
def studio_ws(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return make_workspace(tmp_path / "ws")


DIALOG_GROUPS = {"bulk", "edit", "filter", "dedup-dialog"}  # workers that wait on a dialog the test answers


async def settle(pilot, rounds: int = 20) -> None:
    await settle_screens(pilot, rounds, DIALOG_GROUPS)


def key_of(name: str) -> str:
    return next(s.key for s in SCREENS if s.name == name)


async def press_and_settle(pilot, *keys: str) -> None:
    for key in keys:
        await pilot.press(key)
        await settle(pilot)


# -- 1. number keys and Escape ------------------------------------------------------------------------
async def test_number_keys_switch_from_export_and_import_and_type_nothing(studio_ws):
    app = StudioApp(studio_ws, screen="export")
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        name = app.screen.query_one("#ex-name", Input)
        assert name.value == "v1" and not isinstance(app.focused, Input)
        await press_and_settle(pilot, "7")
        assert app.current_mode == "augment"
        await press_and_settle(pilot, "5")
        assert app.current_mode == "export" and name.value == "v1"  # was "v17": the 7 went into the name
        await press_and_settle(pilot, "6")
        assert app.current_mode == "import"
        path = app.screen.query_one("#im-path", Input)
        await press_and_settle(pilot, "7")
        assert app.current_mode == "augment"
        await press_and_settle(pilot, "6")
        assert app.current_mode == "import" and path.value == ""
        assert not isinstance(app.focused, Input)


async def test_every_screen_and_the_help_switch_with_number_keys(studio_ws):
    order = [s.name for s in SCREENS] + ["home"]  # 1 2 3 4 5 6 7 8 9 0, then back to 1
    app = StudioApp(studio_ws, screen="home")
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        for name in order:
            await press_and_settle(pilot, key_of(name))
            assert app.current_mode == name, f"{key_of(name)} from {app.current_mode} should open {name}"
            assert not isinstance(app.focused, Input), f"{name} arrived in a text field"
        await press_and_settle(pilot, "question_mark")
        assert type(app.screen).__name__ == "HelpScreen"
        await press_and_settle(pilot, key_of("review"))  # the help closes and the screen opens
        assert app.current_mode == "review" and type(app.screen).__name__ == "ReviewScreen"


async def test_escape_leaves_a_field_and_a_second_escape_does_the_screens_escape(studio_ws):
    app = StudioApp(studio_ws, screen="export")
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        await press_and_settle(pilot, "i")  # into the first field
        name = app.screen.query_one("#ex-name", Input)
        assert app.focused is name and name.value == "v1"
        await press_and_settle(pilot, "escape")
        assert app.focused is None and name.value == "v1"
        await press_and_settle(pilot, "6")
        assert app.current_mode == "import"

        await press_and_settle(pilot, key_of("review"))
        await press_and_settle(pilot, "slash", "x")
        box = app.screen.query_one("#review-search", Input)
        assert app.focused is box and box.value == "x"
        await press_and_settle(pilot, "escape")  # the search box closes; the list has the keys again
        assert isinstance(app.focused, SampleList) and not box.has_class("-open")
        assert app.screen.query_one(SampleList).flt.search is None

        await press_and_settle(pilot, "f")
        dialog = app.screen
        assert type(dialog).__name__ == "FilterScreen"
        dialog.query_one("#f-min", Input).focus()
        await press_and_settle(pilot, "4", "escape")
        assert app.screen is dialog and not isinstance(app.focused, Input)  # out of the field, still open
        await press_and_settle(pilot, "escape")
        assert type(app.screen).__name__ == "ReviewScreen"  # the second Escape cancels
        assert app.screen.query_one(SampleList).flt.min_score is None

        await press_and_settle(pilot, "ctrl+p")  # the command palette keeps its own Escape: it closes
        assert type(app.screen).__name__ == "CommandPalette"
        await press_and_settle(pilot, "escape")
        assert type(app.screen).__name__ == "ReviewScreen"


async def test_the_playground_arrives_outside_its_prompt(studio_ws):
    app = StudioApp(studio_ws, screen="playground")
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        prompt = app.screen.query_one("#pg-prompt", Input)
        await press_and_settle(pilot, "7")
        assert app.current_mode == "augment" and prompt.value == ""
        await press_and_settle(pilot, "9", "i")
        assert app.focused is prompt
        await press_and_settle(pilot, "escape", "8")
        assert app.current_mode == "train" and prompt.value == ""


# -- 3. dialogs fit ----------------------------------------------------------------------------------
FILTER_FIELDS = ("#f-status", "#f-flag", "#f-source", "#f-lang", "#f-dups", "#f-cluster", "#f-min", "#f-max")


@pytest.mark.parametrize("size", [(80, 24), (100, 30)], ids=["80x24", "100x30"])
async def test_the_filter_dialog_shows_every_field_and_its_buttons(studio_ws, size):
    app = StudioApp(studio_ws, screen="review")
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        await press_and_settle(pilot, "f")
        screen = app.screen
        assert type(screen).__name__ == "FilterScreen"
        apply = screen.query_one("#apply")
        for sel in FILTER_FIELDS + ("#apply", "#cancel"):
            widget = screen.query_one(sel)
            region = widget.region
            assert region.height >= 1 and screen.region.contains_region(region), (sel, region)
            if sel not in ("#apply", "#cancel"):
                assert region.bottom <= apply.region.y, (sel, region, apply.region)  # not under the buttons
        assert "Ctrl+S" in plain(screen.query_one("#filter-title").content)
        assert ("Esc" in str(apply.label) or "Esc" in str(screen.query_one("#cancel").label))
        if size[0] >= 100:  # two columns of label + field
            assert screen.query_one("#f-flag").region.y == screen.query_one("#f-status").region.y
        await press_and_settle(pilot, "ctrl+s")
        assert type(app.screen).__name__ == "ReviewScreen"


async def test_every_dialog_fits_80x24(studio_ws):
    app = StudioApp(studio_ws, screen="review")
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)

        async def fits(open_keys: tuple[str, ...], dialog_id: str, close: tuple[str, ...]) -> None:
            await press_and_settle(pilot, *open_keys)
            screen = app.screen
            dialog = screen.query_one(dialog_id)
            assert screen.region.contains_region(dialog.region), (dialog_id, dialog.region)
            for button in screen.query("Button"):
                assert screen.region.contains_region(button.region) and button.region.height, (dialog_id, button.id)
            await press_and_settle(pilot, *close)
            assert not screen.is_active

        await fits(("f",), "#filter-dialog", ("escape",))
        await fits(("space", "A"), ".dialog", ("n",))                   # confirm a bulk approve
        await fits(("e",), "#edit-dialog", ("escape", "escape"))          # the text first, then discard
        await fits(("question_mark",), "#help-dialog", ("escape",))
        await press_and_settle(pilot, key_of("duplicates"))
        await fits(("d",), "#dedup-dialog", ("escape", "escape"))         # the threshold field first


# -- 5. stale or unclear state ----------------------------------------------------------------------
async def test_the_detail_says_approved_after_a_bulk_approve(studio_ws):
    app = StudioApp(studio_ws, screen="review")
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        assert "pending" in detail_text(app)
        await press_and_settle(pilot, "asterisk", "A")
        await press_and_settle(pilot, "y")
        text = detail_text(app)
        assert "approved" in text and "pending" not in text.split("\n")[0], text


async def test_undo_says_what_it_undid(studio_ws):
    app = StudioApp(studio_ws, screen="review")
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        said = record_notifications(app)
        await press_and_settle(pilot, "asterisk", "A")
        await press_and_settle(pilot, "y")
        await press_and_settle(pilot, "u")
        assert re.fullmatch(r"undid approve of 12 samples \(operation \d+\)", said[-1]), said
        await press_and_settle(pilot, "r", "u")
        assert re.fullmatch(r"undid reject of 1 sample \(operation \d+\)", said[-1]), said
        await press_and_settle(pilot, key_of("duplicates"), "k", "u")
        assert re.fullmatch(r"undid keeper choice of 2 samples \(operation \d+\)", said[-1]), said
        await press_and_settle(pilot, "u", "u")
        assert said[-1] == "nothing to undo", said


@pytest.fixture
def measured_ws(studio_ws):
    """The small workspace plus answers up to 500 words long, after a real quality run."""
    with open_workspace(studio_ws, create=False) as ws:
        insert_samples(ws.con, [chat(f"Write {n} words", " ".join(["word"] * n), lang="en") for n in (40, 120, 260, 500)])
        quality.run_quality(ws, workers=1)
    return studio_ws


async def test_the_answer_too_short_histogram_is_laid_out_around_its_threshold(measured_ws):
    app = StudioApp(measured_ws, screen="quality")
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        await move_to_rule(pilot, "answer_too_short")
        screen = app.screen
        threshold = screen.current.threshold
        assert threshold == 3
        bins = screen.view.bins
        assert bins[0][0] == 0                                       # from nothing up
        assert [lo for lo, _, _ in bins[:-1]] == list(range(len(bins) - 1))  # one row per length
        assert any(lo <= threshold < hi for lo, hi, _ in bins[:-1])  # the threshold has a row of its own
        assert bins[-1][0] <= 4 * threshold and bins[-1][2] >= 4      # the long answers: one last row
        assert sum(n for _, _, n in bins) == 16
        shown = plain(screen.query_one("#q-hist").content)
        assert "≥" in shown and re.search(r"\b3\b.*◀", shown), shown
        for _ in range(int(bins[-1][0] - threshold)):  # moved into the tail row: laid out again around it
            await pilot.press("right")
        await settle(pilot)
        pending, bins = screen.pending, screen.view.bins
        assert screen.view.around == pending, (pending, screen.view.around)
        assert any(lo <= pending < hi for lo, hi, _ in bins[:-1]), (pending, bins)


def test_every_rule_shows_its_threshold_inside_the_histogram():
    from studio.screens.quality import BINS, bins_around

    rng = np.random.default_rng(7)
    for rule in quality.load_rules():
        if not rule.definition.numeric:
            continue
        t = rule.threshold
        values = rng.random(2000) if t < 1 else rng.integers(0, int(max(200, 8 * t)), 2000).astype(float)
        bins, _whole, overflow = bins_around(values, t)
        assert 1 <= len(bins) <= BINS and bins[0][0] <= 0 <= t, rule.id
        rows = bins[:-1] if overflow else bins
        holding = [i for i, (lo, hi, _) in enumerate(rows) if lo <= t < hi]
        assert holding, (rule.id, t, bins)
        assert len(rows) >= 2, (rule.id, bins)                        # something on each side
        assert sum(n for _, _, n in bins) == values.size, rule.id


async def test_an_empty_workspace_says_how_to_import(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    app = StudioApp(tmp_path / "fresh")
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        hint = app.screen.query_one("#home-hint")
        assert hint.display and screen_contains(app.screen, hint)
        assert "empty workspace: press 6 to import files (or `studio import FILE`" in plain(hint.content)


async def test_a_workspace_with_samples_shows_no_import_hint(studio_ws):
    app = StudioApp(studio_ws)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        assert not app.screen.query_one("#home-hint").display


def screen_contains(screen, widget) -> bool:
    return widget.region.height >= 1 and screen.region.contains_region(widget.region)


async def test_import_errors_name_the_checkbox_not_the_flag(studio_ws, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "ok", "output": "fine"}\n{"instruction": "x", "output": 5}\n', encoding="utf-8")
    app = StudioApp(studio_ws, screen="import")
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        app.screen.query_one("#im-path", Input).value = str(bad)
        await press_and_settle(pilot, "ctrl+s")
        report = plain(app.screen.query_one("#im-report").content)
        assert "Nothing imported" in report and "tick 'skip invalid rows'" in report, report
        assert "--" not in report


def test_augment_and_other_cli_advice_reads_as_the_apps_fields():
    from studio.screens._curation import APP_PHRASES, app_message

    with pytest.raises(Exception) as err:
        providers.resolve({}, None, None)  # the environment's provider, no model
    said = app_message(err.value)
    assert "fill the 'model' field" in said and "--model" not in said, said
    # every CLI phrase the app rewrites still occurs in the engine's source: a reworded error must
    # fail here, not reach the app in command-line words
    source = "\n".join(p.read_text(encoding="utf-8") for d in ("curation", "training")
                       for p in (ROOT / d).rglob("*.py"))
    joined = re.sub(r'"\s*\n\s*f?"', "", source)  # string literals continued on the next line, as one
    for cli, _app in APP_PHRASES:
        assert cli in joined, f"{cli!r} no longer occurs in curation/ or training/"


def test_no_pass_flag_advice_reaches_the_app_unphrased():
    """Every `pass --FLAG` advice in the engine that a screen can show has an app phrasing."""
    from studio.screens._curation import app_message

    source = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "curation").rglob("*.py"))
    reaching = {m.group(0) for m in re.finditer(r'[Pp]ass --(skip-invalid|format|model|force|include|rules)[^"\n]*', source)}
    assert len(reaching) >= 5, reaching
    for phrase in reaching:  # the advice as written, to the end of its string literal
        assert "--" not in app_message(phrase), phrase
