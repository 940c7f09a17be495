"""Augment: LLM augmentation of the samples (`curation.augment`) with its cost known up front.

The form picks the operation, the provider (from studio.yaml, or the OPENAI_* environment when none
is configured), which samples (a status / language / limit filter, or the samples selected in
Review) and n, max cost, reject-below. Every change checks the fields as `studio augment` does
(curation.augment.spec_checks.spec_problems: a wrong one says why in the row under it) and re-runs
the dry-run estimate in a thread worker (requests, cached, tokens, USD expected and worst case): it
sends nothing and writes nothing.

Ctrl+S asks first: the dry run again, then a confirmation (studio/screens/confirm.py) with the
provider and its URL, the request count, tokens and cost and a cost cap (the form's max cost,
editable); a filter that matches no sample launches nothing. Launch there starts the job. It runs
in an app job's thread (every screen's JobProgress shows it) on `Engine.job_workspace()`, a
workspace on a DuckDB connection of its own: its landing, dedup and quality checks and judge gate
write there, so approving samples in Review meanwhile is not queued behind minutes of requests
(studio/engine.py). Its progress callback only posts a message. Escape or `c` cancels (requests in
flight finish, they are paid for). When it ends, a summary (new samples, failures by reason, USD)
and `o` opens Review on the pending samples. Past augment jobs and usage per provider are listed
below, with the columns that fit the width.
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
from ._curation import app_message, open_review

OPS = ("rewrite", "answers", "reverse", "judge")
# spec field -> (its input, the row under it that shows its problem); labels as the form names them
FIELD_WIDGETS = {"lang": ("#au-lang", "#au-err-lang"), "limit": ("#au-limit", "#au-err-limit"), "n": ("#au-n", "#au-err-n"),
                 "max_cost": ("#au-max-cost", "#au-err-max-cost"), "reject_below": ("#au-reject", "#au-err-reject")}
FIELD_LABELS = {"lang": "language", "limit": "limit", "n": "n", "max_cost": "max cost $", "reject_below": "reject <"}
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
    landing = getattr(r, "landing", None) or {}
    # what landed, and what was dropped and why (curation.augment.jobs: repeats of the lineage, duplicates)
    text.append(landing.get("summary") or f"{len(r.new_sample_ids):,} new samples", style="bold")
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


def fit_table(columns: list[tuple[str, str, bool]], rows: list[dict[str, str]], width: int | None) -> tuple[Table, bool]:
    """A Rich table of `rows` (cells by key) with the columns that fit `width`: `columns` are
    (key, header, required) in display order; the required ones always show, the others, in order,
    while they fit (no width: all). Two spaces between columns, one when the required ones need it.
    Numbers are right-aligned; nothing is cut. Returns (table, whether the required columns fit)."""
    widths = {k: max([len(h)] + [len(r[k]) for r in rows]) for k, h, _ in columns}
    shown = {k for k, _h, req in columns if req}
    need = sum(widths[k] for k in shown)
    gap = 2 if width is None or need + 2 * (len(shown) - 1) <= width else 1
    used = need + gap * (len(shown) - 1)
    for k, _h, req in columns:
        if not req and (width is None or used + gap + widths[k] <= width):
            shown.add(k)
            used += gap + widths[k]
    t = Table(box=None, padding=(0, gap, 0, 0), pad_edge=False, header_style="bold")
    keys = [k for k, _h, _r in columns if k in shown]
    for k, h, _r in columns:
        if k in shown:
            t.add_column(h, justify="left" if k in ("kind", "state", "provider", "model") else "right", no_wrap=True)
    for r in rows:
        t.add_row(*(r[k] for k in keys))
    return t, width is None or used <= width


JOB_STATES = {"running": "run", "cancelled": "stop", "interrupted": "halted", "failed": "fail"}  # when space is short


def jobs_table(jobs: list[dict[str, Any]], width: int | None = None) -> Table | Text:
    """Past augment jobs: job, state, done/total and USD always; kind and tokens as `width` allows.
    Tried in turn until one fits: whole kinds and states, kinds without `augment:`, short states."""
    if not jobs:
        return Text("no augment jobs yet", style="dim")
    rows = [{"job": str(j["id"]), "kind": visible(str(j["kind"]), single_line=True), "state": str(j["state"]),
             "done": f"{j['done'] or 0:,}/{j['total'] or 0:,}", "tokens": f"{int(j['tokens'] or 0):,}",
             "usd": f"${float(j['usd'] or 0):.4f}"} for j in jobs]
    columns = [("job", "job", True), ("kind", "kind", False), ("state", "state", True), ("done", "done", True),
               ("tokens", "tokens", False), ("usd", "USD", True)]
    short_kind = [dict(r, kind=r["kind"].removeprefix("augment:")) for r in rows]
    short_all = [dict(r, state=JOB_STATES.get(r["state"], r["state"])) for r in short_kind]
    best: Table | None = None
    for variant in (rows, short_kind, short_all):
        table, fits = fit_table(columns, variant, width)
        if fits and len(table.columns) == len(columns):
            return table
        if fits and (best is None or len(table.columns) > len(best.columns)):
            best = table
    return best if best is not None else fit_table(columns, short_all, width)[0]


def usage_table(rows: list[dict[str, Any]], width: int | None = None) -> Table | Text:
    """Usage by provider: provider, requests and USD always; model, tokens, failed, cached as `width` allows."""
    if not rows:
        return Text("no usage yet", style="dim")
    cells = [{"provider": visible(str(u["provider"]), single_line=True), "model": visible(str(u["model"]), single_line=True),
              "requests": f"{int(u['requests'] or 0):,}", "cached": f"{int(u['cached'] or 0):,}",
              "failed": f"{int(u['failed'] or 0):,}",
              "tokens": f"{int(u['prompt_tokens'] or 0) + int(u['completion_tokens'] or 0):,}",
              "usd": f"${float(u['usd'] or 0):.4f}"} for u in rows]
    columns = [("provider", "provider", True), ("model", "model", False), ("requests", "requests", True),
               ("cached", "cached", False), ("failed", "failed", False), ("tokens", "tokens", False), ("usd", "USD", True)]
    return fit_table(columns, cells, width)[0]


def launch_rows(f: Form, est: Any, provider: Any) -> tuple[list[tuple[str, Any]], str]:
    """The launch confirmation's rows (what, where, requests, tokens, cost) and its note."""
    spec = f.spec
    what = f"{spec.op} on the samples {f.label}"
    if spec.op != "judge":
        what += f", {spec.resolved_n()} per sample"
    if spec.reject_below is not None:
        what += f", judge gate: reject below {spec.reject_below:g}"
    rows: list[tuple[str, Any]] = [
        ("job", what),
        ("where", f"provider {provider.name}: {provider.base_url}, model {provider.model}, "
                  f"{provider.concurrency} at a time"),
        ("requests", f"{est.requests:,}: {est.to_send:,} to send, {est.cached:,} answered by the cache"
                     + (f" (incl. ~{est.gate_requests:,} judge requests)" if est.gate_requests else "")),
        ("tokens", f"~{est.input_tokens:,} in, ~{est.output_tokens:,} out (at most {est.output_tokens_max:,})"),
    ]
    if provider.priced:
        rows.append(("cost", Text(f"~${est.usd:.4f} expected, at most ${est.usd_max:.4f}", style="bold")))
        note = "The job stops before a request could take it past the cap (empty: no cap)."
    else:
        rows.append(("cost", Text("unknown: the provider has no prices", style="yellow")))
        note = ("No cost cap: it needs the provider's prices (studio providers add ... --input-price "
                "--output-price).")
    return rows, note


class AugmentScreen(Screen):
    BINDINGS = bindings_for("augment")
    DEFAULT_CSS = """
    #au-main { height: 1fr; }
    #au-form { width: 46; border: round $primary 50%; padding: 0 1; }
    #au-grid { grid-size: 2; grid-columns: 12 1fr; grid-rows: auto; grid-gutter: 1 0; height: auto; margin: 1 0; }
    #au-grid Label { padding: 0; }
    #au-grid .au-err { height: auto; display: none; color: $error; }
    #au-grid .au-err.-shown { display: block; }
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
        self._history: tuple | None = None  # (jobs, usage) shown last: laid out again on resize
        self._preparing = False         # the launch's dry run is being computed

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
                    yield Label("", classes="au-err au-err-lang")
                    yield Static("", id="au-err-lang", classes="au-err")
                    yield Label("limit")
                    yield Input("", id="au-limit", type="integer", placeholder="no limit", compact=True)
                    yield Label("", classes="au-err au-err-limit")
                    yield Static("", id="au-err-limit", classes="au-err")
                    yield Label("n")
                    yield Input("", id="au-n", type="integer", placeholder="default", compact=True)
                    yield Label("", classes="au-err au-err-n")
                    yield Static("", id="au-err-n", classes="au-err")
                    yield Label("max cost $")
                    yield Input("", id="au-max-cost", type="number", placeholder="no limit", compact=True)
                    yield Label("", classes="au-err au-err-max-cost")
                    yield Static("", id="au-err-max-cost", classes="au-err")
                    yield Label("reject <")
                    yield Input("", id="au-reject", type="number", placeholder="no judge gate", compact=True)
                    yield Label("", classes="au-err au-err-reject")
                    yield Static("", id="au-err-reject", classes="au-err")
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
            self.query_one("#au-result", Static).update(Text(visible(app_message(exc)), style="bold red"))
            return
        if found:  # augment.run picks a configured provider when one exists: the environment is no choice then
            box.set_options([(visible(f"{p.name} ({p.model or 'no model'})", single_line=True), p.name) for p in found])
            box.value = found[0].name

    def _number(self, selector: str, field: str, kind: type, example: str, problems: dict[str, str]) -> Any:
        raw = self.query_one(selector, Input).value.strip()
        if not raw:
            return None
        try:
            return kind(raw)
        except ValueError:
            problems[field] = f"enter a number, e.g. {example}"
            return None

    def form(self) -> Form:
        """The form's settings as a Spec; StudioError names the field that is wrong, and each wrong
        field shows its problem beside it (curation.augment.spec_checks.spec_problems: the CLI's checks)."""
        from curation.augment import Spec
        from curation.augment.spec_checks import spec_problems

        problems: dict[str, str] = {}
        op = str(self.query_one("#au-op", Select).value)
        provider = self.query_one("#au-provider", Select).value
        model = self.query_one("#au-model", Input).value.strip() or None
        limit = self._number("#au-limit", "limit", int, "100", problems)
        n = self._number("#au-n", "n", int, "3", problems)
        max_cost = self._number("#au-max-cost", "max_cost", float, "0.50", problems)
        reject = self._number("#au-reject", "reject_below", float, "3", problems)
        if reject is not None and op == "judge":
            problems["reject_below"] = "judge makes no samples to gate: leave it empty"
        common = dict(op=op, provider=None if provider == ENV else str(provider), model=model, n=n,
                      max_cost=max_cost, reject_below=reject)
        from_review = self.query_one("#au-from", Select).value == FROM_REVIEW
        status = str(self.query_one("#au-status", Select).value)
        lang = self.query_one("#au-lang", Input).value.strip() or None
        spec = (Spec(ids=review_selection(self.app), limit=limit, **common) if from_review
                else Spec(status=status, lang=lang, limit=limit, **common))
        for field, problem in spec_problems(spec).items():
            problems.setdefault(field, problem)
        self._show_field_problems(problems)
        if problems:
            field, problem = next(iter(problems.items()))
            raise StudioError(f"{FIELD_LABELS.get(field, field)}: {problem}")
        if from_review:
            if not spec.ids:
                raise StudioError("samples: nothing is selected in Review (Space or v there), or choose 'by filter below'")
            return Form(spec, f"{len(spec.ids):,} selected in Review")
        return Form(spec, "by filter")

    def _show_field_problems(self, problems: dict[str, str]) -> None:
        """Each problem in the row under its field, the field marked invalid; the others cleared."""
        for field, (input_id, err_id) in FIELD_WIDGETS.items():
            problem = problems.get(field)
            self.query_one(input_id, Input).set_class(problem is not None, "-invalid")
            err = self.query_one(err_id, Static)
            err.update(Text(visible(problem or ""), style="bold red"))
            err.set_class(problem is not None, "-shown")
            self.query_one(f".au-err-{err_id.removeprefix('#au-err-')}").set_class(problem is not None, "-shown")

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
            self.query_one("#au-estimate", Static).update(Text(visible(app_message(exc)), style="bold red"))
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
            box.update(Text(visible(app_message(est)), style="bold red"))
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
        self._history = (jobs, usage)
        box = self.query_one("#au-history")
        width = box.scrollable_content_region.width or None
        self.query_one("#au-jobs", Static).update(jobs_table(jobs, width))
        self.query_one("#au-usage", Static).update(Group(Text(""), usage_table(usage, width)))

    def on_resize(self) -> None:
        if self._history is not None:
            self.call_after_refresh(self._show_history, *self._history)

    # -- running ----------------------------------------------------------------------------------
    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "au-go":
            self.action_launch()

    def action_launch(self) -> None:
        """Check the fields, compute the dry run in a worker ("estimating…"), then ask: the
        confirmation (studio/screens/confirm.py) shows the operation, the provider and its URL, the
        request count, tokens and cost, and a cost cap field (the form's max cost). Nothing is sent
        before Launch there."""
        result = self.query_one("#au-result", Static)
        if self.job is not None:
            self.notify("an augment job is running: wait for it or cancel it (Escape)", severity="warning")
            return
        if self._preparing:
            return
        try:
            f = self.form()
        except StudioError as exc:
            result.update(Text(visible(app_message(exc)), style="bold red"))
            shown = self.query(".au-err.-shown")
            if shown:
                shown.last().scroll_visible()
            return
        self._preparing = True
        result.update(Text("estimating the job… (a dry run: nothing is sent)", style="dim"))
        self._prepare_launch(f)

    @work(thread=True, exclusive=True, group="augment-prepare")
    def _prepare_launch(self, f: Form) -> None:
        from curation import augment
        from curation.augment.providers import resolve

        try:
            view = _ReadView(self.app.engine)
            est = augment.estimate(view, f.spec)
            provider = resolve(view.read_config(), f.spec.provider, f.spec.model, f.spec.concurrency)
        except StudioError as exc:
            self.app.call_from_thread(self._not_launched, app_message(exc))
            return
        self.app.call_from_thread(self._confirm_launch, f, est, provider)

    def _not_launched(self, text: str) -> None:
        self._preparing = False
        self.query_one("#au-result", Static).update(Text(visible(text), style="bold red"))

    def _confirm_launch(self, f: Form, est: Any, provider: Any) -> None:
        from dataclasses import replace

        from .confirm import LaunchConfirmScreen

        self._preparing = False
        box = self.query_one("#au-result", Static)
        if not est.requests:
            box.update(Text(f"nothing to launch: no request for {f.spec.op} on the samples {f.label} "
                            "(does the filter match any sample?)", style="bold red"))
            return
        box.update("")
        rows, note = launch_rows(f, est, provider)

        def answer(result: dict | None) -> None:
            if result is None:
                box.update(Text("launch cancelled: nothing was sent", style="dim"))
                return
            self._start(replace(f.spec, max_cost=result["max_cost"]))

        self.app.push_screen(LaunchConfirmScreen(f"Send {est.to_send:,} requests to {provider.name}?", rows,
                                                 cap=f.spec.max_cost, show_cap=provider.priced, note=note), answer)

    def _start(self, spec: Any) -> None:
        from curation import augment

        result = self.query_one("#au-result", Static)
        if self.job is not None:
            return
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
            box.update(Text(visible(app_message(out)), style="bold red"))
        else:
            self.result = out
            box.update(summary_text(out))
            landing = getattr(out, "landing", None) or {}
            self.notify(f"augment job {out.job_id}: {landing.get('summary') or f'{len(out.new_sample_ids):,} new samples'}",
                        title="augment")
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
