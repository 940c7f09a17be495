"""Quality: how many samples each rule flags, the distribution of what the selected rule measures,
and a threshold you can move before committing to it.

Moving the threshold (←/→ or -/+, or `t` to type one) shows at once how many samples it WOULD
flag: `curation.quality.preview` counts from the values the last run stored, without reading any
text. Enter applies: the workspace's own rules file (WORKSPACE/rules.yaml, a copy of the rules in
use with the new threshold) is written and quality reruns as a job; Enter with no change, or `o`,
opens Review filtered by the rule. `r` reruns quality with the workspace's rules, `u` undoes the
last operation (the flags come back; the rules file keeps the new threshold).
"""
from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, OptionList, Static
from textual.widgets.option_list import Option

from curation import browse, quality
from curation.errors import StudioError
from curation.safe_text import visible

from ..bindings import bindings_for
from ..widgets.job_progress import JobProgress
from ._curation import app_message, op_note, open_review, run_engine_job, undo_last, undo_message

RULES_FILE = quality.WORKSPACE_RULES  # in the workspace folder; absent: the built-in rules
BINS = 12                  # histogram rows: fits an 80x24 terminal


def workspace_rules_path(root: Path) -> Path:
    return Path(root) / RULES_FILE


def load_workspace_rules(root: Path) -> tuple[list[quality.Rule], str]:
    """The rules in use (the workspace's file, else the built-in ones) and where they came from."""
    path = workspace_rules_path(root)
    if path.exists():
        return quality.load_rules(path), RULES_FILE
    return quality.load_rules(), "built-in rules"


def save_threshold(ws: Any, rule_id: str, threshold: float) -> Path:
    """Write the workspace's rules file: the rules in use with `rule_id` at `threshold`."""
    import yaml

    rules, _ = load_workspace_rules(ws.root)
    if rule_id not in {r.id for r in rules}:
        raise StudioError(f"rule {rule_id!r} is not in the rules in use; known: {', '.join(r.id for r in rules)}.")
    data = {"rules": [{"id": r.id, "enabled": r.enabled, "threshold": threshold if r.id == rule_id else r.threshold,
                       "description": r.description} for r in rules]}
    path = workspace_rules_path(ws.root)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text("# Quality rules of this workspace, written by the studio's Quality screen.\n"
                   "# Run: studio quality --rules rules.yaml\n"
                   + yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    tmp.replace(path)
    return path


def apply_threshold(ws: Any, rule_id: str, threshold: float, *, job: Any = None) -> quality.QualityReport:
    """Save the threshold and rerun quality with the workspace's rules (writer thread)."""
    path = save_threshold(ws, rule_id, threshold)
    return quality.run_quality(ws, rules=path, job=job)


def rerun(ws: Any, *, job: Any = None) -> quality.QualityReport:
    path = workspace_rules_path(ws.root)
    return quality.run_quality(ws, rules=path if path.exists() else None, job=job)


@dataclass(frozen=True)
class RuleRow:
    id: str
    flagged: int
    threshold: float | None     # None: a yes/no check, or a rule not in the rules in use
    enabled: bool
    description: str
    numeric: bool
    known: bool                 # in the rules in use


@dataclass(frozen=True)
class QualityData:
    rules: list[RuleRow]
    source: str                 # where the rules came from
    samples: int
    measured: int               # samples with stored values (0: quality never ran)
    problem: str | None = None  # the rules file could not be read


@dataclass(frozen=True)
class RuleView:
    rule_id: str
    bins: list[tuple[float, float, int]] = field(default_factory=list)
    flagged_now: int = 0
    whole: bool = False         # one row per whole value (counts near a small threshold)
    overflow: bool = False      # the last row holds every value from its low end up (the tail)
    around: float = 0.0         # the threshold the rows were laid out around


def bins_around(values, threshold: float, bins: int = BINS) -> tuple[list[tuple[float, float, int]], bool, bool]:
    """Histogram rows laid out around the threshold, not over the whole range (answer lengths run
    to 500 while answer_too_short's threshold is 3: 0-500 in 12 rows puts everything that matters
    in the first one). Returns (rows, whole, overflow): rows of (low, high, count).

    Whole values with a small threshold: one row per value from 0 up to 4 x threshold (at most
    `bins - 1` rows). Otherwise equal-width rows of half the threshold (the threshold on a row
    edge, so a row is all flagged or all not) from 0 up to the largest value, at most 8 of them
    (4 x threshold); shares within 0..1 get ten rows of 0.1. What lies beyond goes in one last
    row, `≥ low`. A threshold of 0 spreads the rows up to the 90th percentile."""
    import numpy as np

    vals = np.asarray(values, dtype=np.float64)
    if vals.size == 0:
        return [], False, False
    low = min(0.0, float(vals.min()))
    top = float(vals.max())
    t = float(threshold)
    whole = bool(np.all(vals == np.round(vals)))
    if whole and t > 0 and math.ceil(t) + 1 - low <= bins - 1:
        end = min(max(4 * t, math.ceil(t) + 1), low + bins - 1, max(top + 1, math.ceil(t) + 1))
        end = math.ceil(end)
        counts = dict(zip(*np.unique(vals[vals < end], return_counts=True)))
        rows = [(float(v), float(v + 1), int(counts.get(float(v), 0))) for v in range(int(low), end)]
        if top >= end:
            rows.append((float(end), top, int(np.count_nonzero(vals >= end))))
        return rows, True, top >= end
    if 0 < t <= 1 and top <= 1 and low >= 0:
        width, most = 0.1, 10
    elif t > 0:
        width = t / 2 if not whole or t % 2 == 0 else t
        most = 8
    else:
        p90 = float(np.percentile(vals, 90))
        span = p90 - low if p90 > low else max(top - low, 1.0)
        width, most = span / (bins - 1), bins - 1
    least = min(most, math.ceil((max(t, 0) - low) / width) + 1)
    n = max(least, min(most, math.ceil((top - low) / width) or 1))
    edges = [round(low + i * width, 9) for i in range(n + 1)]  # 0.1 * 3 is 0.30000000000000004
    end = edges[-1]
    inside = vals[vals < end] if top >= end else vals
    counts, _ = np.histogram(inside, bins=np.asarray(edges))
    rows = [(float(edges[i]), float(edges[i + 1]), int(counts[i])) for i in range(n)]
    overflow = top >= end
    if overflow:
        rows.append((float(end), top, int(np.count_nonzero(vals >= end))))
    return rows, False, overflow


def rule_bins(con, rule_id: str, threshold: float, bins: int = BINS) -> tuple[list[tuple[float, float, int]], bool, bool]:
    """`bins_around` the rule's values (stored, or measured now)."""
    return bins_around(quality.rule_values(con, rule_id), threshold, bins)


def gather(con, root: Path) -> QualityData:
    problem = None
    try:
        rules, source = load_workspace_rules(root)
    except StudioError as exc:
        rules, source, problem = quality.load_rules(), "built-in rules", app_message(exc)
    counts = quality.flagged_per_rule(con)
    rows = [RuleRow(r.id, int(counts.pop(r.id, 0)), r.threshold if r.definition.numeric else None, r.enabled,
                    r.description, r.definition.numeric, True) for r in rules]
    rows += [RuleRow(rid, int(n), None, False, "", False, False) for rid, n in sorted(counts.items())]
    samples = browse.count(con)
    measured = quality.measured_samples(con)
    return QualityData(rows, source, samples, measured, problem)


def step_for(threshold: float, bins: list[tuple[float, float, int]]) -> float:
    """How far one key press moves a threshold: 0.05 for shares (values within 0..1), else a
    tenth of the threshold's order of magnitude, at least 1 (counts, lengths)."""
    top = max((hi for _, hi, _ in bins), default=threshold)
    if threshold <= 1 and top <= 1:
        return 0.05
    return max(1.0, 10 ** math.floor(math.log10(max(abs(threshold), 1.0))) / 10)


def rule_label(r: RuleRow) -> Text:
    """`flagged  threshold  rule` on one line (cut with … in a narrow list, never wrapped)."""
    if r.threshold is not None:
        thr = f"{'<' if quality.RULES[r.id].flag_below else '≥'}{r.threshold:g}"
    else:
        thr = "yes/no" if r.known else "?"
    t = Text()
    t.append(f"{r.flagged:>6,} ", style="red" if r.flagged else "dim")
    t.append(f"{thr:<7} ", style="dim")
    t.append(visible(r.id, single_line=True), style="bold" if r.known and r.enabled else "dim")
    if not r.known:
        t.append(" (not in the rules)", style="dim")
    elif not r.enabled:
        t.append(" (off)", style="dim")
    return t


def _num(v: float) -> str:
    return f"{int(v):,}" if v == int(v) else f"{v:.3g}"


def bin_labels(view: RuleView) -> list[str]:
    """`3` (a whole value), `0.5–1` (a range), `≥12` (the tail row)."""
    last = len(view.bins) - 1
    return [f"≥{_num(lo)}" if view.overflow and i == last else (_num(lo) if view.whole else f"{_num(lo)}–{_num(hi)}")
            for i, (lo, hi, _) in enumerate(view.bins)]


def histogram(view: RuleView, threshold: float, flag_below: bool, width: int = 28) -> Table | Text:
    """One line per bin: range, bar, count. Bars on the flagged side of the threshold are red; ◀
    marks the bin that holds the threshold."""
    if not view.bins:
        return Text("no measured values: run quality (r)", style="dim")
    t = Table(box=None, show_header=False, padding=(0, 1, 0, 0), expand=False)
    labels = bin_labels(view)
    t.add_column(justify="right", no_wrap=True, min_width=max(map(len, labels)))
    t.add_column(no_wrap=True)
    t.add_column(justify="right", no_wrap=True)
    t.add_column(no_wrap=True)
    top = max(n for _, _, n in view.bins) or 1
    last = len(view.bins) - 1
    width = max(4, width - max(map(len, labels)) - len(f"{top:,}") - 6)
    for i, ((lo, hi, n), label) in enumerate(zip(view.bins, labels)):
        at = lo if view.whole or (view.overflow and i == last) else (lo + hi) / 2
        flagged = at < threshold if flag_below else at >= threshold
        holds = lo <= threshold < hi or (i == last and threshold >= hi) or (i == 0 and threshold < lo)
        bar = "█" * max(1 if n else 0, round(width * n / top))
        t.add_row(Text(label, style="dim"), Text(bar, style="red" if flagged else "green"),
                  f"{n:,}", Text("◀", style="bold yellow") if holds else "")
    return t


class QualityScreen(Screen):
    BINDINGS = bindings_for("quality")
    AUTO_FOCUS = "#q-rules"  # and where Escape from the threshold box returns
    DEFAULT_CSS = """
    #q-rules { text-wrap: nowrap; text-overflow: ellipsis; }
    #q-main { height: 1fr; }
    #q-rules { width: 45%; max-width: 50; min-width: 30; height: 1fr; border: round $primary 50%; }
    #q-rules:focus { border: round $accent; }
    #q-detail { width: 1fr; border: round $primary 30%; padding: 0 1; }
    #q-desc { height: auto; margin-bottom: 1; }
    #q-hist { height: 1fr; }
    #q-threshold { height: auto; }
    #q-input { display: none; }
    #q-input.-open { display: block; }
    #q-status { height: 1; background: $boost; padding: 0 1; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.data: QualityData | None = None
        self.view: RuleView | None = None
        self.pending: float | None = None     # the threshold being tried for the current rule
        self.would_flag: int | None = None    # preview(pending)
        self._want_rule: str | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="q-main"):
            yield OptionList(id="q-rules")
            with Vertical(id="q-detail"):
                yield Static("", id="q-desc")
                yield Static(Text("…", style="dim"), id="q-hist")
                yield Static("", id="q-threshold")
                yield Input(placeholder="threshold (Enter sets it, Esc cancels)", id="q-input", type="number")
        yield Static("", id="q-status")
        yield JobProgress()
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#q-rules").border_title = "Rules · flagged samples"
        self.query_one("#q-detail").border_title = "Rule"
        self.rules_list.focus()
        self.reload()

    def on_screen_resume(self) -> None:
        if self.is_mounted:
            self.reload()

    @property
    def rules_list(self) -> OptionList:
        return self.query_one("#q-rules", OptionList)

    @property
    def current(self) -> RuleRow | None:
        i = self.rules_list.highlighted
        return self.data.rules[i] if self.data and i is not None and i < len(self.data.rules) else None

    # -- loading --------------------------------------------------------------------------------
    def reload(self) -> None:
        if self.current is not None and self._want_rule is None:
            self._want_rule = self.current.id
        self._gather()

    @work(thread=True, exclusive=True, group="quality")
    def _gather(self) -> None:
        data = gather(self.app.engine.reader(), self.app.engine.ws.root)
        self.app.call_from_thread(self._show, data)

    def _show(self, data: QualityData) -> None:
        self.data = data
        want, self._want_rule = self._want_rule, None
        lst = self.rules_list
        lst.set_options([Option(rule_label(r), id=r.id) for r in data.rules])
        index = next((i for i, r in enumerate(data.rules) if r.id == want), None)
        if index is None:  # first time: the rule flagging most samples
            index = max(range(len(data.rules)), key=lambda i: (data.rules[i].flagged, -i)) if data.rules else 0
        lst.highlighted = index
        self._select_rule()
        status = Text()
        status.append(f"{data.measured:,}/{data.samples:,} samples measured", style="bold")
        status.append(f"  rules: {data.source}")
        if data.problem:
            status.append(f"  {visible(data.problem, single_line=True)}", style="bold red")
        self.query_one("#q-status", Static).update(status)

    @on(OptionList.OptionHighlighted, "#q-rules")
    def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self._select_rule()

    def _select_rule(self) -> None:
        r = self.current
        if r is None:
            return
        self.pending, self.would_flag, self.view = r.threshold, None, None
        desc = Text()
        desc.append(visible(r.id, single_line=True), style="bold")
        if r.description:
            desc.append(f"  {visible(r.description, single_line=True)}")
        if r.known and r.numeric:
            below = quality.RULES[r.id].flag_below
            desc.append(f"\nflags a sample when the value is {'below' if below else 'at or above'} the threshold", style="dim")
        elif r.known:
            desc.append("\na yes/no check: no threshold to move", style="dim")
        else:
            desc.append("\nnot in the rules in use (flags from another rules file)", style="dim")
        self.query_one("#q-desc", Static).update(desc)
        self.query_one("#q-detail").border_title = f"{r.id} · {r.flagged:,} flagged"
        if r.known and r.numeric:
            self._load_rule(r.id, r.threshold)
        else:
            self.query_one("#q-hist", Static).update(Text("o or Enter: open these samples in Review", style="dim"))
            self.query_one("#q-threshold", Static).update("")

    @work(thread=True, exclusive=True, group="quality-rule")
    def _load_rule(self, rule_id: str, threshold: float, around: float | None = None) -> None:
        """The histogram laid out around `around` (the threshold being tried; by default the
        rule's), and how many the rule's threshold flags now."""
        con = self.app.engine.reader()
        around = threshold if around is None else around
        bins, whole, overflow = rule_bins(con, rule_id, around)
        view = RuleView(rule_id, bins, quality.preview(con, rule_id, threshold), whole, overflow, around)
        self.app.call_from_thread(self._show_rule, view)

    def _show_rule(self, view: RuleView) -> None:
        r = self.current
        if r is None or r.id != view.rule_id:
            return
        self.view = view
        if self.would_flag is None:
            self.would_flag = view.flagged_now
        self._draw_threshold()

    def _draw_threshold(self) -> None:
        r, view = self.current, self.view
        if r is None or view is None or r.threshold is None or self.pending is None:
            return
        below = quality.RULES[r.id].flag_below
        hist = self.query_one("#q-hist", Static)
        hist.update(histogram(view, self.pending, below, width=hist.size.width or 40))
        t = Text()
        t.append("threshold ", style="bold")
        t.append(f"{r.threshold:g}")
        if self.pending != r.threshold:
            t.append(f" → {self.pending:g}", style="bold yellow")
        t.append(f"   would flag {self.would_flag if self.would_flag is not None else '…'}", style="bold")
        t.append(f" (now {view.flagged_now:,})")
        t.append("\n◀ marks it; red bars are flagged. ←/→ move, t types, Enter "
                 + ("applies and reruns quality" if self.pending != r.threshold else "opens the flagged samples in Review"),
                 style="dim")
        self.query_one("#q-threshold", Static).update(t)

    # -- the threshold --------------------------------------------------------------------------
    def set_pending(self, value: float) -> None:
        r = self.current
        if r is None or r.threshold is None:
            return
        self.pending = round(value, 6)
        self.would_flag = None
        self._draw_threshold()
        self._preview(r.id, self.pending)
        view = self.view
        if view is not None and view.bins and (
                (view.overflow and self.pending >= view.bins[-1][0])             # into the tail row
                or (view.around > 0 and self.pending < view.around / 4)):        # far below: zoom in
            self._load_rule(r.id, r.threshold, self.pending)

    @work(thread=True, exclusive=True, group="quality-preview")
    def _preview(self, rule_id: str, threshold: float) -> None:
        n = quality.preview(self.app.engine.reader(), rule_id, threshold)
        self.app.call_from_thread(self._show_preview, rule_id, threshold, n)

    def _show_preview(self, rule_id: str, threshold: float, n: int) -> None:
        r = self.current
        if r is not None and r.id == rule_id and self.pending == threshold:
            self.would_flag = n
            self._draw_threshold()

    def action_threshold(self, direction: int) -> None:
        r = self.current
        if r is None or r.threshold is None or self.pending is None:
            return
        step = step_for(r.threshold, self.view.bins if self.view else [])
        self.set_pending(max(0.0, self.pending + direction * step))

    def action_type_threshold(self) -> None:
        r = self.current
        if r is None or r.threshold is None:
            self.notify("this rule has no threshold to set")
            return
        box = self.query_one("#q-input", Input)
        box.value = f"{self.pending:g}"
        box.add_class("-open")
        box.focus()

    @on(Input.Changed, "#q-input")
    def _typed(self, event: Input.Changed) -> None:
        try:
            value = float(event.value)
        except ValueError:
            return
        if math.isfinite(value):
            self.set_pending(value)

    @on(Input.Submitted, "#q-input")
    def _typed_done(self, event: Input.Submitted) -> None:
        event.stop()
        event.input.remove_class("-open")
        self.rules_list.focus()

    @on(Input.Blurred, "#q-input")
    def _typing_left(self, event: Input.Blurred) -> None:
        """Escape (app.leave_field) or a click elsewhere closes the box; the typed value stays as
        the threshold being tried."""
        event.input.remove_class("-open")

    # -- applying, review, rerun, undo -------------------------------------------------------------
    @on(OptionList.OptionSelected, "#q-rules")
    async def _selected(self, event: OptionList.OptionSelected) -> None:
        await self.action_apply()

    async def action_apply(self) -> None:
        r = self.current
        if r is None:
            return
        if r.threshold is None or self.pending is None or self.pending == r.threshold:
            await self.action_open_review()
            return
        threshold = self.pending
        self._want_rule = r.id

        def done(result: Any) -> None:
            if isinstance(result, StudioError):
                self.notify(visible(app_message(result)), title="quality", severity="error", timeout=10)
            else:
                self.notify(f"{r.id} threshold {threshold:g}: {result.by_rule.get(r.id, 0):,} flagged "
                            f"({op_note(result.op_id)})", title="quality")
            self.reload()

        run_engine_job(self.app, "quality", apply_threshold, r.id, threshold, on_done=done)

    async def action_open_review(self) -> None:
        r = self.current
        if r is not None:
            await open_review(self.app, browse.Filter(flag=r.id))

    def action_run_quality(self) -> None:
        def done(result: Any) -> None:
            if isinstance(result, StudioError):
                self.notify(visible(app_message(result)), title="quality", severity="error", timeout=10)
            else:
                self.notify(f"{result.flagged_samples:,} of {result.samples:,} samples flagged "
                            f"({op_note(result.op_id)})", title="quality")
            self.reload()

        run_engine_job(self.app, "quality", rerun, on_done=done)

    def action_undo(self) -> None:
        async def wait() -> None:
            try:
                undone = await asyncio.wrap_future(self.app.engine.write(undo_last))
            except StudioError as exc:
                self.notify(visible(app_message(exc)), severity="error", timeout=8)
                return
            self.notify(undo_message(undone))
            self.app.refresh_counts()
            self.reload()

        self.run_worker(wait(), group="writes")

    def action_reload(self) -> None:
        self.reload()
