"""Augment: LLM augmentation of the samples (`curation.augment`) with its cost known up front.

The form picks the operation, the provider (from studio.yaml, or the OPENAI_* environment when none
is configured), which samples (a status / language / limit filter, or the samples selected in
Review) and n, max cost, reject-below. Every change re-runs the dry-run estimate in a thread worker
(requests, cached, tokens, USD expected and worst case): it sends nothing and writes nothing.

Ctrl+S launches the job. It runs in an app job's thread (every screen's JobProgress shows it) on
`Engine.job_workspace()`, a workspace on a DuckDB connection of its own: its landing, dedup and
quality checks and judge gate write there, so approving samples in Review meanwhile is not queued
behind minutes of requests (studio/engine.py). Its progress callback only posts a message. Escape or `c` cancels (requests in flight finish, they are paid for). When it ends, a
summary (new samples, failures by reason, USD) and `o` opens Review on the pending samples.
Past augment jobs and usage per provider are listed below.
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
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Label, ProgressBar, Select, Static

from curation import browse
from curation.errors import StudioError
from curation.safe_text import visible

from ..bindings import bindings_for
from ..widgets.job_progress import JobProgress
from ._curation import open_review

OPS = ("rewrite", "answers", "reverse", "judge")
ENV = "__env__"  # the provider choice "environment (OPENAI_*)"
FROM_FILTER, FROM_REVIEW = "filter", "review"


class _ReadView:
    """The workspace as the augment read functions see it, with `cursor()` giving this thread's
    engine read cursor: `estimate`, `list_jobs` and `usage_by_provider` call `ws.cursor()`, which
    would touch `ws.con` off the writer thread (studio/engine.py forbids that)."""

    def __init__(self, engine: Any):
        self._engine = engine

    def cursor(self) -> Any:
        return self._engine.reader()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine.ws, name)


def review_selection(app: Any) -> list[int]:
    """Ids selected in Review (Space / v), or [] when Review was never opened or has none."""
    stacks = getattr(app, "_screen_stacks", {}) or {}
    for screen in stacks.get("review", []):
        lst = getattr(screen, "list", None)
        if lst is not None and getattr(lst, "selected", None):
            return sorted(lst.selected)
    return []


@dataclass(frozen=True)
class Form:
    spec: Any                  # curation.augment.Spec
    label: str                 # what the samples are, for the estimate's title


def estimate_table(est: Any) -> Table:
    t = Table(box=None, show_header=False, padding=(0, 1))
    t.add_column(no_wrap=True)
    t.add_column(justify="right", no_wrap=True)
    t.add_row(Text("requests", style="bold"), f"{est.requests:,}")
    t.add_row(Text("cached (not sent)", style="dim"), f"{est.cached:,}")
    t.add_row(Text("to send", style="bold cyan"), f"{est.to_send:,}")
    if est.gate_requests:
        t.add_row(Text("judge gate requests", style="dim"), f"{est.gate_requests:,}")
    t.add_row(Text("tokens (in + out)", style="dim"), f"{est.input_tokens + est.output_tokens:,}")
    if est.priced:
        t.add_row(Text("USD expected", style="bold green"), f"${est.usd:.4f}")
        t.add_row(Text("USD max", style="dim"), f"${est.usd_max:.4f}")
    else:
        t.add_row(Text("USD", style="dim"), Text("provider has no prices", style="yellow"))
    if est.skipped:
        t.add_row(Text("samples skipped", style="dim"), f"{est.skipped:,}")
    return t


def summary_text(r: Any) -> Text:
    """The end of a job: what it made, what failed and why, what it cost."""
    state = r.state if not r.stop_reason else f"{r.state} ({r.stop_reason})"
    style = "bold green" if r.state == "done" else "bold yellow"
    text = Text(f"job {r.job_id} augment:{r.op} {state}: ", style=style)
    text.append(f"{len(r.new_sample_ids):,} new samples", style="bold")
    if r.judged:
        text.append(f", {r.judged:,} judged")
    if r.rejected_ids:
        text.append(f", {len(r.rejected_ids):,} rejected by the judge")
    text.append(f", {r.sent:,} sent, {r.cached:,} cached, {r.failed:,} failed, ${r.usd:.4f}")
    for reason, n in sorted(r.failures.items()):
        text.append(f"\n  failed: {visible(reason, single_line=True)} × {n:,}", style="red")
    if r.new_sample_ids:
        text.append("\n  o: review the pending samples", style="dim")
    return text


def jobs_table(jobs: list[dict[str, Any]]) -> Table | Text:
    if not jobs:
        return Text("no augment jobs yet", style="dim")
    t = Table(box=None, padding=(0, 1), header_style="bold")
    for col, just in (("job", "right"), ("kind", "left"), ("state", "left"), ("done", "right"),
                      ("tokens", "right"), ("USD", "right")):
        t.add_column(col, justify=just, no_wrap=True)  # type: ignore[arg-type]
    for j in jobs:
        t.add_row(str(j["id"]), visible(str(j["kind"]), single_line=True), str(j["state"]),
                  f"{j['done'] or 0:,}/{j['total'] or 0:,}", f"{int(j['tokens'] or 0):,}", f"${float(j['usd'] or 0):.4f}")
    return t


def usage_table(rows: list[dict[str, Any]]) -> Table | Text:
    if not rows:
        return Text("no usage yet", style="dim")
    t = Table(box=None, padding=(0, 1), header_style="bold")
    for col in ("provider", "model", "requests", "cached", "failed", "tokens", "USD"):
        t.add_column(col, justify="left" if col in ("provider", "model") else "right", no_wrap=True)
    for u in rows:
        tokens = int(u["prompt_tokens"] or 0) + int(u["completion_tokens"] or 0)
        t.add_row(visible(str(u["provider"]), single_line=True), visible(str(u["model"]), single_line=True),
                  f"{int(u['requests'] or 0):,}", f"{int(u['cached'] or 0):,}", f"{int(u['failed'] or 0):,}",
                  f"{tokens:,}", f"${float(u['usd'] or 0):.4f}")
    return t


class AugmentScreen(Screen):
    BINDINGS = bindings_for("augment")
    DEFAULT_CSS = """
    #au-main { height: 1fr; }
    #au-form { width: 46; border: round $primary 50%; padding: 0 1; }
    #au-grid { grid-size: 2; grid-columns: 12 1fr; grid-rows: 1; grid-gutter: 1 0; height: auto; margin: 1 0; }
    #au-grid Label { padding: 0; }
    #au-form Button { margin: 0 0 1 0; }
    #au-right { width: 1fr; }
    #au-estimate { height: auto; border: round $primary 30%; padding: 0 1; }
    #au-run { height: auto; border: round $primary 30%; padding: 0 1; }
    #au-bar { margin: 0; display: none; }  /* shown from the first launch: idle, its pulse would animate */
    #au-history { height: 1fr; border: round $primary 30%; padding: 0 1; }
    """

    class Progress(Message):
        """Posted from the job's thread (thread-safe); the handler reads the job's counters."""

        def __init__(self, job: Any):
            super().__init__()
            self.job = job

    def __init__(self) -> None:
        super().__init__()
        self.job: Any = None            # the running AugmentJob
        self.result: Any = None         # the last Result
        self.estimate: Any = None       # the last Estimate shown
        self._generation = 0            # drops estimates of settings changed since

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="au-main"):
            with VerticalScroll(id="au-form"):
                with Grid(id="au-grid"):
                    yield Label("operation")
                    yield Select([(o, o) for o in OPS], value="rewrite", id="au-op", allow_blank=False, compact=True)
                    yield Label("provider")
                    yield Select([("environment (OPENAI_*)", ENV)], value=ENV, id="au-provider", allow_blank=False, compact=True)
                    yield Label("model")
                    yield Input("", id="au-model", placeholder="the provider's", compact=True)
                    yield Label("samples")
                    yield Select([("by filter below", FROM_FILTER), ("selected in Review", FROM_REVIEW)],
                                 value=FROM_FILTER, id="au-from", allow_blank=False, compact=True)
                    yield Label("status")
                    yield Select([(s, s) for s in ("all", "pending", "approved")], value="all", id="au-status",
                                 allow_blank=False, compact=True)
                    yield Label("language")
                    yield Input("", id="au-lang", placeholder="any (zh, en…)", compact=True)
                    yield Label("limit")
                    yield Input("", id="au-limit", type="integer", placeholder="no limit", compact=True)
                    yield Label("n")
                    yield Input("", id="au-n", type="integer", placeholder="default", compact=True)
                    yield Label("max cost $")
                    yield Input("", id="au-max-cost", type="number", placeholder="no limit", compact=True)
                    yield Label("reject <")
                    yield Input("", id="au-reject", type="number", placeholder="no judge gate", compact=True)
                yield Button("Launch (Ctrl+S)", id="au-go", variant="primary", compact=True)
            with Vertical(id="au-right"):
                yield Static(Text("…", style="dim"), id="au-estimate")
                with Vertical(id="au-run"):
                    yield ProgressBar(id="au-bar", show_eta=False)
                    yield Static(Text("not running", style="dim"), id="au-status-line")
                    yield Static("", id="au-result")
                with VerticalScroll(id="au-history"):
                    yield Static("", id="au-jobs")
                    yield Static("", id="au-usage")
        yield JobProgress()
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#au-form").border_title = "Augment"
        self.query_one("#au-estimate").border_title = "Dry run (nothing sent)"
        self.query_one("#au-run").border_title = "Job"
        self.query_one("#au-history").border_title = "Past jobs · usage by provider"
        self._load_providers()
        self.action_reload()

    def on_screen_resume(self) -> None:
        if self.is_mounted:
            self.action_reload()

    def action_reload(self) -> None:
        self._load_history()
        self._update_estimate()

    # -- reading the form -----------------------------------------------------------------------
    def _load_providers(self) -> None:
        from curation.augment.providers import list_providers

        box = self.query_one("#au-provider", Select)
        try:
            found = list_providers(self.app.engine.ws.read_config())
        except StudioError as exc:
            self.query_one("#au-result", Static).update(Text(visible(str(exc)), style="bold red"))
            return
        if found:  # augment.run picks a configured provider when one exists: the environment is no choice then
            box.set_options([(visible(f"{p.name} ({p.model or 'no model'})", single_line=True), p.name) for p in found])
            box.value = found[0].name

    def _number(self, selector: str, field: str, kind: type, example: str) -> Any:
        raw = self.query_one(selector, Input).value.strip()
        if not raw:
            return None
        try:
            return kind(raw)
        except ValueError:
            raise StudioError(f"{field}: enter a number, e.g. {example}") from None

    def form(self) -> Form:
        """The form's settings as a Spec; StudioError names the field that is wrong."""
        from curation.augment import Spec

        op = str(self.query_one("#au-op", Select).value)
        provider = self.query_one("#au-provider", Select).value
        model = self.query_one("#au-model", Input).value.strip() or None
        limit = self._number("#au-limit", "limit", int, "100")
        n = self._number("#au-n", "n", int, "3")
        max_cost = self._number("#au-max-cost", "max cost", float, "0.50")
        reject = self._number("#au-reject", "reject <", float, "3")
        if reject is not None and op == "judge":
            raise StudioError("reject <: the judge gate applies to generated samples; leave it empty for judge")
        common = dict(op=op, provider=None if provider == ENV else str(provider), model=model, n=n,
                      max_cost=max_cost, reject_below=reject)
        if self.query_one("#au-from", Select).value == FROM_REVIEW:
            ids = review_selection(self.app)
            if not ids:
                raise StudioError("samples: nothing is selected in Review (Space or v there), or choose 'by filter below'")
            return Form(Spec(ids=ids, limit=limit, **common), f"{len(ids):,} selected in Review")
        status = str(self.query_one("#au-status", Select).value)
        lang = self.query_one("#au-lang", Input).value.strip() or None
        return Form(Spec(status=status, lang=lang, limit=limit, **common), "by filter")

    @on(Input.Changed)
    @on(Select.Changed)
    def _changed(self) -> None:
        self._update_estimate()

    def _update_estimate(self) -> None:
        self._generation += 1
        try:
            f = self.form()
        except StudioError as exc:
            self.estimate = None
            self.query_one("#au-estimate", Static).update(Text(visible(str(exc)), style="bold red"))
            return
        self._estimate(f, self._generation)

    @work(thread=True, group="augment-estimate")
    def _estimate(self, f: Form, generation: int) -> None:
        from curation import augment

        try:
            est: Any = augment.estimate(_ReadView(self.app.engine), f.spec)
        except StudioError as exc:
            est = exc
        self.app.call_from_thread(self._show_estimate, f, est, generation)

    def _show_estimate(self, f: Form, est: Any, generation: int) -> None:
        if generation != self._generation:
            return  # the settings changed while this one was computed
        box = self.query_one("#au-estimate", Static)
        if isinstance(est, StudioError):
            self.estimate = None
            box.update(Text(visible(str(est)), style="bold red"))
            return
        self.estimate = est
        box.update(Group(Text(f"{f.spec.op} · samples {f.label}", style="bold"), estimate_table(est)))

    # -- history ----------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="augment-history")
    def _load_history(self) -> None:
        from curation import augment

        view = _ReadView(self.app.engine)
        jobs, usage = augment.list_jobs(view, limit=8), augment.usage_by_provider(view)
        self.app.call_from_thread(self._show_history, jobs, usage)

    def _show_history(self, jobs: list[dict[str, Any]], usage: list[dict[str, Any]]) -> None:
        self.query_one("#au-jobs", Static).update(jobs_table(jobs))
        self.query_one("#au-usage", Static).update(Group(Text(""), usage_table(usage)))

    # -- running ----------------------------------------------------------------------------------
    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "au-go":
            self.action_launch()

    def action_launch(self) -> None:
        from curation import augment

        result = self.query_one("#au-result", Static)
        if self.job is not None:
            self.notify("an augment job is running: wait for it or cancel it (Escape)", severity="warning")
            return
        try:
            f = self.form()
        except StudioError as exc:
            result.update(Text(visible(str(exc)), style="bold red"))
            return
        spec = f.spec
        job = augment.AugmentJob(kind=f"augment:{spec.op}", on_progress=self.post_message_progress)
        self.job, self.result = job, None
        result.update("")
        bar = self.query_one("#au-bar", ProgressBar)
        bar.display = True
        bar.update(total=None, progress=0)
        self.query_one("#au-status-line", Static).update(Text("starting…", style="dim"))
        engine = self.app.engine

        def body(j: Any) -> Any:
            job_ws = engine.job_workspace()
            try:
                return augment.run(job_ws, spec, job)
            except StudioError as exc:
                return exc
            finally:
                engine.release(job_ws)

        self.app.run_job(job.kind, body, self._done, job=job)

    def post_message_progress(self, job: Any) -> None:
        """AugmentJob's on_progress: called on the job's thread; post_message is thread-safe."""
        self.post_message(self.Progress(job))

    def on_augment_screen_progress(self, message: "AugmentScreen.Progress") -> None:
        self._show_progress(message.job)

    def _show_progress(self, job: Any) -> None:
        bar = self.query_one("#au-bar", ProgressBar)
        if job.total:
            bar.update(total=job.total, progress=job.done)
        line = Text(f"requests {job.done:,}/{job.total or 0:,}", style="bold")
        line.append(f"  tokens {job.tokens:,}  ${job.usd:.4f}  sent {job.sent:,}  cached {job.cached:,}"
                    f"  failed {job.failed:,}  new {job.produced:,}")
        if job.cancelled:
            line.append("  cancelling: waiting for requests in flight…", style="yellow")
        self.query_one("#au-status-line", Static).update(line)

    def _done(self, out: Any) -> None:
        job, self.job = self.job, None
        box = self.query_one("#au-result", Static)
        if job is not None:
            self._show_progress(job)
        if isinstance(out, StudioError):
            box.update(Text(visible(str(out)), style="bold red"))
        else:
            self.result = out
            box.update(summary_text(out))
            self.notify(f"augment job {out.job_id}: {len(out.new_sample_ids):,} new samples", title="augment")
        self.action_reload()

    def action_cancel(self) -> None:
        if self.job is None:
            return
        self.job.cancel()
        self._show_progress(self.job)

    async def action_open_review(self) -> None:
        # browse.Filter has no field for samples.operation ('augment:%'): pending is the nearest
        # filter, and generated samples land pending.
        await open_review(self.app, browse.Filter(status="pending"))
