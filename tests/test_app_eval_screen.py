"""The Eval screen (key 0) through the real app (Pilot) at 80x24: a finished run whose eval was
written by training.evaluate.write_results, with items on which base and adapter disagree both
ways; the eval line's accuracies, the `d` filter's exact items, the detail pane, the layout at
80x24, the new-eval form's checks (nothing starts on a bad field), and `w` on a Workspace of its
own connection."""
from __future__ import annotations

import asyncio
import sys
import threading
import types

import pytest
from textual.widgets import DataTable, Input, OptionList, Select

from studio.app import StudioApp
from tests._studio_ws import make_workspace
from tests.training_fixtures import write_split

RUN = "2026-01-01-lora"
NEW_EVAL = "eval-20260102-090000"
OLD_EVAL = "eval-20260101-080000"

# (id, question, reference, base answer, base right?, adapter answer, adapter right?)
ITEMS = [
    ("s13", "What colour is the sky?", "blue", "The sky is blue.", True, "The sky is green.", False),
    ("s14", "What is two plus two?", "four", "It is five.", False, "Two plus two is four.", True),
    ("s15", "Name a fruit.", "apple", "A carrot.", False, "An apple is a fruit.", True),
    ("s16", "What do cats say?", "meow", "Woof.", False, "Cats bark.", False),
]


def write_eval(run_dir, eval_id: str, items=ITEMS, scorer: str = "contains") -> None:
    from training.evaluate import EvalResult, ModelSummary, eval_dir, write_results

    rows = []
    base, adapter = ModelSummary("base", "base"), ModelSummary(run_dir.name, "adapter")
    for iid, q, ref, b_text, b_ok, a_text, a_ok in items:
        answers = {}
        for summ, text, ok in ((base, b_text, b_ok), (adapter, a_text, a_ok)):
            answers[summ.name] = {"text": text, "tokens": 5, "seconds": 0.1, "correct": ok, "score": float(ok),
                                  "detail": "" if ok else "reference not in the answer"}
            summ.n += 1
            summ.correct += int(ok)
            summ.seconds += 0.1
        rows.append({"id": iid, "messages": [{"role": "user", "content": q}], "reference": ref,
                     "source": {"sample_id": int(iid[1:]), "source_file": "fixture.json", "source_row": int(iid[1:]) - 1},
                     "answers": answers})
    for summ in (base, adapter):
        summ.mean_score = summ.correct / summ.n
    result = EvalResult(eval_id, None, str(run_dir.parent.parent / "splits" / "v1"), "val", scorer,
                        [base, adapter], rows)
    write_results(result, eval_dir(run_dir, eval_id))


def write_run(ws, run_id: str = RUN, split: str = "v1"):
    """A finished run as docs/contracts.md says (config.yaml, status.json done), no weights."""
    from training.config import load_config, save_config
    from training.runs import write_status

    run_dir = ws / "runs" / run_id
    run_dir.mkdir(parents=True)
    save_config(load_config(overrides={"base": "tiny", "data.split": str(ws / "splits" / split)}),
                run_dir / "config.yaml", reproduce="studio train v1")
    write_status(run_dir, state="done", step=10, max_steps=10, started_at="2026-01-01T00:00:00+00:00")
    return run_dir


@pytest.fixture
def eval_ws(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    ws = make_workspace(tmp_path / "ws")
    write_split(ws / "splits" / "v1")
    run_dir = write_run(ws)
    write_eval(run_dir, OLD_EVAL, items=ITEMS[:1])
    write_eval(run_dir, NEW_EVAL)
    return ws


async def settle(pilot, rounds: int = 8) -> None:
    for _ in range(rounds):
        await pilot.pause()
        busy = [w for w in pilot.app.workers if not w.is_finished]
        if not busy:
            break
        await asyncio.wait_for(pilot.app.workers.wait_for_complete(busy), 30)
    await pilot.pause()


def table_ids(screen) -> list[str]:
    table = screen.query_one("#ev-items", DataTable)
    return [str(table.coordinate_to_cell_key((i, 0)).row_key.value) for i in range(table.row_count)]


def screen_text(app) -> str:
    """The characters on the terminal, row by row."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def record_notifications(app) -> list[str]:
    """Every notification's message from now on (toasts expire; this list keeps them)."""
    said: list[str] = []
    notify = app.notify

    def spy(message, *args, **kw):
        said.append(str(message))
        return notify(message, *args, **kw)

    app.notify = spy
    return said


async def open_eval_screen(pilot) -> None:
    await settle(pilot)
    await pilot.press("0")
    await settle(pilot)


async def test_key_0_shows_the_eval_with_both_accuracies_and_the_newest_selected(eval_ws):
    from studio.screens.evals import EvalScreen

    app = StudioApp(eval_ws)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_eval_screen(pilot)
        screen = app.screen
        assert isinstance(screen, EvalScreen)
        assert screen.query_one("#ev-run", Select).value == RUN
        evals = screen.query_one("#ev-evals", OptionList)
        lines = [str(evals.get_option_at_index(i).prompt) for i in range(evals.option_count)]
        assert [line.split()[0] for line in lines] == [NEW_EVAL, OLD_EVAL]  # newest first
        assert "base 25%" in lines[0] and "adapter 50%" in lines[0], lines[0]
        assert "base 100%" in lines[1] and "adapter 0%" in lines[1], lines[1]
        assert evals.highlighted == 0 and screen.eval_path.endswith(NEW_EVAL)
        assert table_ids(screen) == ["s13", "s14", "s15", "s16"]
        assert app.focused is screen.query_one("#ev-items")  # the table has the keys, not an input
        # the columns: item, prompt, one ✓/✗ per model with short labels
        table = screen.query_one("#ev-items", DataTable)
        assert [str(c.label) for c in table.columns.values()] == ["item", "prompt", "base", "adapter"]
        assert [str(c) for c in table.get_row("s13")[2:]] == ["✓", "✗"]
        assert [str(c) for c in table.get_row("s16")[2:]] == ["✗", "✗"]
        # `e` moves to the older eval: its one item
        await pilot.press("e")
        await settle(pilot)
        assert screen.eval_path.endswith(OLD_EVAL) and table_ids(screen) == ["s13"]


async def test_d_cycles_the_filter_to_exactly_the_disagreeing_items(eval_ws):
    app = StudioApp(eval_ws, screen="evals")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = app.screen
        table = screen.query_one("#ev-items", DataTable)
        assert str(table.border_title).startswith("all items: 4 of 4")
        seen = []
        for _ in range(4):
            await pilot.press("d")
            await pilot.pause()
            seen.append((str(table.border_title).split(" (d")[0], table_ids(screen)))
        assert seen == [
            ("base right, adapter wrong: 1 of 4", ["s13"]),
            ("adapter right, base wrong: 2 of 4", ["s14", "s15"]),
            ("both wrong: 1 of 4", ["s16"]),
            ("all items: 4 of 4", ["s13", "s14", "s15", "s16"]),
        ]


async def test_the_detail_pane_shows_the_item_in_full(eval_ws):
    app = StudioApp(eval_ws, screen="evals")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = app.screen
        await pilot.press("down")  # s14: base wrong, adapter right
        await pilot.pause()
        assert screen.item_id == "s14"
        text = screen.detail_text(width=200)  # wide: no answer wraps into its neighbour's lines
        assert "What is two plus two?" in text and "reference" in text and "four" in text
        assert "It is five." in text and "Two plus two is four." in text
        assert "base ✗ wrong" in text and "adapter ✓ right" in text
        assert "reference not in the answer" in text  # the scorer's detail for the wrong answer
        pane = screen.query_one("#ev-detail-pane")
        assert "s14" in str(pane.border_title) and str(pane.border_subtitle) == "fixture.json row 13"
        # at 80x24 the pane shows the prompt, the reference and both verdicts without scrolling
        shown = screen_text(app)
        for part in ("prompt What is two plus two?", "reference four", "base ✗ wrong", "adapter ✓ right",
                     "It is five.", "Two plus two is four."):
            assert part in shown, part
        # the filter keeps the item in the pane when it is still listed, else shows the first kept
        await pilot.press("d")
        await pilot.pause()
        assert screen.item_id == "s13" and "The sky is green." in screen.detail_text()


async def test_at_80x24_the_title_table_and_detail_fit_on_screen(eval_ws):
    app = StudioApp(eval_ws, screen="evals")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = app.screen
        await pilot.press("d")
        await pilot.pause()
        full = screen.region
        assert (full.width, full.height) == (80, 24)
        for sel, min_height in (("#ev-run", 1), ("#ev-evals", 3), ("#ev-items", 4), ("#ev-detail-pane", 3)):
            region = screen.query_one(sel).region
            assert full.contains_region(region) and region.height >= min_height, (sel, region)
        table = screen.query_one("#ev-items", DataTable)
        # every column fits the table's width: no sideways scrolling at 80 columns
        assert table.virtual_size.width <= table.scrollable_content_region.width, (table.virtual_size,
                                                                                   table.scrollable_content_region)
        shown = screen_text(app)
        assert "base right, adapter wrong: 1 of 4" in shown  # the filter title, drawn on the border
        assert NEW_EVAL in shown and "base 25%" in shown and "adapter 50%" in shown
        assert "s13" in shown and "What colour is the sky?" in shown
        # the table is above the detail pane, and neither overlaps the eval list
        evals, detail = screen.query_one("#ev-evals").region, screen.query_one("#ev-detail-pane").region
        assert evals.bottom <= table.region.y and table.region.bottom <= detail.y


async def test_new_eval_form_has_the_defaults_and_a_bad_limit_starts_nothing(eval_ws):
    app = StudioApp(eval_ws, screen="evals")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        before = sorted(p.name for p in (eval_ws / "runs" / RUN / "evals").iterdir())
        await pilot.press("n")
        await settle(pilot)
        form = app.screen
        assert form.query_one("#ne-run", Select).value == RUN
        assert form.query_one("#ne-models", Input).value == f"base {RUN}"
        assert form.query_one("#ne-source", Input).value == str(eval_ws / "splits" / "v1")
        assert form.query_one("#ne-part", Select).value == "val"
        assert form.query_one("#ne-scorer", Select).value == "contains"
        assert form.query_one("#ne-limit", Input).value == "50"
        assert form.query_one("#ne-max-new", Input).value == "64"
        dialog = form.query_one("#ne-dialog").region
        assert form.region.contains_region(dialog), dialog  # the form fits 80x24
        form.query_one("#ne-limit", Input).value = "abc"
        said = record_notifications(app)
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is form  # still open, to fix the field
        assert len(said) == 1 and "limit" in said[0] and "'abc' is not a whole number" in said[0], said
        assert "\n" not in said[0]
        assert not app.jobs and not [w for w in app.workers if w.group == "jobs"]
        assert sorted(p.name for p in (eval_ws / "runs" / RUN / "evals").iterdir()) == before
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen.query_one("#ev-items")


async def test_an_eval_set_without_val_rows_is_one_line_and_loads_no_model(eval_ws):
    """The job runs for real: it reads the split's val part first, so an empty one fails in a line
    (a StudioError notification), not a traceback, and before any model loads."""
    write_split(eval_ws / "splits" / "noval", n_val=0)
    app = StudioApp(eval_ws, screen="evals")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        app.screen.query_one("#ne-source", Input).value = str(eval_ws / "splits" / "noval")
        said = record_notifications(app)
        await pilot.press("ctrl+s")
        await settle(pilot)
        errors = [m for m in said if "no chat rows" in m]
        assert len(errors) == 1 and "noval" in errors[0] and "\n" not in errors[0], said
        assert not app.jobs
        assert sorted(p.name for p in (eval_ws / "runs" / RUN / "evals").iterdir()) == [OLD_EVAL, NEW_EVAL]
        assert app.is_running


async def test_n_without_a_finished_run_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    ws = make_workspace(tmp_path / "ws")
    write_split(ws / "splits" / "v1")
    running = write_run(ws, "still-running")
    from training.runs import write_status

    write_status(running, state="running", host="elsewhere", pid=1)
    app = StudioApp(ws, screen="evals")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert app.screen.query_one("#ev-run", Select).value is Select.NULL
        said = record_notifications(app)
        await pilot.press("n")
        await pilot.pause()
        assert len(said) == 1 and "no finished run" in said[0]
        assert not app.screen.query("#ne-dialog")  # no form opened
        assert not app.jobs


def test_progress_and_cancel_map_onto_the_job():
    from studio.screens.evals import EvalJob, progress_to_job

    job = EvalJob(kind="eval")
    progress = progress_to_job(job, {RUN: "adapter"})
    progress(8, 16, RUN)
    assert (job.done, job.total, job.message) == (8, 16, "answering with adapter")
    assert not job.stop.is_set()
    job.cancel()  # what Ctrl+X (app.cancel_jobs) calls
    assert job.stop.is_set() and job.cancelled


async def test_why_runs_on_its_own_connection_and_shows_the_rows(eval_ws, monkeypatch):
    """`w` with a stand-in curation.why: called off the UI thread, on a Workspace of its own
    connection (never the writer's ws.con), handed back after; the modal fits 80x24 and scrolls."""
    calls = []

    def item_query(item, model=None):
        return f"{item['id']}|{model}|{item['answers'][model]['text']}"

    def nearest_training_rows(ws, split_dir, query_text, k=5):
        calls.append({"con": ws.con, "thread": threading.current_thread(), "split": split_dir,
                      "query": query_text, "k": k, "rows": ws.con.execute("SELECT count(*) FROM samples").fetchone()[0]})
        return [{"rank": 1, "row": 1, "sample_id": 7, "similarity": 0.91, "instruction": "What colour is grass?",
                 "answer": "Grass is green.", "source": {"source_file": "fixture.json", "source_row": 0},
                 "history": {"status": "approved", "source_file": "data/chat_en.jsonl", "source_row": 7,
                             "flags": [{"rule_id": "answer_too_short"}], "duplicate_of": None,
                             "cluster": {"id": 1, "method": "near", "size": 2, "keeper_id": 7, "is_keeper": True},
                             "edits": {"version": 2, "earlier_versions": 1, "latest": {"kind": "edit", "reason": "typo"}},
                             "augment": None, "judge": None}}] + [
            {"rank": i, "row": i, "sample_id": i, "similarity": 0.5 - i / 100, "instruction": f"row {i} " + "text " * 40,
             "answer": "answer " * 40, "source": {}, "history": None} for i in range(2, 6)]

    monkeypatch.setitem(sys.modules, "curation.why", types.SimpleNamespace(
        item_query=item_query, nearest_training_rows=nearest_training_rows))
    app = StudioApp(eval_ws, screen="evals")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("w")
        await settle(pilot)
        from studio.screens.evals import WhyScreen

        assert isinstance(app.screen, WhyScreen)
        assert len(calls) == 1
        call = calls[0]
        assert call["con"] is not app.engine.ws.con and call["rows"] == 12
        assert call["thread"] is not threading.main_thread()
        assert call["split"] == eval_ws / "splits" / "v1"
        assert call["query"] == f"s13|{RUN}|The sky is green." and call["k"] == 5  # the adapter's answer
        assert app.engine._jobs_open == 0  # the job workspace was handed back
        shown = screen_text(app)
        assert "1. sample 7 · train row 1 · similarity 0.91" in shown and "Grass is green." in shown
        assert app.screen.model == "adapter" and "(prompt + adapter's answer)" in shown
        assert "source: data/chat_en.jsonl:7" in shown and "flags: answer_too_short" in shown
        assert "cluster: #1 (near, 2 members, the keeper)" in shown and "edits: 1 earlier version(s)" in shown
        dialog = app.screen.query_one("#why-dialog")
        assert app.screen.region.contains_region(dialog.region)
        assert dialog.virtual_size.height > dialog.scrollable_content_region.height  # more than fits: it scrolls
        await pilot.press("end")
        await pilot.pause()
        assert dialog.scroll_y > 0
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen.query_one("#ev-items")


async def test_why_with_the_real_search_finds_the_training_row_and_its_flags(eval_ws):
    """The real curation.why on the split the run trained on: item s14 ("What is two plus two?")
    finds train row 2, the workspace's sample 2, with its quality flag."""
    import json

    from curation.workspace import open_workspace

    with open_workspace(eval_ws) as ws:
        meta = ws.con.execute("SELECT id, source_file, source_row FROM samples WHERE id IN (1, 2) ORDER BY id").fetchall()
    manifest_path = eval_ws / "splits" / "v1" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for entry, (sid, sfile, srow) in zip(manifest["rows"]["train"], meta):  # rows 1-2 are samples 1-2 here
        entry.update(sample_id=sid, source_file=sfile, source_row=srow)
    manifest_path.write_text(json.dumps(manifest))
    app = StudioApp(eval_ws, screen="evals")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("down")
        await pilot.pause()
        assert app.screen.item_id == "s14"
        await pilot.press("w")
        await settle(pilot)
        from studio.screens.evals import WhyScreen

        assert isinstance(app.screen, WhyScreen), app.screen
        rows = app.screen.rows
        assert rows and rows[0]["sample_id"] == 2 and rows[0]["instruction"] == "What is two plus two?"
        shown = screen_text(app)
        assert "1. sample 2 · train row 2" in shown and "flags: answer_too_short" in shown
        assert app.engine._jobs_open == 0


async def test_why_without_the_module_says_so(eval_ws, monkeypatch):
    monkeypatch.setitem(sys.modules, "curation.why", None)  # import fails as when the file is absent
    app = StudioApp(eval_ws, screen="evals")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        said = record_notifications(app)
        await pilot.press("w")
        await settle(pilot)
        assert [m for m in said if "not available" in m] == ["why is not available in this install"], said
        assert app.engine._jobs_open == 0


def test_short_labels_and_roles_for_other_models():
    from studio.screens.evals import filter_rows, model_labels, roles

    models = [{"name": "base", "kind": "base"}, {"name": RUN, "kind": "adapter"},
              {"name": f"merged:{RUN}", "kind": "merged"}, {"name": "2026-02-02-other-run", "kind": "adapter"}]
    labels = model_labels(models, RUN)
    assert list(labels.values())[:2] == ["base", "adapter"]
    assert all(len(v) <= 10 for v in labels.values()) and len(set(labels.values())) == 4, labels
    assert roles(models, labels) == ("base", RUN)
    # an eval of another run's adapter beside this one: no "adapter" label, the first adapter stands in
    other = [{"name": "base", "kind": "base"}, {"name": "2026-02-02-other-run", "kind": "adapter"}]
    assert roles(other, model_labels(other, RUN)) == ("base", "2026-02-02-other-run")
    rows = [{"id": "a", "answers": {"base": {"correct": True}, RUN: {"correct": False}}},
            {"id": "b", "answers": {"base": {"correct": True}}}]  # cancelled before the adapter answered
    assert [r["id"] for r in filter_rows(rows, "base_only", "base", RUN)] == ["a"]
    assert filter_rows(rows, "both_wrong", "base", RUN) == []
