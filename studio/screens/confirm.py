"""The launch confirmation: what will run, where, on which device, what it needs and costs, asked
before a training run or an augmentation job starts (issue 15: one Enter on a focused Launch
button started a 7B LoRA on a CPU; ctrl+s sent 274 requests with no cap).

Cancel has the focus, so an Enter that follows the one that opened the dialog cancels; `y` or a click
on Launch confirms; Escape or `n` cancels (in the cost cap field, the first Escape leaves the field,
as everywhere: studio/bindings.py). A launch that cannot work comes with its refusal: the reason in
red and no Launch button. The dialog returns {"max_cost": float | None} on Launch, None otherwise;
it decides nothing itself. It fits 80x24: the rows scroll, the buttons stay.
"""
from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from curation.safe_text import visible


def rows_table(rows: list[tuple[str, Any]]) -> Table:
    """Label / value rows (a value may be a rich Text), the labels in one narrow column."""
    t = Table(box=None, show_header=False, padding=(0, 1, 0, 0), expand=True)
    t.add_column(no_wrap=True, style="bold", width=8)
    t.add_column(ratio=1)
    for label, value in rows:
        t.add_row(label, value if isinstance(value, Text) else Text(visible(str(value))))
    return t


class LaunchConfirmScreen(ModalScreen["dict | None"]):
    """`LaunchConfirmScreen(title, rows, refusal=None, cap=None, show_cap=False, note="")`:
    rows are (label, value) pairs; `show_cap` adds a "cost cap $" field holding `cap` (empty: no cap)."""

    BINDINGS = [Binding("y", "launch", "Launch"), Binding("n,escape", "cancel", "Cancel")]
    AUTO_FOCUS = "#cf-cancel"
    DEFAULT_CSS = """
    LaunchConfirmScreen { align: center middle; }
    #cf-dialog { width: 100%; max-width: 96; height: auto; max-height: 100%; background: $panel;
                 border: thick $primary; padding: 0 1; }
    #cf-title { text-style: bold; margin-bottom: 1; }
    #cf-body { height: auto; }
    #cf-refusal { color: $error; text-style: bold; margin-top: 1; height: auto; }
    #cf-cap-row { height: auto; margin-top: 1; }
    #cf-cap-row Label { width: 12; }
    #cf-cap { width: 16; }
    #cf-cap-error { color: $error; height: auto; }
    #cf-buttons { dock: bottom; height: 2; padding-top: 1; }
    #cf-buttons Button { margin-right: 2; }
    """

    def __init__(self, title: str, rows: list[tuple[str, Any]], *, refusal: str | None = None,
                 cap: float | None = None, show_cap: bool = False, note: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.rows = rows
        self.refusal = refusal
        self.cap = cap
        self.show_cap = show_cap and refusal is None
        self.note = note

    def compose(self) -> ComposeResult:
        with Vertical(id="cf-dialog"):
            yield Static(Text(visible(self.title_text, single_line=True)), id="cf-title")
            with VerticalScroll(id="cf-body"):
                yield Static(rows_table(self.rows), id="cf-rows")
                if self.refusal:
                    yield Static(Text("Refused: " + visible(self.refusal)), id="cf-refusal")
                if self.show_cap:
                    with Horizontal(id="cf-cap-row"):
                        yield Label("cost cap $")
                        yield Input("" if self.cap is None else f"{self.cap:g}", id="cf-cap", type="number",
                                    placeholder="no cap", compact=True)
                    yield Static("", id="cf-cap-error")
                if self.note:
                    yield Static(Text(visible(self.note), style="dim"), id="cf-note")
            with Horizontal(id="cf-buttons"):
                if self.refusal:
                    yield Button("Close (Esc)", id="cf-cancel", compact=True)
                else:
                    yield Button("Cancel (Esc)", id="cf-cancel", compact=True)
                    yield Button("Launch (y)", id="cf-launch", variant="primary", compact=True)

    def on_mount(self) -> None:
        self.query_one("#cf-cancel", Button).focus()

    def _cap(self) -> tuple[bool, float | None]:
        if not self.show_cap:
            return True, self.cap
        raw = self.query_one("#cf-cap", Input).value.strip()
        if not raw:
            return True, None
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if value <= 0:
            self.query_one("#cf-cap-error", Static).update(
                Text("cost cap: a number of USD above 0, or empty for no cap", style="bold red"))
            return False, None
        return True, value

    def action_launch(self) -> None:
        if self.refusal:
            return
        ok, cap = self._cap()
        if ok:
            self.dismiss({"max_cost": cap})

    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "cf-launch":
            self.action_launch()
        else:
            self.action_cancel()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter in the cap field goes to the Launch button: a second Enter there launches."""
        event.stop()
        self.query_one("#cf-launch", Button).focus()
