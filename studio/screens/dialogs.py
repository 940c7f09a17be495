"""Modal dialogs the screens share: confirm a bulk action, choose a filter, edit a sample.

Each returns its answer through `dismiss` (push_screen(..., callback) or push_screen_wait), so the
screen that asked decides what to do; none of them writes to the workspace.
"""
from __future__ import annotations

import json
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static, TextArea

from curation import browse
from curation.safe_text import visible


class ConfirmScreen(ModalScreen[bool]):
    """Yes/no for an action on many samples. Enter or y confirms; Escape or n cancels."""

    BINDINGS = [Binding("y", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No")]

    def __init__(self, question: str):
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text(self.question))
            with Horizontal(classes="dialog-buttons"):
                yield Button("Yes (y)", id="yes", variant="primary")
                yield Button("No (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#yes", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)


class FilterScreen(ModalScreen["browse.Filter | None"]):
    """Pick status, flag, cluster, source, language, judge score range and duplicates mode.
    Choices come from the workspace's stats; Ctrl+S (or Enter in a field) applies, Escape cancels
    (in a field, the first Escape leaves it). One column of compact fields under 100 columns, two
    from 100; the dialog scrolls if it still does not fit and the buttons stay at its bottom."""

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+s", "apply", "Apply", priority=True)]
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    AUTO_FOCUS = "#f-status"  # a choice, not a text field; Escape from a field comes back here

    def __init__(self, current: browse.Filter, stats: dict[str, Any]):
        super().__init__()
        self.current = current
        self.stats = stats

    def _select(self, id: str, values: list[str], value: str | None) -> Select:
        options = [(visible(v, single_line=True) or "(none)", v) for v in values]
        return Select(options, value=value if value in values else Select.NULL, id=id, allow_blank=True, prompt="any",
                      compact=True)

    def compose(self) -> ComposeResult:
        c, st = self.current, self.stats
        with VerticalScroll(classes="dialog", id="filter-dialog"):
            yield Static(Text.assemble(("Filter the review list", "bold"),
                                       ("   Ctrl+S applies · Esc cancels", "dim")), id="filter-title")
            with Horizontal(classes="dialog-buttons", id="filter-buttons"):  # docked at the bottom
                yield Button("Apply (Ctrl+S)", id="apply", variant="primary", compact=True)
                yield Button("Cancel (Esc)", id="cancel", compact=True)
            with Grid(id="filter-grid"):
                yield Label("status")
                yield self._select("f-status", ["pending", "approved", "rejected"], c.status)
                yield Label("flag")
                yield self._select("f-flag", ["*"] + list(st.get("flags", {})), c.flag)
                yield Label("source")
                yield self._select("f-source", [s for s in st.get("by_source", {}) if s], c.source)
                yield Label("language")
                yield self._select("f-lang", [s for s in st.get("by_lang", {}) if s], c.lang)
                yield Label("duplicates")
                yield Select([(m, m) for m in browse.DUPLICATE_MODES], value=c.duplicates, id="f-dups", allow_blank=False,
                             compact=True)
                yield Label("cluster id")
                yield Input("" if c.cluster_id is None else str(c.cluster_id), id="f-cluster", type="integer",
                            placeholder="any", compact=True)
                yield Label("min score")
                yield Input("" if c.min_score is None else f"{c.min_score:g}", id="f-min", type="number",
                            placeholder="any", compact=True)
                yield Label("max score")
                yield Input("" if c.max_score is None else f"{c.max_score:g}", id="f-max", type="number",
                            placeholder="any", compact=True)

    def _value(self, id: str) -> str | None:
        v = self.query_one(f"#{id}", Select).value
        return None if v is Select.NULL or v is None else str(v)

    def _number(self, id: str) -> str | None:
        v = self.query_one(f"#{id}", Input).value.strip()
        return v or None

    def action_apply(self) -> None:
        cluster, lo, hi = self._number("f-cluster"), self._number("f-min"), self._number("f-max")
        self.dismiss(browse.Filter(
            status=self._value("f-status"), flag=self._value("f-flag"), source=self._value("f-source"),
            lang=self._value("f-lang"), duplicates=self._value("f-dups") or "include",
            cluster_id=int(cluster) if cluster else None,
            min_score=float(lo) if lo else None, max_score=float(hi) if hi else None,
            search=self.current.search,
        ))

    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_input_submitted(self) -> None:
        self.action_apply()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_apply() if event.button.id == "apply" else self.dismiss(None)


def editable_json(detail: browse.SampleDetail) -> str:
    """The part of a sample a person edits, as JSON: system + messages, or text."""
    if detail.kind == "text":
        data: dict[str, Any] = {"text": detail.text or ""}
    else:
        data = {"system": detail.system, "messages": detail.messages}
    return json.dumps(data, ensure_ascii=False, indent=2)


def parse_edit(text: str) -> dict[str, Any]:
    """The keyword arguments for curation.review.edit from edited JSON; ValueError says where."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ValueError("expected an object with \"messages\" (and \"system\") or \"text\"")
    unknown = set(data) - {"system", "messages", "text"}
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))}: keep system, messages or text")
    if "messages" in data:
        msgs = data["messages"]
        if not isinstance(msgs, list) or not all(isinstance(m, dict) for m in msgs):
            raise ValueError("messages: expected a list of {\"role\", \"content\"} objects")
    return data


class EditScreen(ModalScreen["dict | None"]):
    """Edit a sample's content as JSON in a TextArea. Ctrl+S saves (the JSON is checked first and
    a mistake is shown with its line), Escape discards."""

    BINDINGS = [Binding("ctrl+s", "save", "Save"), Binding("escape", "cancel", "Discard")]

    def __init__(self, detail: browse.SampleDetail):
        super().__init__()
        self.detail = detail

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="edit-dialog"):
            yield Static(Text(f"Edit sample #{self.detail.id} (Ctrl+S saves; Esc leaves the text, Esc again discards)",
                              style="bold"))
            yield TextArea(editable_json(self.detail), language=None, id="edit-text", soft_wrap=True, show_line_numbers=True)
            yield Static("", id="edit-error")

    def on_mount(self) -> None:
        self.query_one(TextArea).focus()

    def action_save(self) -> None:
        try:
            self.dismiss(parse_edit(self.query_one(TextArea).text))
        except ValueError as exc:
            self.query_one("#edit-error", Static).update(Text(f"Not saved: {exc}", style="bold red"))

    def action_cancel(self) -> None:
        self.dismiss(None)
