"""Review: walk the samples with the keyboard. Approve, reject, edit, undo; search and filter;
select many and act on them together.

The list (SampleList) draws only visible rows from pages fetched in workers; the detail pane
(SampleView) loads the highlighted sample in a worker (the newest request wins). Writes go through
`curation.review` on the engine's writer thread (studio/engine.py), in key-press order: the row's
new status is drawn at once and the cursor moves on; if the write fails the row is put back and
the error shown.
"""
from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
import tempfile
from dataclasses import replace
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Static

from curation import browse
from curation.errors import StudioError
from curation.safe_text import visible

from ..bindings import bindings_for
from ..widgets.job_progress import JobProgress
from ..widgets.sample_list import SampleList
from ..widgets.sample_view import SampleView
from ._curation import app_message, undo_last, undo_message

RANGE_LIMIT = 100_000  # `v` selects at most this many rows at once; use `*` for a whole filter


def describe_filter(flt: browse.Filter) -> str:
    parts = []
    for name in ("status", "flag", "cluster_id", "source", "lang", "min_score", "max_score", "search"):
        value = getattr(flt, name)
        if value is not None and value != "":
            parts.append(f"{name}={visible(str(value), single_line=True)}")
    if flt.duplicates != "include":
        parts.append(f"duplicates={flt.duplicates}")
    return " ".join(parts) or "all samples"


class ReviewScreen(Screen):
    BINDINGS = bindings_for("review")
    AUTO_FOCUS = "#sample-list"  # and where Escape from the search box returns

    def __init__(self, flt: browse.Filter | None = None):
        super().__init__()
        self.initial_filter = flt or browse.Filter()
        self.select_all_matching = False   # `*`: the bulk action covers the whole filter
        self._deferred: list[str] = []     # decisions asked for before the first row arrived
        # Details of the samples around the cursor, fetched ahead so j/k paint the next sample in
        # the key's own frame; emptied by every write (a status or an edit may have changed).
        self._details: dict[int, browse.SampleDetail] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="review-main"):
            yield SampleList(id="sample-list")
            yield SampleView(id="sample-view")
        yield Input(placeholder="search instruction, answer, text (Enter applies, Esc cancels)", id="review-search")
        yield Static("", id="review-status")
        yield JobProgress()
        yield Footer()

    def on_mount(self) -> None:
        self.list.focus()
        self.list.set_filter(self.initial_filter)

    @property
    def list(self) -> SampleList:
        return self.query_one(SampleList)

    @property
    def engine(self) -> Any:
        return self.app.engine

    # -- status line and detail ----------------------------------------------------------------
    def _update_status_line(self) -> None:
        lst = self.list
        text = Text()
        text.append(f"{lst.cursor + 1 if lst.total else 0:,}/{lst.total:,}", style="bold")
        text.append(f"  {describe_filter(lst.flt)}")
        if self.select_all_matching:
            text.append(f"  all {lst.total:,} matching selected", style="bold magenta")
        elif lst.selected:
            text.append(f"  {len(lst.selected):,} selected", style="bold magenta")
        self.query_one("#review-status", Static).update(text)

    @on(SampleList.Loaded)
    def _loaded(self, event: SampleList.Loaded) -> None:
        self._update_status_line()
        if event.total == 0:
            self.query_one(SampleView).show(None)

    @on(SampleList.Highlighted)
    def _highlighted(self, event: SampleList.Highlighted) -> None:
        self._update_status_line()
        if event.row is None:
            self.query_one(SampleView).show(None)
        else:
            cached = self._details.get(event.row.id)
            if cached is not None:
                self.query_one(SampleView).show(cached)
            self._load_detail(event.row.id, self._neighbour_ids())
            while self._deferred:  # e.g. "Review: Approve" from the palette on a fresh screen
                self._set_current(self._deferred.pop(0))

    def _neighbour_ids(self) -> list[int]:
        ids = []
        for delta in (1, -1, 2):
            row = self.list.row_at(self.list.cursor + delta)
            if row is not None and row.id not in self._details:
                ids.append(row.id)
        return ids

    @work(thread=True, exclusive=True, group="sample-detail")
    def _load_detail(self, sample_id: int, prefetch: list[int] | None = None) -> None:
        con = self.engine.reader()
        try:
            detail = browse.get_sample(con, sample_id)
        except StudioError:
            detail = None
        self.app.call_from_thread(self._show_detail, sample_id, detail)
        for other in prefetch or ():
            try:
                self.app.call_from_thread(self._remember, other, browse.get_sample(con, other))
            except StudioError:
                pass

    def _remember(self, sample_id: int, detail: browse.SampleDetail | None) -> None:
        if detail is None:
            return
        self._details[sample_id] = detail
        while len(self._details) > 64:
            self._details.pop(next(iter(self._details)))

    def _show_detail(self, sample_id: int, detail: browse.SampleDetail | None) -> None:
        self._remember(sample_id, detail)
        row = self.list.current
        if row is not None and row.id == sample_id:
            self.query_one(SampleView).show(detail)

    # -- moving ---------------------------------------------------------------------------------
    def action_cursor_down(self) -> None:
        self.list.move(1)

    def action_cursor_up(self) -> None:
        self.list.move(-1)

    def action_page_down(self) -> None:
        self.list.move(max(1, self.list.size.height - 1))

    def action_page_up(self) -> None:
        self.list.move(-max(1, self.list.size.height - 1))

    def action_first(self) -> None:
        self.list.move_to(0)

    def action_last(self) -> None:
        self.list.move_to(self.list.total - 1)

    # -- writes ---------------------------------------------------------------------------------
    def _write(self, fn, *args: Any, done=None, failed=None, **kw: Any) -> None:
        """Queue `fn(ws, *args)` on the writer thread; `done(result)` / `failed()` run on the UI."""
        self._details.clear()

        async def wait() -> None:
            try:
                result = await asyncio.wrap_future(self.engine.write(fn, *args, **kw))
            except StudioError as exc:
                if failed is not None:
                    failed()
                self.notify(visible(app_message(exc)), severity="error", timeout=8)
                return
            self._details.clear()
            if done is not None:
                done(result)
            self.app.refresh_counts()

        self.run_worker(wait(), group="writes")

    def _set_current(self, status: str) -> None:
        from curation import review

        row = self.list.current
        if row is None:
            if not self.list.loaded:
                self._deferred.append(status)
            return
        old = row.status
        self.list.update_status([row.id], status)
        self.list.move(1)
        self._write(review.set_status, [row.id], status, failed=lambda: self.list.update_status([row.id], old))

    def action_approve(self) -> None:
        self._set_current("approved")

    def action_reject(self) -> None:
        self._set_current("rejected")

    def action_undo(self) -> None:
        def done(undone: list) -> None:
            self.notify(undo_message(undone))
            if undone:
                self.list.reload()
                self._refresh_detail()

        self._write(undo_last, done=done)

    def _refresh_detail(self) -> None:
        """Load the highlighted sample's detail again (its status or content changed under it)."""
        row = self.list.current
        if row is not None:
            self._details.pop(row.id, None)
            self._load_detail(row.id)

    # -- editing --------------------------------------------------------------------------------
    def _after_edit(self, sample_id: int) -> None:
        def done(op_id: int | None) -> None:
            if op_id is None:
                self.notify("no change")
                return
            self.notify(f"sample {sample_id} saved (operation {op_id})")
            self._refetch_row(sample_id)

        return done

    @work(thread=True, group="sample-row")
    def _refetch_row(self, sample_id: int) -> None:
        con = self.engine.reader()
        rows = browse.page(con, browse.Filter(), after_id=sample_id - 1, limit=1)
        detail = browse.get_sample(con, sample_id)
        if rows and rows[0].id == sample_id:
            self.app.call_from_thread(self.list.replace_row, rows[0])
        self.app.call_from_thread(self._show_detail, sample_id, detail)

    @work(group="edit")
    async def action_edit(self) -> None:
        from curation import review

        from .dialogs import EditScreen

        row = self.list.current
        if row is None:
            return
        detail = await asyncio.to_thread(lambda: browse.get_sample(self.engine.reader(), row.id))
        changes = await self.app.push_screen_wait(EditScreen(detail))
        if changes:
            self._write(review.edit, row.id, done=self._after_edit(row.id), **changes)

    def action_edit_external(self) -> None:
        """Edit the sample as JSON in $VISUAL / $EDITOR (the terminal is handed over meanwhile)."""
        from curation import review

        from .dialogs import editable_json, parse_edit

        row = self.list.current
        if row is None:
            return
        editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
        detail = browse.get_sample(self.engine.reader(), row.id)
        with tempfile.NamedTemporaryFile("w", suffix=f"-sample-{row.id}.json", delete=False, encoding="utf-8") as fh:
            fh.write(editable_json(detail))
            path = fh.name
        try:
            with self.app.suspend():
                subprocess.run([*shlex.split(editor), path], check=False)
            with open(path, encoding="utf-8") as fh:
                changes = parse_edit(fh.read())
        except (OSError, ValueError) as exc:
            self.notify(f"not saved: {exc}", severity="error", timeout=8)
            return
        finally:
            os.unlink(path)
        self._write(review.edit, row.id, done=self._after_edit(row.id), **changes)

    # -- search and filter ----------------------------------------------------------------------
    def action_search(self) -> None:
        box = self.query_one("#review-search", Input)
        box.value = self.list.flt.search or ""
        box.add_class("-open")
        box.focus()

    @on(Input.Submitted, "#review-search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        event.input.remove_class("-open")
        self.list.focus()
        self.apply_filter(replace(self.list.flt, search=event.value.strip() or None))

    @on(Input.Blurred, "#review-search")
    def _search_left(self, event: Input.Blurred) -> None:
        """Escape (app.leave_field: focus back to the list) or a click elsewhere closes the box
        without applying it."""
        event.input.remove_class("-open")

    def apply_filter(self, flt: browse.Filter) -> None:
        self.select_all_matching = False
        self.list.clear_selection()
        self.list.set_filter(flt)
        self._update_status_line()

    @work(group="filter")
    async def action_filter(self) -> None:
        from .dialogs import FilterScreen

        stats = await asyncio.to_thread(lambda: browse.stats(self.engine.reader()))
        flt = await self.app.push_screen_wait(FilterScreen(self.list.flt, stats))
        if flt is not None:
            self.apply_filter(flt)

    def action_clear_filter(self) -> None:
        self.apply_filter(browse.Filter())

    def action_reload(self) -> None:
        self.list.reload()

    # -- selection and bulk ---------------------------------------------------------------------
    def action_toggle_select(self) -> None:
        self.select_all_matching = False
        self.list.toggle_selected()
        self._update_status_line()

    @work(thread=True, group="select")
    def action_select_range(self) -> None:
        lst = self.list
        anchor = lst.anchor if lst.anchor is not None else lst.cursor
        lo, hi = sorted((anchor, lst.cursor))
        rows = browse.page_at(self.engine.reader(), lst.flt, lo, min(hi - lo + 1, RANGE_LIMIT))
        self.app.call_from_thread(lst.select, [r.id for r in rows])
        self.app.call_from_thread(self._update_status_line)

    def action_select_all(self) -> None:
        self.select_all_matching = not self.select_all_matching
        self._update_status_line()

    @work(group="bulk")
    async def _bulk(self, status: str) -> None:
        from curation import review

        from .dialogs import ConfirmScreen

        lst = self.list
        if self.select_all_matching:
            flt = lst.flt
            ids = await asyncio.to_thread(lambda: browse.ids(self.engine.reader(), flt))
            what = f"all {len(ids):,} samples matching {describe_filter(flt)}"
        elif lst.selected:
            ids = sorted(lst.selected)
            what = f"the {len(ids):,} selected samples"
        else:
            self.notify("select samples first (Space, v for a range, * for everything matching)")
            return
        verb = "Approve" if status == "approved" else "Reject"
        if not await self.app.push_screen_wait(ConfirmScreen(f"{verb} {what}?")):
            return

        def done(op_id: int | None) -> None:
            if op_id is None:  # every one of them had that status already: nothing recorded
                self.notify(f"no change: {what} are already {status}")
            else:
                self.notify(f"{verb.lower()}d {len(ids):,} samples (operation {op_id}; u undoes)")
            self.select_all_matching = False
            lst.clear_selection()
            lst.update_status(ids, status)
            self._update_status_line()
            self._refresh_detail()  # the pane showed the old status of the highlighted row

        self._write(review.set_status, ids, status, f"bulk {status} from review", done=done)

    def action_bulk_approve(self) -> None:
        self._bulk("approved")

    def action_bulk_reject(self) -> None:
        self._bulk("rejected")
