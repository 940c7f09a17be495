"""Home: the workspace at a glance. Samples by status, languages, sources, quality flags by rule,
duplicate clusters, the jobs table and training runs (each run's status.json through
training.rundir, the run directory's contract in code; newest started first, as `studio runs` orders them).

A thread worker gathers everything (`gather_home`) every REFRESH_SECONDS and on Ctrl+R; the
screen only draws what it got. Nothing shown depends on the clock, so snapshots are stable.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Grid
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from curation import browse
from curation.jobs import recent_jobs
from curation.safe_text import visible

from ..bindings import bindings_for, screen_key
from ..widgets.job_progress import JobProgress

if TYPE_CHECKING:
    from training.rundir import RunStatus

REFRESH_SECONDS = 5.0
MAX_ROWS = 6  # lines per list in a panel; the rest are summed into "… N more"


@dataclass(frozen=True)
class HomeData:
    stats: dict[str, Any]
    jobs: list[tuple] = field(default_factory=list)   # (id, kind, state, done, total, message)
    runs: list[tuple[str, RunStatus | None]] = field(default_factory=list)  # (run id, status; None: unreadable)


def read_runs(runs_dir: Path, limit: int = 6) -> list[tuple[str, RunStatus | None]]:
    """The newest runs' statuses, newest first in `studio runs`' order (training.rundir.start_order);
    a folder without a status shows as 'unreadable' rather than hiding it. Each status is the
    effective one, as `studio runs` and the Train screen read it: a run whose process died says
    failed (and the first reader writes that into its status.json), not running forever."""
    from training.rundir import RunStatus, effective_status, has_status, start_order

    if not runs_dir.is_dir():
        return []
    found = []
    for run in (p for p in runs_dir.iterdir() if p.is_dir()):
        try:
            status = effective_status(run) if has_status(run) else None
        except OSError:
            status = None
        found.append((run, status))
    found.sort(key=lambda rs: start_order(rs[0], rs[1] or RunStatus()), reverse=True)
    return [(run.name, status) for run, status in found[:limit]]


def gather_home(con, runs_dir: Path) -> HomeData:
    stats = browse.stats(con)
    jobs = recent_jobs(con, MAX_ROWS)
    return HomeData(stats=stats, jobs=jobs, runs=read_runs(runs_dir))


def _counts(counts: dict[str, int], empty: str = "none yet") -> Table | Text:
    if not counts:
        return Text(empty, style="dim")
    t = Table(box=None, show_header=False, padding=(0, 1), expand=True)
    t.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
    t.add_column(justify="right", no_wrap=True)
    items = list(counts.items())
    for k, n in items[:MAX_ROWS]:
        t.add_row(Text(visible(k or "(none)", single_line=True)), f"{n:,}")
    if len(items) > MAX_ROWS:
        t.add_row(Text(f"… {len(items) - MAX_ROWS} more", style="dim"), f"{sum(n for _, n in items[MAX_ROWS:]):,}")
    return t


def samples_panel(st: dict[str, Any]) -> Table:
    t = _counts({"pending": st["by_status"].get("pending", 0), "approved": st["by_status"].get("approved", 0),
                 "rejected": st["by_status"].get("rejected", 0), "total": st["total"]})
    t.add_row(Text("exportable", style="dim"), f"{st['exportable']['approved']:,}")
    return t


def flags_panel(st: dict[str, Any]) -> Table | Text:
    return _counts({rule: v["samples"] for rule, v in st["flags"].items()}, "no flags (run `studio quality`)")


def dups_panel(st: dict[str, Any]) -> Table:
    c = st["clusters"]
    return _counts({"clusters": c["count"], "unresolved": c["unresolved"], "in clusters": c["members"],
                    "marked duplicate": c["duplicates_marked"]})


def activity_panel(data: HomeData) -> Table | Text:
    if not data.jobs and not data.runs:
        return Text("no jobs or runs yet", style="dim")
    t = Table(box=None, show_header=False, padding=(0, 1), expand=True)
    t.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
    t.add_column(no_wrap=True)
    t.add_column(justify="right", no_wrap=True)
    for jid, kind, state, done, total, _msg in data.jobs:
        progress = f"{done:,}/{total:,}" if total else f"{done:,}"
        t.add_row(Text(f"job {jid} {visible(kind, single_line=True)}"), Text(state, style=_state_style(state)), progress)
    for run_id, status in data.runs:
        step = f"{status.step or 0}/{status.max_steps or '?'}" if status is not None else ""
        state = str(status.state) if status is not None else "unreadable"
        t.add_row(Text(f"run {visible(run_id, single_line=True)}"), Text(state, style=_state_style(state)), step)
    return t


def _by_file_name(by_source: dict[str, int]) -> dict[str, int]:
    """Sources by file name (full paths are long, and differ between machines)."""
    out: dict[str, int] = {}
    for path, n in by_source.items():
        name = Path(path).name if path else ""
        out[name] = out.get(name, 0) + n
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


def empty_hint(import_key: str) -> Text:
    """What a fresh workspace's Home says first: how to get samples in."""
    t = Text()
    t.append("empty workspace: ", style="bold")
    t.append(f"press {import_key} to import files", style="bold yellow")
    t.append(" (or `studio import FILE`)")
    return t


def _state_style(state: str) -> str:
    return {"running": "bold yellow", "done": "green", "failed": "bold red", "cancelled": "dim"}.get(state, "")


class HomeScreen(Screen):
    BINDINGS = bindings_for("home")
    PANELS = ("samples", "languages", "sources", "flags", "duplicates", "activity")
    TITLES = {"samples": "Samples", "languages": "Languages", "sources": "Sources", "flags": "Quality flags",
              "duplicates": "Duplicates", "activity": "Jobs and runs"}

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="home-hint")
        with Grid(id="home-grid"):
            for name in self.PANELS:
                panel = Static(Text("…", style="dim"), id=f"home-{name}", classes="panel")
                panel.border_title = self.TITLES[name]
                yield panel
        yield JobProgress()
        yield Footer()

    def on_mount(self) -> None:
        self.action_refresh_stats()
        self.set_interval(REFRESH_SECONDS, self.action_refresh_stats)

    def on_screen_resume(self) -> None:
        self.action_refresh_stats()

    def action_refresh_stats(self) -> None:
        self._gather()

    @work(thread=True, exclusive=True, group="home")
    def _gather(self) -> None:
        engine = self.app.engine
        data = gather_home(engine.reader(), engine.ws.runs_dir)
        self.app.call_from_thread(self.show, data)

    def show(self, data: HomeData) -> None:
        st = data.stats
        hint = self.query_one("#home-hint", Static)
        hint.display = st["total"] == 0
        if hint.display:
            hint.update(empty_hint(screen_key("import", getattr(getattr(self.app, "_settings", None), "keymap", None))))
        self.query_one("#home-samples", Static).update(samples_panel(st))
        langs = dict(st["by_lang"])
        if st.get("lang_undetected"):  # rows a fast import left for the background job (store.fill_derived)
            langs["detecting…"] = st["lang_undetected"]
        self.query_one("#home-languages", Static).update(_counts(langs))
        self.query_one("#home-sources", Static).update(_counts(_by_file_name(st["by_source"])))
        self.query_one("#home-flags", Static).update(flags_panel(st))
        self.query_one("#home-duplicates", Static).update(dups_panel(st))
        self.query_one("#home-activity", Static).update(activity_panel(data))
