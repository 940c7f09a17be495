"""The curation screens through the real app (Pilot) on a real DuckDB workspace: import a file and
see it counted, resolve a duplicate cluster with one key, move a quality threshold and apply it,
export a split that holds exactly the approved non-duplicate samples."""
from __future__ import annotations

import json

import pytest
from textual.widgets import Checkbox, DirectoryTree, Input

from curation import quality, review
from curation.samples import chat
from curation.store import insert_samples
from curation.workspace import open_workspace
from studio.app import StudioApp
from studio.widgets.sample_list import SampleList
from studio.widgets.text_diff import ADDED, REMOVED, diff_pair
from tests._studio_ws import make_workspace
from tests.test_app_review import plain

DIALOG_GROUPS = {"dedup-dialog"}


async def settle(pilot, rounds: int = 20, dialog_groups: set[str] = DIALOG_GROUPS) -> None:
    """Wait until no data, write or job worker runs (a job's on_done starts new loads); workers of
    `dialog_groups` wait on a dialog the test answers and are not waited for."""
    for _ in range(rounds):
        await pilot.pause()
        busy = [w for w in pilot.app.workers if not w.is_finished and w.group not in dialog_groups
                and not isinstance(w.node, DirectoryTree)]  # its loader waits on a queue forever
        if not busy:
            break
        await pilot.app.workers.wait_for_complete(busy)
    await pilot.pause()


@pytest.fixture
def studio_ws(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return make_workspace(tmp_path / "ws")


@pytest.fixture
def measured_ws(studio_ws):
    """The small workspace after a real quality run (values stored for preview and histogram)."""
    with open_workspace(studio_ws, create=False) as ws:
        quality.run_quality(ws, workers=1)
    return studio_ws


def db(path, sql, params=()):
    with open_workspace(path, create=False) as ws:
        return ws.con.execute(sql, list(params)).fetchall()


async def type_into(pilot, selector: str, text: str) -> None:
    """Focus the input and fill it (pasting: a long tmp path typed key by key costs seconds)."""
    box = pilot.app.screen.query_one(selector, Input)
    box.focus()
    box.value = text
    await pilot.pause()


# -- import ---------------------------------------------------------------------------------------
async def test_import_a_file_and_see_the_count(studio_ws, tmp_path):
    data = tmp_path / "new.json"
    data.write_text(json.dumps([{"instruction": f"新问题{i}", "input": "", "output": f"新回答{i}"} for i in range(3)],
                               ensure_ascii=False), encoding="utf-8")
    app = StudioApp(studio_ws, screen="import")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await type_into(pilot, "#im-path", str(data))
        await pilot.press("ctrl+s")
        await settle(pilot)
        report = plain(app.screen.query_one("#im-report").content)
        assert "3 rows imported" in report and "new.json" in report
        assert app.sub_title.startswith("ws · 15 samples")
    assert db(studio_ws, "SELECT count(*) FROM samples WHERE source_file = 'new.json'") == [(3,)]
    # the fast import leaves the search column NULL; the job the screen starts after it fills it
    assert db(studio_ws, "SELECT count(*) FROM samples WHERE search_text IS NULL") == [(0,)]
    assert db(studio_ws, "SELECT search_text FROM samples WHERE source_file = 'new.json' ORDER BY id LIMIT 1") == [("新问题0\n新回答0",)]


async def test_rows_imported_without_their_search_column_get_it_when_the_studio_opens(studio_ws, tmp_path):
    from curation.importers import import_paths

    data = tmp_path / "cli.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"Question {i}", "output": f"ANSWER {i}"}) + "\n" for i in range(5)))
    with open_workspace(studio_ws, create=False) as ws:  # as `studio import` does
        assert import_paths(ws, [data]).files[0].fast_path
        assert ws.con.execute("SELECT count(*) FROM samples WHERE search_text IS NULL").fetchall() == [(5,)]
    app = StudioApp(studio_ws, screen="home")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
    assert db(studio_ws, "SELECT count(*) FROM samples WHERE search_text IS NULL") == [(0,)]
    assert db(studio_ws, "SELECT search_text FROM samples WHERE source_file = 'cli.jsonl' ORDER BY id LIMIT 1") == [("question 0\nanswer 0",)]


async def test_bad_rows_are_listed_escaped_and_skip_invalid_imports_the_rest(studio_ws, tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"instruction": "ok", "output": "fine"}\n'
                    '{"instruction": "\\u001b[31mred", "output": 5}\n', encoding="utf-8")
    app = StudioApp(studio_ws, screen="import")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await type_into(pilot, "#im-path", str(data))
        await pilot.press("ctrl+s")
        await settle(pilot)
        report = plain(app.screen.query_one("#im-report").content)
        assert "Nothing imported" in report and "bad.jsonl:2: output" in report
        assert "\x1b" not in report
        app.screen.query_one("#im-skip", Checkbox).value = True
        await pilot.press("ctrl+s")
        await settle(pilot)
        report = plain(app.screen.query_one("#im-report").content)
        assert "1 rows imported, 1 rejected" in report and "bad.jsonl:2: output" in report
    assert db(studio_ws, "SELECT count(*) FROM samples") == [(13,)]


# -- duplicates -----------------------------------------------------------------------------------
async def test_resolve_a_cluster_with_one_key_and_undo(studio_ws):
    app = StudioApp(studio_ws, screen="duplicates")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert screen.current_cluster.keeper_id == 7
        assert screen.current_member.sample_id == 8      # the cursor starts on the first non-keeper
        left = screen.query_one("#dup-keeper").content
        right = screen.query_one("#dup-other").content
        assert "Explain concept number 7" in left.plain and "Explain concept number 8" in right.plain
        assert any(left.plain[s.start:s.end] == "7" and s.style == REMOVED for s in left.spans)
        assert any(right.plain[s.start:s.end] == "8" and s.style == ADDED for s in right.spans)
        assert "similarity 0.91" in str(screen.query_one("#dup-other-side").border_title)
        await pilot.press("k")
        await settle(pilot)
        assert screen.current_cluster.keeper_id == 8 and screen.current_cluster.chosen_by == "reviewer"
    assert db(studio_ws, "SELECT keeper_id, keeper_chosen_by, resolved FROM dup_clusters WHERE id = 1") == [(8, "reviewer", True)]
    assert db(studio_ws, "SELECT id, duplicate_of FROM samples WHERE id IN (7, 8) ORDER BY id") == [(7, 8), (8, None)]

    app = StudioApp(studio_ws, screen="duplicates")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("u")
        await settle(pilot)
        assert app.screen.current_cluster.keeper_id == 7
    assert db(studio_ws, "SELECT id, duplicate_of FROM samples WHERE id IN (7, 8) ORDER BY id") == [(7, None), (8, 7)]


async def test_run_dedup_from_the_screen_with_a_threshold(studio_ws):
    with open_workspace(studio_ws, create=False) as ws:
        insert_samples(ws.con, [chat("What is a cat?", "A small furry animal that purrs.", lang="en"),
                                chat("What is a cat?", "A small furry animal that purrs.", lang="en")])
    app = StudioApp(studio_ws, screen="duplicates")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("d")
        await settle(pilot)
        box = app.screen.query_one("#dedup-threshold", Input)
        assert box.value == "0.8"
        box.value = "0.95"
        await pilot.press("enter")
        await settle(pilot)
        ids = {frozenset(m.sample_id for m in c.members) for c in app.screen.clusters}
        assert frozenset({13, 14}) in ids
    (details,) = db(studio_ws, "SELECT details FROM operations WHERE kind = 'dedup'")[0]
    assert json.loads(details)["threshold"] == 0.95


async def test_a_chain_of_copies_shows_clusters_whose_members_reach_the_keeper(tmp_path, monkeypatch):
    """Six copies linked hop by hop (each near the next only), dedup at 0.7 from the screen: two
    clusters, each member's similarity to its keeper shown beside it, all at 0.70 or above, at 80x24."""
    from tests.test_dedup import CHAIN_Q, chain_answers, chain_sims

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    answers = chain_answers()
    sims = chain_sims(answers)
    with open_workspace(tmp_path / "ws") as ws:
        a, b, c, d, e, f = insert_samples(ws.con, [chat(CHAIN_Q, ans, lang="en") for ans in answers])
    app = StudioApp(tmp_path / "ws", screen="duplicates")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("d")
        await settle(pilot)
        app.screen.query_one("#dedup-threshold", Input).value = "0.7"
        await pilot.press("enter")
        await settle(pilot)
        screen = app.screen
        assert [(cl.keeper_id, sorted(m.sample_id for m in cl.members)) for cl in screen.clusters] == [
            (b, [a, b, c]), (e, [d, e, f])]
        for i, (keeper, others) in enumerate(((1, (0, 2)), (4, (3, 5)))):
            screen.cluster_list.highlighted = i
            await settle(pilot)
            shown = [plain(screen.members_list.get_option_at_index(k).prompt) for k in range(3)]
            assert "keeper" in shown[0]
            for k in others:  # the similarity to the keeper, as the engine computed it
                assert any(f"{sims[keeper, k]:.2f}" in line for line in shown[1:]), shown
            assert all(float(line.split()[1]) >= 0.7 for line in shown[1:]), shown
            low = min(sims[keeper, k] for k in others)
            assert f"≥{low:.2f}" in plain(screen.cluster_list.get_option_at_index(i).prompt)


def test_cjk_differences_are_characters_and_markup_is_shown_as_typed():
    left, right, _ = diff_pair("这是第三个[bold]回答\x1b", "这是第四个[bold]回答\x1b")
    assert [left.plain[s.start:s.end] for s in left.spans] == ["三"]
    assert [right.plain[s.start:s.end] for s in right.spans] == ["四"]
    assert right.plain == "这是第四个[bold]回答\\x1b"


# -- quality --------------------------------------------------------------------------------------
async def move_to_rule(pilot, rule_id: str) -> None:
    screen = pilot.app.screen
    for _ in range(len(screen.data.rules)):
        if screen.current.id == rule_id:
            return
        await pilot.press("down")
        await settle(pilot)
    raise AssertionError(f"rule {rule_id} not listed")


async def test_threshold_preview_equals_the_engine_and_applying_changes_flags(measured_ws):
    rule = "answer_too_short"
    before = db(measured_ws, "SELECT count(*) FROM quality_flags WHERE rule_id = ?", [rule])[0][0]
    app = StudioApp(measured_ws, screen="quality")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await move_to_rule(pilot, rule)
        screen = app.screen
        assert screen.pending == 3
        await pilot.press("right", "right", "right")
        await settle(pilot)
        assert screen.pending == 6
        expected = quality.preview(app.engine.reader(), rule, 6)
        assert expected != before  # the test would notice a preview that did not move
        assert screen.would_flag == expected
        assert f"would flag {expected}" in plain(screen.query_one("#q-threshold").content)
        await pilot.press("enter")
        await settle(pilot)
        assert screen.current.threshold == 6 and screen.current.flagged == expected
    assert db(measured_ws, "SELECT count(*) FROM quality_flags WHERE rule_id = ?", [rule]) == [(expected,)]
    assert next(r for r in quality.load_rules(measured_ws / "rules.yaml") if r.id == rule).threshold == 6


async def test_typed_threshold_and_open_flagged_in_review(measured_ws):
    rule = "answer_too_short"
    app = StudioApp(measured_ws, screen="quality")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await move_to_rule(pilot, rule)
        await pilot.press("t")
        app.screen.query_one("#q-input", Input).value = "4"
        await pilot.press("enter")
        await settle(pilot)
        assert app.screen.would_flag == quality.preview(app.engine.reader(), rule, 4)
        flagged = app.screen.current.flagged
        await pilot.press("o")
        await settle(pilot)
        assert app.current_mode == "review"
        lst = app.screen.query_one(SampleList)
        assert lst.flt.flag == rule and lst.total == flagged


# -- export ---------------------------------------------------------------------------------------
async def test_export_holds_exactly_the_approved_non_duplicates(studio_ws):
    with open_workspace(studio_ws, create=False) as ws:
        review.set_status(ws, [1, 2, 3, 4, 7, 8, 9], "approved")
        review.set_status(ws, [10], "rejected")
        expected = sorted(r[0] for r in ws.con.execute(
            "SELECT id FROM samples WHERE status = 'approved' AND duplicate_of IS NULL").fetchall())
    assert expected == [1, 2, 3, 4, 7, 9]  # 8 is a duplicate of 7
    app = StudioApp(studio_ws, screen="export")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert screen.query_one("#ex-name", Input).value == "v1"
        await type_into(pilot, "#ex-val", "0.34")
        await settle(pilot)
        preview = plain(screen.query_one("#ex-preview").content)
        counts = " ".join(preview.split())
        assert "train 4" in counts and "val 2" in counts and "duplicates 1" in counts and "rejected 1" in counts
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "wrote splits/v1: 4 train, 2 val" in plain(screen.query_one("#ex-result").content)
        assert "v1" in plain(screen.query_one("#ex-splits-table").content)
        await pilot.press("ctrl+s")  # again: refused, the reason shown
        await settle(pilot)
        assert "already exists" in plain(screen.query_one("#ex-result").content)
        assert "exists: tick 'replace'" in plain(screen.query_one("#ex-preview").content)
        screen.query_one("#ex-force", Checkbox).value = True
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "wrote splits/v1" in plain(screen.query_one("#ex-result").content)
    manifest = json.loads((studio_ws / "splits" / "v1" / "manifest.json").read_text())
    from curation.manifest import split_rows

    lineage = split_rows(studio_ws / "splits" / "v1", manifest)  # lineage.parquet beside the manifest
    got = sorted(r["sample_id"] for part in ("train", "val") for r in lineage[part])
    assert got == expected
    assert manifest["counts"] == {"train": 4, "val": 2} and manifest["settings"]["val"] == 0.34


# -- snapshots ------------------------------------------------------------------------------------
# What Duplicates and Quality look like on the small fixed workspace (after a real quality run).
# Update after an intended change with `--snapshot-update` and look at the SVGs before committing.
@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_duplicates_snapshot(snap_compare, measured_ws, size):
    assert snap_compare(StudioApp(measured_ws, screen="duplicates"), terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_quality_snapshot(snap_compare, measured_ws, size):
    async def move_threshold(pilot):
        await settle(pilot)
        await pilot.press("right")  # answer_too_short: 3 -> 4, the preview shown
        await settle(pilot)

    assert snap_compare(StudioApp(measured_ws, screen="quality"), terminal_size=size, run_before=move_threshold)


async def test_clusters_past_the_first_page_load_as_the_cursor_goes_down(studio_ws, monkeypatch):
    """Any number of clusters can be walked: pages of CLUSTER_LIMIT load in a worker near the end."""
    from studio.screens import duplicates

    with open_workspace(studio_ws, create=False) as ws:
        ids = [r[0] for r in ws.con.execute("SELECT id FROM samples ORDER BY id").fetchall()]
        pairs = [(0, 1), (2, 3), (4, 5), (8, 9), (10, 11)]  # samples 6 and 7 form cluster 1
        for cid, (i, j) in enumerate(pairs, start=2):  # five more 2-member clusters
            a, b = ids[i], ids[j]
            ws.con.execute("INSERT INTO dup_clusters (id, method, fields, keeper_id, keeper_chosen_by, size) "
                           "VALUES (?, 'exact', 'sample', ?, 'policy', 2)", [cid, a])
            ws.con.execute("INSERT INTO dup_members VALUES (?, ?, 1.0), (?, ?, 1.0)", [cid, a, cid, b])
    monkeypatch.setattr(duplicates, "CLUSTER_LIMIT", 2)
    monkeypatch.setattr(duplicates, "MORE_WITHIN", 0)
    app = StudioApp(studio_ws, screen="duplicates")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert (len(screen.clusters), screen.total_clusters) == (2, 6)
        assert "2 loaded" in plain(screen.query_one("#dup-status").content)
        seen = []
        for _ in range(5):
            await pilot.press("n")
            await settle(pilot)
            seen.append(screen.current_cluster.id)
        assert len(screen.clusters) == 6 and len(set(c.id for c in screen.clusters)) == 6
        assert len(set(seen)) == 5 and screen.cluster_list.option_count == 6
        assert "loaded" not in plain(screen.query_one("#dup-status").content)
