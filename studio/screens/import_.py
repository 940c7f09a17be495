"""Import: bring files into the workspace from the studio (`curation.importers.import_paths`).

A path (typed, or picked in the folder browser below it: Enter on a file or folder fills the
path), the row format (detected by default), field names (`instruction=question,...`) and whether
to skip invalid rows. Ctrl+S (or the button) imports as a job. The report lists each file's
outcome and the rows that were wrong, `file:line: field: problem`; everything from the data is
shown through `visible()`. An import is one undoable operation per file (`u` in Review undoes).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Checkbox, DirectoryTree, Footer, Header, Input, Label, Select, Static

from curation.errors import StudioError
from curation.importers import FORMATS, ImportReport, import_paths
from curation.safe_text import visible

from ..bindings import bindings_for
from ..widgets.job_progress import JobProgress
from ._curation import app_message, fill_derived, run_engine_job

SHOWN_PROBLEMS = 50  # rows listed per file in the report


def report_text(report: ImportReport) -> Text:
    t = Text()
    t.append(f"{report.rows_imported:,} rows imported", style="bold green")
    if report.rows_rejected:
        t.append(f", {report.rows_rejected:,} rejected", style="bold yellow")
    for f in report.files:
        t.append("\n")
        t.append(f.summary())  # visible() already applied by FileResult.summary
        for p in f.problems[:SHOWN_PROBLEMS]:
            t.append(f"\n  {p}", style="yellow")  # RowProblem.__str__ applies visible()
        if len(f.problems) > SHOWN_PROBLEMS:
            t.append(f"\n  … and {len(f.problems) - SHOWN_PROBLEMS:,} more", style="dim")
    return t


def error_text(exc: StudioError) -> Text:
    t = Text("Nothing imported\n", style="bold red")
    t.append(visible(app_message(exc)))
    return t


class ImportScreen(Screen):
    BINDINGS = bindings_for("import")
    AUTO_FOCUS = "#im-tree"  # the browser, not the path field: number keys switch screens
    DEFAULT_CSS = """
    #im-main { height: 1fr; }
    #im-left { width: 1fr; min-width: 36; padding: 0 1; }
    #im-grid { grid-size: 2; grid-columns: 10 1fr; grid-rows: 1; grid-gutter: 1 0; height: auto; margin: 1 0; }
    #im-grid Label { padding: 0; }
    #im-buttons { height: 1; margin: 0 0 1 0; }
    #im-buttons Checkbox { margin-right: 2; }
    #im-tree { height: 1fr; border: round $primary 30%; }
    #im-report-box { width: 1fr; border: round $primary 50%; padding: 0 1; }
    """

    def __init__(self, start: Path | None = None) -> None:
        super().__init__()
        self.start = Path(start) if start is not None else Path.cwd()

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="im-main"):
            with Vertical(id="im-left"):
                with Grid(id="im-grid"):
                    yield Label("path")
                    yield Input("", id="im-path", placeholder="file or folder (JSON, JSONL, CSV, Parquet, save_to_disk)", compact=True)
                    yield Label("format")
                    yield Select([("detect", "auto")] + [(f, f) for f in FORMATS], value="auto", id="im-format", allow_blank=False, compact=True)
                    yield Label("fields")
                    yield Input("", id="im-map", placeholder="instruction=question,output=answer (optional)", compact=True)
                with Horizontal(id="im-buttons"):
                    yield Checkbox("skip invalid rows", id="im-skip", compact=True)
                    yield Button("Import (Ctrl+S)", id="im-go", variant="primary", compact=True)
                yield DirectoryTree(self.start, id="im-tree")
            with VerticalScroll(id="im-report-box"):
                yield Static(Text("Pick a file, then Ctrl+S.", style="dim"), id="im-report")
        yield JobProgress()
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#im-report-box").border_title = "Report"
        self.query_one("#im-tree").border_title = "Browse"
        self.query_one("#im-tree").border_subtitle = "Enter picks · i types a path"

    @on(DirectoryTree.FileSelected)
    @on(DirectoryTree.DirectorySelected)
    def _picked(self, event: DirectoryTree.FileSelected | DirectoryTree.DirectorySelected) -> None:
        self.query_one("#im-path", Input).value = str(event.path)

    @on(Input.Submitted, "#im-path")
    def _path_entered(self) -> None:
        self.action_run_import()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "im-go":
            self.action_run_import()

    def action_run_import(self) -> None:
        from curation.importers.mapping import parse_mapping

        box = self.query_one("#im-report", Static)
        path = self.query_one("#im-path", Input).value.strip()
        if not path:
            box.update(Text("path: type a file or folder, or pick one in the browser", style="bold red"))
            return
        try:
            mapping = parse_mapping(self.query_one("#im-map", Input).value)
        except StudioError as exc:
            box.update(Text(visible(app_message(exc).replace("--map", "fields")), style="bold red"))
            return
        fmt = self.query_one("#im-format", Select).value
        skip = self.query_one("#im-skip", Checkbox).value
        box.update(Text(f"importing {visible(path, single_line=True)}…", style="dim"))

        def done(result: Any) -> None:
            if isinstance(result, StudioError):
                box.update(error_text(result))
                self.notify("import failed: see the report", title="import", severity="error")
            else:
                box.update(report_text(result))
                self.notify(f"{result.rows_imported:,} rows imported", title="import")
                fill_derived(self.app)

        run_engine_job(self.app, "import", import_paths, [Path(path).expanduser()],
                       format=None if fmt == "auto" else str(fmt), mapping=mapping, skip_invalid=skip, on_done=done)
