"""Export: freeze a train/validation split (`curation.export.export_split`, docs/contracts.md).

The form holds the split's name, validation fraction, seed, row format, target (jsonl, parquet or
hf save_to_disk folders) and which statuses go in;
every change recomputes the preview (`preview_counts`: rows to train and val, and what stays out
as rejected, duplicate or pending) so the numbers are known before anything is written. Ctrl+S (or
the button) exports as a job. A split that exists is refused with the reason shown; ticking
"replace" (force) writes over it. The existing splits are listed from WORKSPACE/splits/*/manifest.json.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Checkbox, Footer, Header, Input, Label, Select, Static

from curation import export
from curation.errors import StudioError
from curation.safe_text import visible

from ..bindings import bindings_for
from ..widgets.job_progress import JobProgress
from ._curation import app_message, run_engine_job


@dataclass(frozen=True)
class Settings:
    name: str
    val: float
    seed: int
    format: str
    include: str
    force: bool
    target: str = "jsonl"


def next_name(existing: list[str]) -> str:
    """v1, v2, ...: the first not taken."""
    i = 1
    while f"v{i}" in existing:
        i += 1
    return f"v{i}"


def preview_table(counts: dict[str, Any]) -> Table:
    t = Table(box=None, show_header=False, padding=(0, 1))
    t.add_column(no_wrap=True)
    t.add_column(justify="right", no_wrap=True)
    t.add_row(Text("train", style="bold green"), f"{counts['train']:,}")
    t.add_row(Text("val", style="bold cyan"), f"{counts['val']:,}")
    t.add_row(Text("rows in the split", style="bold"), f"{counts['rows']:,}")
    ex = counts["excluded"]
    t.add_row(Text("left out: duplicates", style="dim"), f"{ex['duplicates']:,}")
    t.add_row(Text("left out: rejected", style="dim"), f"{ex['rejected']:,}")
    if counts["include"] == "approved":
        t.add_row(Text("left out: pending", style="dim"), f"{ex['pending']:,}")
    return t


def splits_table(splits: list[dict[str, Any]]) -> Table | Text:
    if not splits:
        return Text("no splits yet", style="dim")
    t = Table(box=None, padding=(0, 1), header_style="bold")
    t.add_column("name", no_wrap=True, overflow="ellipsis")
    t.add_column("format", no_wrap=True)
    t.add_column("train", justify="right", no_wrap=True)
    t.add_column("val", justify="right", no_wrap=True)
    t.add_column("op", justify="right", no_wrap=True)
    for s in splits:
        c = s.get("counts") or {}
        t.add_row(Text(visible(s["name"], single_line=True)), visible(str(s.get("format") or "?"), single_line=True),
                  f"{c.get('train', 0):,}", f"{c.get('val', 0):,}", str(s.get("last_operation_id") or ""))
    return t


class ExportScreen(Screen):
    BINDINGS = bindings_for("export")
    AUTO_FOCUS = ""  # no field on arrival: number keys switch screens; i, Tab or a click enters the form
    DEFAULT_CSS = """
    #ex-main { height: 1fr; }
    #ex-form { width: 1fr; min-width: 36; border: round $primary 50%; padding: 0 1; }
    #ex-grid { grid-size: 2; grid-columns: 9 1fr; grid-rows: 1; grid-gutter: 1 0; height: auto; margin: 1 0; }
    #ex-grid Label { padding: 0; }
    #ex-form Checkbox, #ex-form Button { margin: 0 0 1 0; }
    #ex-right { width: 1fr; }
    #ex-preview { height: auto; border: round $primary 30%; padding: 0 1; }
    #ex-splits { height: 1fr; border: round $primary 30%; padding: 0 1; }
    #ex-result { height: auto; max-height: 6; padding: 0 1; }
    """

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="ex-main"):
            with VerticalScroll(id="ex-form"):
                with Grid(id="ex-grid"):
                    yield Label("name")
                    yield Input("", id="ex-name", placeholder="v1", compact=True)
                    yield Label("val")
                    yield Input("0.1", id="ex-val", type="number", compact=True)
                    yield Label("seed")
                    yield Input("42", id="ex-seed", type="integer", compact=True)
                    yield Label("format")
                    yield Select([(f, f) for f in export.FORMATS], value="messages", id="ex-format", allow_blank=False, compact=True)
                    yield Label("target")
                    yield Select([(t, t) for t in export.TARGETS], value="jsonl", id="ex-target", allow_blank=False, compact=True)
                    yield Label("include")
                    yield Select([(k, k) for k in export.INCLUDES], value="approved", id="ex-include", allow_blank=False, compact=True)
                yield Checkbox("replace an existing split (force)", id="ex-force", compact=True)
                yield Button("Export (Ctrl+S)", id="ex-go", variant="primary", compact=True)
            with Vertical(id="ex-right"):
                yield Static(Text("…", style="dim"), id="ex-preview")
                yield VerticalScroll(Static("", id="ex-splits-table"), id="ex-splits")
        yield Static("", id="ex-result")
        yield JobProgress()
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#ex-form").border_title = "Split"
        self.query_one("#ex-form").border_subtitle = "i or Tab: fields"
        self.query_one("#ex-preview").border_title = "Preview"
        self.query_one("#ex-splits").border_title = "Splits"
        self.action_reload()

    def on_screen_resume(self) -> None:
        if self.is_mounted:
            self.action_reload()

    def action_reload(self) -> None:
        self._load_splits()
        self._update_preview()

    # -- reading the form -----------------------------------------------------------------------
    def settings(self) -> Settings:
        """The form's values; StudioError says which field is wrong."""
        name = self.query_one("#ex-name", Input).value.strip()
        try:
            val = float(self.query_one("#ex-val", Input).value or "0")
        except ValueError:
            raise StudioError("val: enter the validation fraction, e.g. 0.1") from None
        try:
            seed = int(self.query_one("#ex-seed", Input).value or "0")
        except ValueError:
            raise StudioError("seed: enter a whole number, e.g. 42") from None
        return Settings(name, val, seed, str(self.query_one("#ex-format", Select).value),
                        str(self.query_one("#ex-include", Select).value), self.query_one("#ex-force", Checkbox).value,
                        str(self.query_one("#ex-target", Select).value))

    @on(Input.Changed)
    @on(Select.Changed)
    @on(Checkbox.Changed)
    def _changed(self) -> None:
        self._update_preview()

    def _update_preview(self) -> None:
        try:
            s = self.settings()
        except StudioError as exc:
            self.query_one("#ex-preview", Static).update(Text(str(exc), style="bold red"))
            return
        self._preview(s)

    @work(thread=True, exclusive=True, group="export-preview")
    def _preview(self, s: Settings) -> None:
        engine = self.app.engine
        try:
            counts: Any = export.preview_counts(engine.reader(), s.val, s.seed, s.include)
        except StudioError as exc:
            counts = exc
        exists = bool(s.name) and (engine.ws.splits_dir / s.name / "manifest.json").exists()
        self.app.call_from_thread(self._show_preview, s, counts, exists)

    def _show_preview(self, s: Settings, counts: Any, exists: bool) -> None:
        box = self.query_one("#ex-preview", Static)
        if isinstance(counts, StudioError):
            box.update(Text(visible(app_message(counts)), style="bold red"))
            return
        if not exists:
            box.update(preview_table(counts))
            return
        note = (f"split {s.name!r} exists: it will be replaced" if s.force
                else f"split {s.name!r} exists: tick 'replace' (force) or choose another name")
        box.update(Group(preview_table(counts), Text(visible(note), style="bold yellow")))

    @work(thread=True, exclusive=True, group="export-splits")
    def _load_splits(self) -> None:
        splits = export.list_splits(self.app.engine.ws)
        self.app.call_from_thread(self._show_splits, splits)

    def _show_splits(self, splits: list[dict[str, Any]]) -> None:
        self.query_one("#ex-splits-table", Static).update(splits_table(splits))
        name = self.query_one("#ex-name", Input)
        if not name.value:
            name.value = next_name([s["name"] for s in splits])

    # -- exporting ------------------------------------------------------------------------------
    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ex-go":
            self.action_export()

    def action_export(self) -> None:
        result = self.query_one("#ex-result", Static)
        try:
            s = self.settings()
        except StudioError as exc:
            result.update(Text(str(exc), style="bold red"))
            return
        result.update(Text(f"exporting {s.name}…", style="dim"))

        def done(out: Any) -> None:
            if isinstance(out, StudioError):  # the engine words it for the CLI: name this form's fields
                result.update(Text(visible(app_message(out)), style="bold red"))
            else:
                c = out.counts
                result.update(Text("\n".join([f"wrote splits/{visible(s.name, single_line=True)}: {c['train']:,} train, "
                                              f"{c['val']:,} val ({s.format}, {s.target})", *out.notes()]), style="bold green"))
                self.notify(f"split {s.name} written", title="export")
            self.action_reload()

        run_engine_job(self.app, "export", export.export_split, s.name, val=s.val, seed=s.seed, format=s.format,
                       include=s.include, force=s.force, target=s.target, takes_job=False, on_done=done)
