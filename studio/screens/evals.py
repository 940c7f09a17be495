"""Eval: is my fine-tune better than the base, and where is it still wrong?

Top: a finished run (Select) and its evals, newest first, each on one line with every model's
accuracy (`eval-20260101-120000  base 41% · adapter 63%  50 items · contains · val`). Middle: the
selected eval's items, one ✓/✗ column per model (short labels: `base`, `adapter` for the run's own
adapter, other names truncated), sized to the terminal so it fits 80 columns. Bottom: the item
under the cursor in full: prompt, reference, and every model's answer side by side, each marked
right or wrong with the scorer's detail.

`d` cycles a filter (all → base right, adapter wrong → adapter right, base wrong → both wrong);
the filter and its count are the items table's title. `n` opens a small form and runs
`training.evaluate.run_eval` as an app job (`app.run_job`: progress in JobProgress, Ctrl+X
cancels through a threading.Event that run_eval checks between batches, so a cancelled eval keeps
what it finished); the eval set is read as `studio eval --on` reads it (split name or folder, or a
file). `w` asks `curation.why.nearest_training_rows` which rows of the run's training split sit
nearest to the item (its prompt and the adapter's answer, `item_query`, as `studio why` does), on a
Workspace of its own connection (`engine.job_workspace()`, released after) in a thread worker, and
shows them with their curation history in a scrolling modal.

Everything that reads files or loads models runs in thread workers; results that arrive for a run
or eval no longer selected are dropped. Model text is shown through safe_text.visible.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DataTable, Footer, Header, Input, Label, OptionList, Select, Static
from textual.widgets.option_list import Option

from curation.errors import Cancelled, StudioError
from curation.jobs import Job
from curation.safe_text import visible

from ..bindings import bindings_for
from ..widgets.job_progress import JobProgress
from ._curation import app_message

if TYPE_CHECKING:
    from training.rundir import RunInfo

DEFAULT_LIMIT = 50
DEFAULT_MAX_NEW_TOKENS = 64
BATCH_SIZE = 8
FORM_SCORERS = ("contains", "exact", "regex", "numeric", "json")  # judge needs a provider: the CLI's
PARTS = ("val", "train", "all")
LABEL_MAX = 10
WHY_K = 5

# (filter id, title template); {b} and {a} become the base's and the adapter's labels
FILTERS = [
    ("all", "all items"),
    ("base_only", "{b} right, {a} wrong"),
    ("adapter_only", "{a} right, {b} wrong"),
    ("both_wrong", "both wrong"),
]


# --------------------------------------------------------------------------- pure helpers

@dataclass(frozen=True)
class DoneRun:
    """A run whose state is done, and the split it trained on ("" when its config.yaml names none)."""

    info: RunInfo
    split: str

    @property
    def id(self) -> str:
        return self.info.id


def finished_runs(runs_dir: Path) -> list[DoneRun]:
    """Runs whose state is done, newest first, each with its training split when its config.yaml says."""
    from training.config import load_run_config
    from training.errors import TrainingError
    from training.rundir import RunState
    from training.runs import list_runs

    out = []
    for r in reversed(list_runs(runs_dir)):
        if r.state != RunState.DONE:
            continue
        try:
            split = str(load_run_config(r.path).data.split or "")
        except (TrainingError, OSError, ValueError):
            split = ""
        out.append(DoneRun(r, split))
    return out


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(1, width - 1)] + "…"


def model_labels(models: list[dict[str, Any]], run_id: str | None) -> dict[str, str]:
    """Short column labels: `base`, `adapter` for the run's own adapter, other names truncated."""
    labels: dict[str, str] = {}
    used: set[str] = set()
    for m in models:
        name = str(m.get("name", ""))
        if m.get("kind") == "base" or name == "base":
            label = "base"
        elif name == run_id and m.get("kind", "adapter") == "adapter":
            label = "adapter"
        else:
            label = _cut(visible(name, single_line=True), LABEL_MAX)
        n = 2
        while label in used:
            label = _cut(label, LABEL_MAX - 1)[: LABEL_MAX - 1] + str(n)
            n += 1
        used.add(label)
        labels[name] = label
    return labels


def roles(models: list[dict[str, Any]], labels: dict[str, str]) -> tuple[str | None, str | None]:
    """(base model name, adapter model name) for the filters: the models labelled base and adapter,
    else the first two models."""
    names = [str(m.get("name")) for m in models]
    base = next((n for n in names if labels.get(n) == "base"), None)
    adapter = next((n for n in names if labels.get(n) == "adapter"), None)
    if adapter is None:
        adapter = next((str(m["name"]) for m in models if m.get("kind") in ("adapter", "merged")
                        and str(m["name"]) != base), None)
    rest = [n for n in names if n not in (base, adapter)]
    if base is None and rest:
        base = rest.pop(0)
    if adapter is None and rest:
        adapter = rest.pop(0)
    return base, adapter


def filter_rows(rows: list[dict[str, Any]], kind: str, base: str | None, adapter: str | None) -> list[dict[str, Any]]:
    """The items a filter keeps; an item a model did not answer (cancelled eval) is in `all` only."""
    from training.evaluate import disagreements

    if kind == "all" or base is None or adapter is None:
        return list(rows)
    if kind == "base_only":
        return disagreements(rows, base, adapter)
    if kind == "adapter_only":
        return disagreements(rows, adapter, base)
    return [r for r in rows if r["answers"].get(base, {}).get("correct") is False
            and r["answers"].get(adapter, {}).get("correct") is False]


def filter_title(kind: str, labels: dict[str, str], base: str | None, adapter: str | None) -> str:
    template = dict(FILTERS)[kind]
    return template.format(b=labels.get(base or "", "base"), a=labels.get(adapter or "", "adapter"))


def eval_line(summary: dict[str, Any], run_id: str | None) -> Text:
    """One eval on one line: id, each model's accuracy, items, scorer, part."""
    models = summary.get("models") or []
    labels = model_labels(models, run_id)
    text = Text()
    text.append(visible(str(summary.get("eval_id") or Path(summary.get("path", "?")).name), single_line=True),
                style="bold")
    text.append("  ")
    for i, m in enumerate(models):
        if i:
            text.append(" · ", style="dim")
        text.append(f"{labels.get(str(m.get('name')), '?')} ")
        text.append(f"{float(m.get('accuracy') or 0):.0%}", style="bold")
    text.append(f"  {summary.get('items', '?')} items · {visible(str(summary.get('scorer', '?')), single_line=True)}"
                f" · {visible(str(summary.get('part', '?')), single_line=True)}", style="dim")
    if summary.get("cancelled"):
        text.append("  CANCELLED", style="bold yellow")
    text.no_wrap = True
    text.overflow = "ellipsis"
    return text


def prompt_of(row: dict[str, Any]) -> str:
    return next((str(m.get("content", "")) for m in reversed(row.get("messages") or []) if m.get("role") == "user"), "")


def mark(answer: dict[str, Any] | None) -> Text:
    if not answer or "correct" not in answer:
        return Text("·", style="dim")
    return Text("✓", style="bold green") if answer["correct"] else Text("✗", style="bold red")


def item_origin(row: dict[str, Any]) -> str:
    """Where an eval item came from: `fixture.json row 12`, or "" when its source does not say."""
    src = row.get("source") or {}
    if not src.get("source_file"):
        return ""
    where = visible(str(src["source_file"]), single_line=True)
    return where + (f" row {src['source_row']}" if src.get("source_row") is not None else "")


def detail_view(row: dict[str, Any], models: list[dict[str, Any]], labels: dict[str, str],
                scorer: str) -> Group:
    """The item in full: the prompt turns, the reference, each answer side by side."""
    parts: list[Any] = []
    msgs = row.get("messages") or []
    prompt = Text("prompt ", style="bold")
    if len(msgs) > 1:  # a conversation: each turn on its own line, with its role
        for m in msgs:
            role = str(m.get("role", "?"))
            prompt.append(f"\n{role}: ", style="bold cyan" if role == "user" else "dim")
            prompt.append(visible(str(m.get("content", ""))))
    else:
        prompt.append(visible(str(msgs[0].get("content", ""))) if msgs else "")
    parts.append(prompt)
    parts.append(Text("reference ", style="bold").append(visible(str(row.get("reference", "")))))
    table = Table(box=box.SIMPLE_HEAD, expand=True, padding=(0, 1), show_edge=False)
    cells: list[Any] = []
    for m in models:
        name = str(m.get("name"))
        ans = (row.get("answers") or {}).get(name)
        label = labels.get(name, name)
        if not ans or "correct" not in ans:
            table.add_column(Text(f"{label} · not answered", style="dim"), ratio=1)
            cells.append(Text("(the eval was cancelled before this answer)", style="dim"))
            continue
        ok = bool(ans.get("correct"))
        table.add_column(Text(f"{label} {'✓ right' if ok else '✗ wrong'}", style="bold green" if ok else "bold red"),
                         ratio=1)
        cell = Text(visible(str(ans.get("text", ""))) or "(empty answer)")
        why = f"{scorer}: {ans['detail']}" if ans.get("detail") else f"{scorer}: {'match' if ok else 'no match'}"
        cell.append(f"\n{visible(why)}", style="italic")
        extra = []
        if isinstance(ans.get("score"), (int, float)):
            extra.append(f"score {ans['score']:.2f}")
        if ans.get("tokens") is not None:
            extra.append(f"{ans['tokens']} tok")
        if isinstance(ans.get("seconds"), (int, float)):
            extra.append(f"{ans['seconds']:.2f}s")
        if extra:
            cell.append("\n" + " · ".join(extra), style="dim")
        cells.append(cell)
    if cells:
        table.add_row(*cells)
        parts.append(table)
    return Group(*parts)


@dataclass
class EvalRequest:
    run_id: str
    models: list[str]
    source: str
    part: str
    scorer: str
    limit: int | None
    max_new_tokens: int


def eval_request(form: dict[str, str]) -> EvalRequest:
    """The form's fields checked; a StudioError names the field and what to type."""
    run_id = form.get("run", "").strip()
    if not run_id:
        raise StudioError("run: pick a finished run (train one on the Train screen, key 8)")
    models = [m for m in form.get("models", "").replace(",", " ").split() if m]
    if not models:
        raise StudioError("models: name at least one: base, a run id, merged:RUN or a base model")
    source = form.get("source", "").strip()
    if not source:
        raise StudioError("eval set: give a split name or folder, or a data file")
    part = form.get("part", "val")
    if part not in PARTS:
        raise StudioError(f"part {part!r}: use {', '.join(PARTS)}")
    scorer = form.get("scorer", "contains")
    if scorer not in FORM_SCORERS:
        raise StudioError(f"scorer {scorer!r}: use {', '.join(FORM_SCORERS)}")

    def whole(name: str, value: str, lo: int, hi: int, example: int) -> int:
        try:
            n = int(value)
        except ValueError:
            raise StudioError(f"{name}: {value!r} is not a whole number; e.g. {example}") from None
        if not lo <= n <= hi:
            raise StudioError(f"{name}: {n} is out of range; use {lo} to {hi}")
        return n

    raw_limit = form.get("limit", "").strip()
    limit = whole("limit", raw_limit, 1, 10_000_000, DEFAULT_LIMIT) if raw_limit else None
    max_new = whole("max new tokens", form.get("max_new_tokens", "").strip(), 1, 8192, DEFAULT_MAX_NEW_TOKENS)
    return EvalRequest(run_id, models, source, part, scorer, limit, max_new)


def new_eval_id(run_dir: Path) -> str:
    from training.evaluate import eval_dir

    base = time.strftime("eval-%Y%m%d-%H%M%S")
    eval_id, n = base, 2
    while eval_dir(run_dir, eval_id).exists():
        eval_id, n = f"{base}-{n}", n + 1
    return eval_id


@dataclass
class EvalJob(Job):
    """A Job whose cancel also sets `stop`, the threading.Event run_eval checks between batches (a
    Job's own check() would raise inside run_eval and lose the answers finished so far)."""

    stop: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        super().cancel()
        self.stop.set()


def progress_to_job(job: Job, labels: dict[str, str]):
    """run_eval's progress(done, total, model name) as Job fields (JobProgress polls them)."""

    def progress(done: int, total: int, model: str) -> None:
        job.total = total
        job.done = done
        job.set_message(f"answering with {labels.get(model, model)}")

    return progress


def run_eval_job(job: EvalJob, req: EvalRequest, ws_root: Path) -> tuple[str, Any]:
    """The eval as a job body (a worker thread): the eval set as `studio eval --on` reads it (a split
    name, a split folder or a data file), its items first (a set with no rows fails before any model
    loads), then the models, then run_eval into RUN/evals/EVAL_ID of the form's run. Load failures
    become StudioErrors; the job runner says those and TrainingErrors in one notification line."""
    from training.evaluate import eval_dir, load_items, resolve_eval_set, resolve_models, run_eval

    runs_dir = Path(ws_root) / "runs"
    run_dir = runs_dir / req.run_id
    try:
        job.set_message("reading the eval items…")
        specs = resolve_models(req.models, runs_dir)
        source = resolve_eval_set(req.source, Path(ws_root) / "splits", specs)
        items = load_items(source, part=req.part, limit=req.limit)
        base = None
        if not any(s.kind in ("adapter", "model") for s in specs):
            from training.inference import describe_run  # `base` alone: the selected run's base

            d = describe_run(run_dir)
            base = d.base_path if d.untrained_base else d.base
        if job.cancelled:
            raise Cancelled("eval cancelled before it started")
        labels = model_labels([{"name": s.name, "kind": s.kind} for s in specs], req.run_id)
        job.total = len(items) * len(specs)
        job.set_message(f"loading {', '.join(labels.values())}…")
        eval_id = new_eval_id(run_dir)
        result = run_eval(source, specs, scorer=req.scorer, part=req.part, limit=req.limit,
                          max_new_tokens=req.max_new_tokens, batch_size=BATCH_SIZE, base=base,
                          out_dir=eval_dir(run_dir, eval_id), eval_id=eval_id,
                          progress=progress_to_job(job, labels), cancel=job.stop, items=items)
    except (OSError, ValueError, RuntimeError) as exc:  # a model that will not load, out of memory
        raise StudioError(f"eval failed: {exc}") from None
    return req.run_id, result


# --------------------------------------------------------------------------- modals

class NewEvalScreen(ModalScreen["EvalRequest | None"]):
    """The new-eval form. Ctrl+S starts (fields are checked first: a mistake is one line, the form
    stays open), Escape cancels."""

    BINDINGS = [Binding("ctrl+s", "start", "Start", priority=True), Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    NewEvalScreen { align: center middle; }
    #ne-dialog { width: 80%; max-width: 90; height: auto; max-height: 100%; padding: 0 1; }
    #ne-grid { grid-size: 2; grid-columns: 15 1fr; grid-rows: 1; grid-gutter: 0 1; height: auto; margin-top: 1; }
    #ne-error { height: auto; margin-top: 1; }
    #ne-buttons { height: auto; margin-top: 1; }
    #ne-buttons Button { margin-right: 2; }
    """

    def __init__(self, runs: list[DoneRun], run_id: str):
        super().__init__()
        self.runs = runs
        self.splits = {r.id: r.split for r in runs}
        self.run_id = run_id

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="ne-dialog"):
            yield Static(Text("New eval (Ctrl+S starts, Esc cancels)", style="bold"))
            with Grid(id="ne-grid"):
                yield Label("run")
                yield Select([(visible(r.id, single_line=True), r.id) for r in self.runs], value=self.run_id,
                             id="ne-run", allow_blank=False, compact=True)
                yield Label("models")
                yield Input(f"base {self.run_id}", id="ne-models", compact=True,
                            placeholder="base RUN merged:RUN smollm2-135m-instruct")
                yield Label("eval set")
                yield Input(self.splits.get(self.run_id, ""), id="ne-source", compact=True,
                            placeholder="split name or folder, or a data file")
                yield Label("part")
                yield Select([(p, p) for p in PARTS], value="val", id="ne-part", allow_blank=False, compact=True)
                yield Label("scorer")
                yield Select([(s, s) for s in FORM_SCORERS], value="contains", id="ne-scorer", allow_blank=False,
                             compact=True)
                yield Label("limit")
                yield Input(str(DEFAULT_LIMIT), id="ne-limit", compact=True, placeholder="empty: every item")
                yield Label("max new tokens")
                yield Input(str(DEFAULT_MAX_NEW_TOKENS), id="ne-max-new", compact=True)
            yield Static("", id="ne-error")
            with Horizontal(id="ne-buttons"):
                yield Button("Start (^S)", id="ne-go", variant="primary", compact=True)
                yield Button("Cancel (Esc)", id="ne-cancel", compact=True)

    @on(Select.Changed, "#ne-run")
    def _run_changed(self, event: Select.Changed) -> None:
        new = str(event.value)
        if event.value is Select.NULL or new == self.run_id:
            return
        models = self.query_one("#ne-models", Input)
        models.value = " ".join(new if m == self.run_id else m for m in models.value.split()) or f"base {new}"
        source = self.query_one("#ne-source", Input)
        if source.value.strip() in ("", self.splits.get(self.run_id, "")):
            source.value = self.splits.get(new, "")
        self.run_id = new

    def form(self) -> dict[str, str]:
        return {"run": str(self.query_one("#ne-run", Select).value),
                "models": self.query_one("#ne-models", Input).value,
                "source": self.query_one("#ne-source", Input).value,
                "part": str(self.query_one("#ne-part", Select).value),
                "scorer": str(self.query_one("#ne-scorer", Select).value),
                "limit": self.query_one("#ne-limit", Input).value,
                "max_new_tokens": self.query_one("#ne-max-new", Input).value}

    def action_start(self) -> None:
        try:
            req = eval_request(self.form())
        except StudioError as exc:
            self.query_one("#ne-error", Static).update(Text(visible(str(exc), single_line=True), style="bold red"))
            self.app.notify(visible(str(exc), single_line=True), title="eval", severity="error")
            return
        self.dismiss(req)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_input_submitted(self) -> None:
        self.action_start()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_start() if event.button.id == "ne-go" else self.dismiss(None)


def _compact(value: Any, width: int = 160) -> str:
    import json

    if isinstance(value, (dict, list)):
        try:
            value = json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            value = str(value)
    return _cut(visible(str(value), single_line=True), width)


def history_lines(row: dict[str, Any]) -> list[Text]:
    """A training row's curation history (curation.why.sample_history) as short dim lines."""
    h = row.get("history")
    src = row.get("source") or {}
    if not isinstance(h, dict):
        where = src.get("source_file")
        line = Text("not in this workspace (the split was exported elsewhere)", style="dim")
        if where:
            line.append(f"; from {_compact(where, 60)}" + (f":{src['source_row']}" if src.get("source_row") is not None
                                                           else ""), style="dim")
        return [line]
    out: list[Text] = []

    def add(label: str, value: str) -> None:
        out.append(Text(f"{label}: ", style="dim bold").append(value, style="dim"))

    where = h.get("source_file") or src.get("source_file")
    row_no = h.get("source_row") if h.get("source_row") is not None else src.get("source_row")
    if where:
        add("source", _compact(where, 80) + (f":{row_no}" if row_no is not None else ""))
    if h.get("status"):
        add("status", _compact(h["status"], 20))
    flags = h.get("flags") or []
    if flags:
        add("flags", ", ".join(_compact(f.get("rule_id", f) if isinstance(f, dict) else f, 40) for f in flags))
    cluster = h.get("cluster")
    if isinstance(cluster, dict):
        keeper = "the keeper" if cluster.get("is_keeper") else f"keeper #{cluster.get('keeper_id')}"
        add("cluster", f"#{cluster.get('id')} ({_compact(cluster.get('method'), 12)}, {cluster.get('size')} members, "
                       f"{keeper})")
    elif cluster:
        add("cluster", _compact(cluster, 60))
    if h.get("duplicate_of") is not None:
        add("duplicate of", f"#{h['duplicate_of']}")
    edits = h.get("edits")
    if isinstance(edits, dict) and edits.get("earlier_versions"):
        latest = edits.get("latest") or {}
        what = ", ".join(_compact(latest.get(k), 60) for k in ("kind", "reason") if latest.get(k))
        add("edits", f"{edits['earlier_versions']} earlier version(s)" + (f"; last: {what}" if what else ""))
    aug = h.get("augment")
    if isinstance(aug, dict):
        bits = [_compact(aug.get("operation") or "augmented", 20)]
        if aug.get("parent_id") is not None:
            bits.append(f"from #{aug['parent_id']}")
        if aug.get("provider") or aug.get("model"):
            bits.append(_compact("/".join(str(x) for x in (aug.get("provider"), aug.get("model")) if x), 40))
        add("augmentation", " ".join(bits))
    judge = h.get("judge")
    if isinstance(judge, dict) and judge.get("score") is not None:
        add("judge", f"{judge['score']}" + (f" ({_compact(judge.get('reason'), 80)})" if judge.get("reason") else ""))
    return out


def why_view(item_id: str, model: str | None, prompt: str, rows: list[dict[str, Any]],
             own_sample: Any = None) -> Group:
    title = Text(f"Nearest training rows to {visible(item_id, single_line=True)}", style="bold")
    if model:
        title.append(f" (prompt + {visible(model, single_line=True)}'s answer)", style="dim")
    parts: list[Any] = [title, Text(_cut(visible(prompt, single_line=True), 300), style="dim")]
    if not rows:
        parts.append(Text("\nno training row shares a shingle with this item", style="yellow"))
    for i, r in enumerate(rows, 1):
        head = Text(f"\n{r.get('rank', i)}. sample {visible(str(r.get('sample_id', '?')), single_line=True)}",
                    style="bold")
        if r.get("row") is not None:
            head.append(f" · train row {r['row']}", style="dim")
        sim = r.get("similarity")
        if isinstance(sim, (int, float)):
            head.append(f" · similarity {sim:.2f}", style="cyan")
        if own_sample is not None and r.get("sample_id") == own_sample:
            head.append(" · this item's own sample", style="bold yellow")
        parts.append(head)
        parts.append(Text("instruction: ", style="bold").append(_cut(visible(str(r.get("instruction", ""))), 600)))
        parts.append(Text("answer: ", style="bold").append(_cut(visible(str(r.get("answer", ""))), 600)))
        parts += history_lines(r)
    return Group(*parts)


class WhyScreen(ModalScreen[None]):
    """The nearest training rows to an item's prompt; scrolls; Escape, q or w closes."""

    BINDINGS = [Binding("escape,q,w", "close", "Close")]
    DEFAULT_CSS = """
    WhyScreen { align: center middle; }
    #why-dialog { width: 90%; max-width: 120; height: 90%; padding: 0 1; }
    """

    def __init__(self, item_id: str, model: str | None, prompt: str, rows: list[dict[str, Any]],
                 own_sample: Any = None):
        super().__init__()
        self.item_id, self.model, self.prompt, self.rows, self.own_sample = item_id, model, prompt, rows, own_sample

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog", id="why-dialog"):
            yield Static(why_view(self.item_id, self.model, self.prompt, self.rows, self.own_sample), id="why-text")

    def on_mount(self) -> None:
        dialog = self.query_one("#why-dialog")
        dialog.border_title = "why (Esc closes)"
        dialog.focus()

    def action_close(self) -> None:
        self.dismiss(None)


# --------------------------------------------------------------------------- the screen

class EvalScreen(Screen):
    BINDINGS = bindings_for("evals")
    AUTO_FOCUS = "#ev-items"
    DEFAULT_CSS = """
    #ev-top { height: 1; }
    #ev-run-label { width: auto; padding: 0 1; }
    #ev-run { width: 1fr; }
    #ev-evals { height: auto; max-height: 5; border: round $primary 30%; padding: 0; }
    #ev-evals:focus { border: round $primary; }
    #ev-items { height: 1fr; min-height: 5; border: round $primary 30%; }
    #ev-items:focus { border: round $primary; }
    #ev-detail-pane { height: 1fr; min-height: 4; border: round $primary 30%; padding: 0 1; }
    #ev-detail-pane:focus { border: round $primary; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[DoneRun] = []
        self.run_id: str | None = None            # the selected run
        self.evals: list[dict[str, Any]] = []     # its evals' summaries, newest first
        self.eval_path: str | None = None         # the selected eval's folder
        self.summary: dict[str, Any] = {}
        self.rows: list[dict[str, Any]] = []      # the selected eval's items
        self.shown: list[dict[str, Any]] = []     # the items the filter keeps, in table order
        self.filter = "all"
        self.labels: dict[str, str] = {}
        self.base_name: str | None = None
        self.adapter_name: str | None = None
        self.item_id: str | None = None           # the item in the detail pane (its table key)
        self._by_key: dict[str, dict[str, Any]] = {}  # table key -> item (ids made unique)
        self._want_eval: tuple[str, str] | None = None  # (run, eval id) to select once listed
        self._table_width = 0

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="ev-top"):
            yield Label("run", id="ev-run-label")
            yield Select([], id="ev-run", prompt="(no finished runs)", compact=True)
        yield OptionList(id="ev-evals")
        yield DataTable(id="ev-items", cursor_type="row", zebra_stripes=False)
        with VerticalScroll(id="ev-detail-pane"):
            yield Static("", id="ev-detail")
        yield JobProgress()
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#ev-evals").border_title = "Evals (newest first)"
        self.query_one("#ev-detail-pane").border_title = "Item"
        self._set_title()
        self.query_one("#ev-items", DataTable).focus()
        self.action_reload()

    def on_screen_resume(self) -> None:
        if self.is_mounted:
            self.action_reload()

    def on_resize(self) -> None:
        if self.rows and self._prompt_width() != self._table_width:
            self._fill_table()

    # -- runs -----------------------------------------------------------------------------------
    def action_reload(self) -> None:
        self._list_runs()

    @work(thread=True, exclusive=True, group="ev-runs")
    def _list_runs(self) -> None:
        rows = finished_runs(self.app.engine.ws.runs_dir)
        self.app.call_from_thread(self._show_runs, rows)

    def _show_runs(self, rows: list[DoneRun]) -> None:
        self.runs = rows
        box_ = self.query_one("#ev-run", Select)
        ids = [r.id for r in rows]
        box_.set_options([(visible(r.id, single_line=True) + (" (UNTRAINED base)" if r.info.untrained else ""),
                           r.id) for r in rows])
        want = self._want_eval[0] if self._want_eval else self.run_id
        if want in ids:
            box_.value = want
        elif ids:
            box_.value = ids[0]
        if not ids:
            self.run_id = None
            self._show_evals(None, [])
            self._detail(Text("no finished run yet: train one on the Train screen (key 8), then press n here",
                              style="dim"))
        elif box_.value == self.run_id:
            self._list_evals(self.run_id)  # the same run: its evals may have changed

    @on(Select.Changed, "#ev-run")
    def _run_changed(self, event: Select.Changed) -> None:
        if event.value is Select.NULL:
            return
        if str(event.value) != self.run_id:
            self.run_id = str(event.value)
            self._list_evals(self.run_id)

    def _run_dir(self, run_id: str) -> Path:
        return self.app.engine.ws.runs_dir / run_id

    # -- evals ----------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="ev-evals")
    def _list_evals(self, run_id: str) -> None:
        from training.evaluate import list_evals

        found = list_evals(self._run_dir(run_id))
        self.app.call_from_thread(self._show_evals, run_id, found)

    def _show_evals(self, run_id: str | None, found: list[dict[str, Any]]) -> None:
        if run_id != self.run_id:
            return  # a late answer for a run no longer selected
        self.evals = found
        box_ = self.query_one("#ev-evals", OptionList)
        box_.clear_options()
        box_.add_options([Option(eval_line(s, run_id), id=s["path"]) for s in found])
        box_.border_title = (f"Evals of {_cut(visible(run_id, single_line=True), 40)} (newest first)"
                             if run_id else "Evals")
        paths = [s["path"] for s in found]
        target = None
        if self._want_eval and self._want_eval[0] == run_id:
            target = next((s["path"] for s in found if s.get("eval_id") == self._want_eval[1]), None)
            self._want_eval = None
        if target is None:
            target = self.eval_path if self.eval_path in paths else (paths[0] if paths else None)
        if target is None:
            self.eval_path, self.summary, self.rows = None, {}, []
            self._fill_table()
            if run_id:
                self._detail(Text("no eval of this run yet: press n to answer its validation set with the base "
                                  "and the adapter", style="dim"))
            return
        box_.highlighted = paths.index(target)
        self._open_eval(target, force=target != self.eval_path or not self.rows)

    @on(OptionList.OptionHighlighted, "#ev-evals")
    def _eval_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option.id and event.option.id != self.eval_path:
            self._open_eval(event.option.id)

    def action_next_eval(self) -> None:
        box_ = self.query_one("#ev-evals", OptionList)
        if box_.option_count:
            box_.highlighted = ((box_.highlighted if box_.highlighted is not None else -1) + 1) % box_.option_count

    def _open_eval(self, path: str, force: bool = True) -> None:
        if path == self.eval_path and not force:
            return
        self.eval_path = path
        self.summary = next((s for s in self.evals if s["path"] == path), {})
        self.query_one("#ev-items").loading = True
        self._read_items(path)

    @work(thread=True, exclusive=True, group="ev-items")
    def _read_items(self, path: str) -> None:
        from training.errors import TrainingError
        from training.evaluate import read_items

        try:
            rows: list[dict[str, Any]] | StudioError = read_items(Path(path))
        except (TrainingError, OSError, ValueError) as exc:
            rows = StudioError(f"{Path(path).name}: {exc}")
        self.app.call_from_thread(self._show_items, path, rows)

    def _show_items(self, path: str, rows: list[dict[str, Any]] | StudioError) -> None:
        if path != self.eval_path:
            return
        self.query_one("#ev-items").loading = False
        if isinstance(rows, StudioError):
            self.rows = []
            self._fill_table()
            self.notify(str(rows), title="eval", severity="error")
            return
        self.rows = rows
        models = self.summary.get("models") or [{"name": n} for n in (rows[0]["answers"] if rows else {})]
        self.labels = model_labels(models, self.run_id)
        self.base_name, self.adapter_name = roles(models, self.labels)
        self._fill_table()

    # -- the items table ------------------------------------------------------------------------
    def _models(self) -> list[dict[str, Any]]:
        return self.summary.get("models") or [{"name": n} for n in self.labels]

    def _prompt_width(self) -> int:
        """What is left of the terminal's width for the prompt column once the id and ✓/✗ columns,
        the cell padding, the border and the scrollbar are counted."""
        models = self._models()
        id_w = self._id_width()
        marks = sum(max(1, len(self.labels.get(str(m.get("name")), "?"))) for m in models)
        cols = 2 + len(models)
        return max(8, self.size.width - 2 - 2 - 2 * cols - id_w - marks)

    def _id_width(self) -> int:
        return min(14, max([4] + [len(visible(str(r.get("id", "")), single_line=True)) for r in self.rows]))

    def _fill_table(self) -> None:
        table = self.query_one("#ev-items", DataTable)
        keep = self.item_id
        table.clear(columns=True)
        self.shown = filter_rows(self.rows, self.filter, self.base_name, self.adapter_name)
        self._by_key = {}
        keys: dict[int, str] = {}
        for i, row in enumerate(self.rows):  # an item id seen twice (a hand-made items.jsonl) gets #N
            key = str(row.get("id"))
            if key in self._by_key:
                key = f"{key}#{i + 1}"
            self._by_key[key] = row
            keys[id(row)] = key
        self._set_title()
        if not self.rows:
            self._table_width = 0
            return
        self._table_width = width = self._prompt_width()
        id_w = self._id_width()
        table.add_column("item", width=id_w, key="item")
        table.add_column("prompt", width=width, key="prompt")
        models = self._models()
        for m in models:
            label = self.labels.get(str(m.get("name")), "?")
            table.add_column(label, width=max(1, len(label)), key=f"m:{m.get('name')}")
        ids = [keys[id(row)] for row in self.shown]
        for rid, row in zip(ids, self.shown):
            table.add_row(Text(_cut(visible(rid, single_line=True), id_w)),
                          Text(_cut(visible(prompt_of(row), single_line=True), width)),
                          *[mark((row.get("answers") or {}).get(str(m.get("name")))) for m in models], key=rid)
        if keep in ids:
            table.move_cursor(row=ids.index(keep), animate=False)
            self._show_item(keep)
        elif ids:
            table.move_cursor(row=0, animate=False)
            self._show_item(ids[0])
        else:
            self.item_id = None
            self._detail(Text(f"no item is {filter_title(self.filter, self.labels, self.base_name, self.adapter_name)}"
                              " (d: next filter)", style="dim"))

    def _set_title(self) -> None:
        table = self.query_one("#ev-items", DataTable)
        title = filter_title(self.filter, self.labels, self.base_name, self.adapter_name)
        table.border_title = f"{title}: {len(self.shown)} of {len(self.rows)} (d: filter)"
        acc = ""
        if self.summary.get("scorer"):
            acc = f"scorer {visible(str(self.summary['scorer']), single_line=True)}"
        table.border_subtitle = acc

    @on(DataTable.RowHighlighted, "#ev-items")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key is not None and event.row_key.value is not None:
            self._show_item(str(event.row_key.value))

    def _show_item(self, item_id: str) -> None:
        row = self._row(item_id)
        if row is None:
            return
        self.item_id = item_id
        self._detail(detail_view(row, self._models(), self.labels, str(self.summary.get("scorer", "score"))))
        pane = self.query_one("#ev-detail-pane")
        pane.border_title = f"Item {_cut(visible(item_id, single_line=True), 30)} (w: why)"
        pane.border_subtitle = _cut(item_origin(row), 40)

    def _row(self, item_id: str | None) -> dict[str, Any] | None:
        return self._by_key.get(item_id) if item_id is not None else None

    def _detail(self, renderable: Any) -> None:
        self.query_one("#ev-detail", Static).update(renderable)
        self.query_one("#ev-detail-pane", VerticalScroll).scroll_home(animate=False)

    def detail_text(self, width: int | None = None) -> str:
        """What the detail pane shows, as plain text (for tests and tools), `width` columns wide
        (default: the pane's)."""
        from io import StringIO

        from rich.console import Console

        console = Console(file=StringIO(), width=width or max(40, self.query_one("#ev-detail").size.width or 76),
                          record=True, color_system=None)
        console.print(self.query_one("#ev-detail", Static).content)
        return console.export_text()

    # -- the filter -----------------------------------------------------------------------------
    def action_cycle_filter(self) -> None:
        if not self.rows:
            self.notify("no eval items to filter: pick an eval, or press n for a new one", severity="warning")
            return
        if self.base_name is None or self.adapter_name is None:
            self.notify("the filter compares two models; this eval has one", severity="warning")
            return
        ids = [f for f, _ in FILTERS]
        self.filter = ids[(ids.index(self.filter) + 1) % len(ids)]
        self._fill_table()

    # -- a new eval -----------------------------------------------------------------------------
    def action_new_eval(self) -> None:
        if not self.runs or self.run_id is None:
            self.notify("no finished run: train one on the Train screen (key 8), then evaluate it here",
                        title="eval", severity="error")
            return
        if any(getattr(j, "kind", "") == "eval" for j in getattr(self.app, "jobs", {}).values()):
            self.notify("an eval is running: wait for it, or cancel it with Ctrl+X", title="eval", severity="warning")
            return

        def answer(req: EvalRequest | None) -> None:
            if req is not None:
                self.start_eval(req)

        self.app.push_screen(NewEvalScreen(self.runs, self.run_id), answer)

    def start_eval(self, req: EvalRequest) -> None:
        ws_root = self.app.engine.ws.root
        job = EvalJob(kind="eval")
        self.notify(f"eval of {visible(req.run_id, single_line=True)} started: {' · '.join(req.models)}"
                    f" on {req.part}; Ctrl+X cancels", title="eval")
        self.app.run_job("eval", lambda j: run_eval_job(j, req, ws_root), self._eval_done, job=job)

    def _eval_done(self, out: tuple[str, Any]) -> None:
        run_id, result = out
        models = [{"name": m.name, "kind": m.kind} for m in result.models]
        labels = model_labels(models, run_id)
        acc = " · ".join(f"{labels[m.name]} {m.accuracy:.0%}" for m in result.models)
        if result.cancelled:
            self.notify(f"{result.eval_id} cancelled; kept what it finished: {acc or 'nothing'}", title="eval",
                        severity="warning")
        else:
            self.notify(f"{result.eval_id}: {acc}", title="eval")
        self._want_eval = (run_id, result.eval_id)
        self.filter = "all"
        if run_id != self.run_id:
            self.query_one("#ev-run", Select).value = run_id  # Select.Changed lists its evals
        else:
            self._list_evals(run_id)

    # -- why ------------------------------------------------------------------------------------
    def action_why(self) -> None:
        row = self._row(self.item_id)
        if row is None:
            self.notify("select an item first", severity="warning")
            return
        split = next((r.split for r in self.runs if r.id == self.run_id), "")
        if not split:
            self.notify(f"why: run {visible(str(self.run_id), single_line=True)} names no split (config.yaml "
                        "data.split); nothing to compare with", title="why", severity="error")
            return
        answers = row.get("answers") or {}
        # whose answer to explain: the run's adapter, else the first model that answered (as `studio why`)
        model = next((m for m in [self.adapter_name, self.run_id] + [str(x.get("name")) for x in self._models()]
                      if m and m in answers), None)
        self.notify("looking for the nearest training rows…", title="why", timeout=2)
        self._why(str(self.item_id), row, model, Path(split))

    @work(thread=True, exclusive=True, group="ev-why")
    def _why(self, key: str, row: dict[str, Any], model: str | None, split_dir: Path) -> None:
        import duckdb

        def say(text: str) -> None:
            self.app.call_from_thread(self.notify, visible(text, single_line=True), title="why", severity="error")

        try:
            from curation.why import item_query, nearest_training_rows
        except ImportError as exc:
            missing = getattr(exc, "name", None)
            say("why is not available in this install"
                + (f" ({missing} is missing)" if missing and missing != "curation.why" else ""))
            return
        if not split_dir.is_dir():
            say(f"split {split_dir} (data.split of run {self.run_id}) is missing; export it again with the same "
                "settings on the Export screen (key 5)")
            return
        query = item_query(row, model)
        engine = self.app.engine
        # a Workspace on a connection of its own, used on this thread only, then released: the
        # writer thread's ws.con is never touched, and Review's writes never wait on this search
        job_ws = engine.job_workspace()
        try:
            rows = nearest_training_rows(job_ws, split_dir, query, k=WHY_K)
        except (StudioError, OSError, ValueError, duckdb.Error) as exc:
            say(app_message(exc))
            return
        finally:
            engine.release(job_ws)
        own = (row.get("source") or {}).get("sample_id")
        label = self.labels.get(model, model) if model else None
        self.app.call_from_thread(self.app.push_screen, WhyScreen(key, label, prompt_of(row), list(rows), own))
