"""SampleList: the review list, smooth at a million samples (Toolong's shape).

- It is a Line-API ScrollView: Textual asks `render_line(y)` only for the rows on screen, so the
  cost of a frame does not depend on how many samples match.
- Rows come in pages of PAGE_SIZE from `curation.browse.page_at`, fetched in thread workers on
  each thread's own cursor; a page ahead and a page behind the visible one are fetched too, and
  pages far from the view are dropped (at most MAX_PAGES kept). A row whose page has not arrived
  yet draws as "…" and is redrawn when it lands.
- The total comes from `browse.count`; scrolling anywhere (scrollbar, End) is a page_at jump.
- Rendered lines are cached by (row, status, selection, cursor, width); after an action only the
  changed row is redrawn (`update_status`).

Text from data goes through `curation.safe_text.visible` into rich `Text` objects: escape sequences
show as `\\x1b`, and `[bold]`-looking text is shown as typed, never read as markup.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Iterable

from rich.segment import Segment
from rich.text import Text
from textual import work
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from curation import browse
from curation.safe_text import visible

PAGE_SIZE = 100
MAX_PAGES = 40          # pages kept in memory (4,000 rows); farther ones are dropped
LINE_CACHE = 2_000      # rendered strips kept

STATUS_MARK = {"pending": ("·", "dim"), "approved": ("✓", "green"), "rejected": ("✗", "red")}


class SampleList(ScrollView, can_focus=True, inherit_bindings=False):
    """Keys come from the screen's registry bindings; this widget only moves and draws."""

    COMPONENT_CLASSES = {"sample-list--cursor", "sample-list--selected"}
    DEFAULT_CSS = """
    SampleList { background: $surface; }
    SampleList > .sample-list--cursor { background: $accent 40%; text-style: bold; }
    SampleList:focus > .sample-list--cursor { background: $accent 60%; }
    SampleList > .sample-list--selected { background: $primary 25%; }
    """

    class Highlighted(Message):
        """The cursor is on a loaded row (or the list is empty: row None)."""

        def __init__(self, sample_list: "SampleList", index: int, row: browse.Row | None):
            super().__init__()
            self.sample_list = sample_list
            self.index = index
            self.row = row

    class Loaded(Message):
        """A new filter's count arrived."""

        def __init__(self, total: int):
            super().__init__()
            self.total = total

    def __init__(self, *, id: str | None = None):
        super().__init__(id=id)
        self.flt = browse.Filter()
        self.total = 0
        self.cursor = 0
        self.selected: set[int] = set()
        self.anchor: int | None = None       # where `v` starts a range
        self._pages: dict[int, list[browse.Row]] = {}
        self._requested: set[int] = set()
        self._generation = 0                 # bumps on each filter change; stale pages are dropped
        self._lines: dict[tuple, Strip] = {}
        self.loaded = False                  # the first count has arrived
        self.id_width = 1                    # digits of the largest id: the id column's width

    # -- data ---------------------------------------------------------------------------------
    @property
    def engine(self) -> Any:
        return self.app.engine

    def set_filter(self, flt: browse.Filter, *, keep_cursor: bool = False) -> None:
        """Show the samples `flt` selects (a worker counts them and fetches the first pages)."""
        self.flt = flt
        self._generation += 1
        self._pages.clear()
        self._requested.clear()
        self._lines.clear()
        if not keep_cursor:
            self.cursor = 0
            self.scroll_to(y=0, animate=False)
        self._count(self._generation, flt)

    def reload(self) -> None:
        """Fetch everything again (after undo or an outside change), keeping the cursor."""
        self.set_filter(self.flt, keep_cursor=True)

    @work(thread=True, exclusive=True, group="sample-count")
    def _count(self, generation: int, flt: browse.Filter) -> None:
        con = self.engine.reader()
        total = browse.count(con, flt)
        top = browse.max_sample_id(con)
        self.app.call_from_thread(self._count_loaded, generation, total, len(str(top)))

    def _count_loaded(self, generation: int, total: int, id_width: int) -> None:
        if generation != self._generation:
            return
        self.total = total
        self.loaded = True
        self.id_width = id_width
        self.cursor = min(self.cursor, max(0, total - 1))
        self.virtual_size = Size(self.size.width, total)
        self.post_message(self.Loaded(total))
        self._request(self.cursor // PAGE_SIZE)
        self.refresh()
        self._announce()

    def row_at(self, index: int) -> browse.Row | None:
        page = self._pages.get(index // PAGE_SIZE)
        if page is None:
            return None
        offset = index % PAGE_SIZE
        return page[offset] if offset < len(page) else None

    @property
    def current(self) -> browse.Row | None:
        return self.row_at(self.cursor) if self.total else None

    def loaded_rows(self) -> Iterable[tuple[int, browse.Row]]:
        for p, rows in self._pages.items():
            for i, row in enumerate(rows):
                yield p * PAGE_SIZE + i, row

    def _request(self, page: int) -> None:
        for p in (page, page + 1, page - 1):
            if 0 <= p * PAGE_SIZE < self.total and p not in self._pages and p not in self._requested:
                self._requested.add(p)
                self._fetch(self._generation, self.flt, p)

    @work(thread=True, group="sample-pages")
    def _fetch(self, generation: int, flt: browse.Filter, page: int) -> None:
        # A fast scroll asks for many pages; skip those the view has left before this ran.
        try:
            near = self._near_view(page)
        except LookupError:
            # Textual's reactives look up the active app; while the app shuts down (a screen made
            # and closed at once) that lookup fails in a worker thread. Nothing is left to show.
            return
        if generation != self._generation or not near:
            self.app.call_from_thread(self._requested.discard, page)
            return
        rows = browse.page_at(self.engine.reader(), flt, page * PAGE_SIZE, PAGE_SIZE)
        self.app.call_from_thread(self._page_loaded, generation, page, rows)

    def _near_view(self, page: int) -> bool:
        top = int(self.scroll_offset.y) // PAGE_SIZE
        bottom = (int(self.scroll_offset.y) + self.size.height) // PAGE_SIZE
        cursor = self.cursor // PAGE_SIZE
        return top - 1 <= page <= bottom + 1 or abs(page - cursor) <= 1

    def _page_loaded(self, generation: int, page: int, rows: list[browse.Row]) -> None:
        self._requested.discard(page)
        if generation != self._generation:
            return
        self._pages[page] = rows
        if len(self._pages) > MAX_PAGES:
            here = self.cursor // PAGE_SIZE
            for far in sorted(self._pages, key=lambda p: -abs(p - here))[: len(self._pages) - MAX_PAGES]:
                del self._pages[far]
        first = page * PAGE_SIZE
        self.refresh_lines(first, len(rows))
        if first <= self.cursor < first + len(rows):
            self._announce()

    # -- changes --------------------------------------------------------------------------------
    def update_status(self, ids: Iterable[int], status: str) -> None:
        """Show a new status on these rows (loaded ones), redrawing only their lines."""
        wanted = set(ids)
        for index, row in list(self.loaded_rows()):
            if row.id in wanted:
                self._pages[index // PAGE_SIZE][index % PAGE_SIZE] = replace(row, status=status)
                self.refresh_line(index)

    def replace_row(self, row: browse.Row) -> None:
        for index, old in list(self.loaded_rows()):
            if old.id == row.id:
                self._pages[index // PAGE_SIZE][index % PAGE_SIZE] = row
                self.refresh_line(index)

    # -- cursor and selection -----------------------------------------------------------------
    def move_to(self, index: int) -> None:
        if not self.total:
            return
        index = max(0, min(self.total - 1, index))
        old, self.cursor = self.cursor, index
        self.refresh_line(old)
        self.refresh_line(index)
        self.scroll_to_region(Region(0, index, 1, 1), animate=False, force=True, immediate=True)
        self._request(index // PAGE_SIZE)
        self._announce()

    def move(self, delta: int) -> None:
        self.move_to(self.cursor + delta)

    def _announce(self) -> None:
        row = self.current
        if row is not None or not self.total:
            self.post_message(self.Highlighted(self, self.cursor, row))

    def toggle_selected(self) -> None:
        row = self.current
        if row is None:
            return
        self.selected.symmetric_difference_update({row.id})
        self.anchor = self.cursor
        self.refresh_line(self.cursor)

    def select(self, ids: Iterable[int]) -> None:
        self.selected.update(ids)
        self.refresh()

    def clear_selection(self) -> None:
        self.selected.clear()
        self.anchor = None
        self.refresh()

    # -- drawing -------------------------------------------------------------------------------
    def on_resize(self) -> None:
        self.virtual_size = Size(self.size.width, self.total)
        self._lines.clear()

    def render_line(self, y: int) -> Strip:
        index = int(self.scroll_offset.y) + y
        width = self.size.width
        if index >= self.total:
            return Strip.blank(width, self.rich_style)
        row = self.row_at(index)
        if row is None:
            self._request(index // PAGE_SIZE)
            return Strip([Segment("  …".ljust(width), self.rich_style)], width)
        is_cursor = index == self.cursor
        is_selected = row.id in self.selected
        key = (row, is_selected, is_cursor, width, self.has_focus, self.id_width)
        strip = self._lines.get(key)
        if strip is None:
            strip = self._render_row(row, is_selected, is_cursor, width)
            if len(self._lines) > LINE_CACHE:
                self._lines.clear()
            self._lines[key] = strip
        return strip

    def _render_row(self, row: browse.Row, is_selected: bool, is_cursor: bool, width: int) -> Strip:
        mark, mark_style = STATUS_MARK.get(row.status, ("?", "yellow"))
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append("●" if is_selected else " ", style="bold magenta")
        text.append(mark, style=mark_style)
        text.append(f" {row.id:>{self.id_width}} ", style="dim")
        text.append(f"{(row.lang or '--')[:2]:<2} ", style="cyan")
        text.append("≡" if row.duplicate_of is not None else " ", style="yellow")
        text.append("!" if row.flags else " ", style="bold red")
        text.append(" ")
        text.append(visible(row.instruction, single_line=True))
        base = self.rich_style
        if is_cursor:
            base = base + self.get_component_rich_style("sample-list--cursor")
        elif is_selected:
            base = base + self.get_component_rich_style("sample-list--selected")
        segments = [Segment(s.text, base + s.style if s.style else base) for s in text.render(self.app.console)]
        return Strip(segments).adjust_cell_length(width, base)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._lines.clear()

    def on_focus(self) -> None:  # the cursor has a brighter colour while the list has focus
        self.refresh_line(self.cursor)

    def on_blur(self) -> None:
        self.refresh_line(self.cursor)
