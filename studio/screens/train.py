"""Train: configure a run on a split, see its plan, launch it (here or on an SSH host), and watch
every run's curve live.

The form is `studio train`'s arguments as fields: preset, split, base, method and the seed's knobs
(KNOB_KEYS: config keys whose label, input type and validation the config's fields give), `--set
KEY=VALUE` for the rest, and the host. It builds a `training.launch.RunRequest` (the knobs as typed values) and plans and starts
it with `plan_run` and `new_run`/`launch_run`, the API `studio train` uses too, so the screen can
do nothing the CLI cannot and writes the same config.yaml. `p` shows `make_plan` (memory vs the seed's table, lengths, EOS
check, steps) in a worker; Ctrl+S (or the Launch button) plans the launch in a worker ("planning…")
and asks first (studio/screens/confirm.py: what, where, the device, the plan's memory and a rough
time; a run this machine cannot train, `training.plan.launch_refusal`, as `studio train` refuses
it, is refused there with the reason). Only Launch in that dialog creates the run and launches it
detached (`training.runs.launch`) or uploads and starts it on the host
(`training.remote.launch_remote`), then mirrors its metrics (`stream_metrics`) so the local run
directory grows like a local run's.

The runs list re-reads WS/runs every RUNS_REFRESH_S. Its columns follow its width (`runs_layout`,
again on resize): a short run name, state, step/total, loss and eval loss always; where, method,
base and start time when there is room. The chart follows the selected run's
metrics.jsonl by byte offset (`read_metrics`, once a second in a worker), so it holds exactly the
file's metric points; a run started before the studio opened is followed the same way (for a
remote run with `remote.json`, selecting it starts mirroring again). `c` cancels the selected run.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, ScrollableContainer, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, ContentSwitcher, DataTable, Footer, Header, Input, Label, Select, Static

from curation.errors import StudioError
from curation.safe_text import visible
from training.errors import TrainingError
from training.rundir import REMOTE_JSON, RunInfo, RunState

from ..bindings import bindings_for
from ..widgets.job_progress import JobProgress
from ..widgets.loss_chart import LossChart
from ._curation import app_message

if TYPE_CHECKING:
    from training.config_fields import ConfigField

FOLLOW_S = 1.0
RUNS_REFRESH_S = 2.0

# The form's rows: (field id, config key). Label, input type, value and validation are the config
# field's own (training.config_fields); each becomes a config override (base and method: the request's own).
KNOB_KEYS = [
    ("r", "lora.r"),
    ("alpha", "lora.alpha"),
    ("lr", "train.learning_rate"),
    ("epochs", "train.epochs"),
    ("micro", "train.micro_batch_size"),
    ("accum", "train.grad_accum"),
    ("maxlen", "data.max_length"),
    ("gpus", "train.devices"),  # >1: one process per GPU through torchrun (DDP/FSDP)
]


def knobs() -> list[tuple[str, ConfigField]]:
    """(field id, config field) for each row of the form."""
    from training.config_fields import config_field

    return [(fid, config_field(key)) for fid, key in KNOB_KEYS]


def preset_values(preset: str) -> dict[str, str]:
    """The form's field values for a preset (the config defaults are the seed's recipe)."""
    from training.config import TINY, TINY_PRESETS, load_config

    cfg = load_config(preset=preset, require_base=False)
    # a preset that names no base leaves the field empty: launching then says which base to pass
    values = {"base": "" if cfg.base == TINY and preset not in TINY_PRESETS else cfg.base, "method": cfg.method}
    for fid, field in knobs():
        values[fid] = f"{field.value(cfg):g}"
    return values


def run_request(ws_root: Path, form: dict[str, str]):
    """The training.launch.RunRequest the form stands for: the knobs as typed values, then the --set
    field's KEY=VALUE pairs (values read as YAML, as `studio train --set` reads them), the host parsed."""
    from training.config import parse_override
    from training.launch import RunRequest, reproduce_line, resolve_split

    if not form.get("split"):
        raise StudioError("split: choose a split (export one on the Export screen, key 5)")
    overrides: dict[str, Any] = {field.path: field.parse(form[fid]) for fid, field in knobs() if form.get(fid, "").strip()}
    try:
        sets = shlex.split(form.get("sets", ""))
    except ValueError as exc:
        raise StudioError(f"--set: {exc}; write KEY=VALUE pairs separated by spaces, e.g. train.max_steps=50") from None
    bad = [s for s in sets if "=" not in s]
    if bad:
        raise StudioError(f"--set: {bad[0]!r} is not KEY=VALUE, e.g. train.max_steps=50")
    overrides.update(parse_override(s) for s in sets)
    host_text = form.get("host", "").strip()
    host = None
    if host_text not in ("", "local"):
        from training.quiet import quiet_libraries
        from training.remote import parse_host

        quiet_libraries()  # asyncssh's deprecation warnings stay off the screen
        host = parse_host(host_text)
    return RunRequest(split=resolve_split(form["split"], ws_root / "splits"), base=form.get("base") or None,
                      method=form.get("method") or None, preset=form.get("preset") or None, overrides=overrides,
                      host=host, reproduce=reproduce_line(form["split"], workspace=ws_root,
                                                          host=host.target if host is not None else None))


STATE_ICONS = {"running": ("▶", "run"), "done": ("✓", "done"), "failed": ("✗", "fail"), "cancelled": ("■", "stop"),
               "queued": ("○", "queue")}
STATE_STYLES = {"running": "bold yellow", "done": "green", "failed": "bold red", "cancelled": "dim"}
DATE_PREFIX = re.compile(r"^\d{8}-\d{6}-")  # training.runs.new_run_id: YYYYMMDD-HHMMSS-base-method
NAME_ROOM = 28  # the run name keeps this many columns before optional columns are added


@dataclass(frozen=True)
class RunsColumn:
    key: str
    label: str
    width: int                # columns of content (cells have no padding: a gap is part of the width)
    right: bool = False       # numbers right-aligned


def middle(text: str, width: int) -> str:
    """`text` in at most `width` columns: its start and end around an ellipsis."""
    if len(text) <= width:
        return text
    if width < 2:
        return "…"[:max(0, width)]
    head = width // 2
    tail = width - 1 - head
    return text[:head] + "…" + (text[len(text) - tail:] if tail else "")


def short_run_name(run_id: str, width: int) -> str:
    """The run's id if it fits, else without its date prefix, else that cut in the middle with …"""
    if len(run_id) <= width:
        return run_id
    return middle(DATE_PREFIX.sub("", run_id), width)


def _started(value: Any) -> str:
    text = str(value or "")
    return f"{text[5:10]} {text[11:16]}" if len(text) >= 16 else ""


def runs_layout(rows: list[RunInfo], remotes: dict[str, str], width: int
                ) -> tuple[list[RunsColumn], list[tuple[str, dict[str, Any]]]]:
    """The runs table's columns and cells for `width` columns of table: run name, state (an icon and
    a short word), step/total, loss and eval loss always; where (when a run is remote), method, base and
    start time as the width allows; the name takes the rest. Returns (columns, [(run id, cells by key)])."""
    wide = width >= 70
    losses = ".4f" if width >= 44 else ".3f"

    def num(v: Any) -> str:
        return f"{v:{losses}}" if isinstance(v, (int, float)) else "-"

    values = []
    for r in rows:
        state = str(r.state)
        icon, word = STATE_ICONS.get(state, ("?", state))
        values.append({
            "state": Text(f"{icon} {state if wide else word}", style=STATE_STYLES.get(state, "")),
            "step": f"{r.step or 0}/{r.max_steps or '?'}",
            "loss": num(r.loss), "eval": num(r.eval_loss),
            "where": visible(remotes.get(r.id, "local"), single_line=True),
            "method": visible(str(r.method or ""), single_line=True),
            "base": visible(str(r.base or "").split("/")[-1], single_line=True),
            "started": _started(r.started_at),
        })

    def fit(key: str, label: str, right: bool = False, most: int = 99) -> RunsColumn:
        longest = max([len(label)] + [len(v[key].plain if isinstance(v[key], Text) else v[key]) for v in values])
        return RunsColumn(key, label, min(longest, most) + 1, right)

    required = [fit("state", "state"), fit("step", "step", True), fit("loss", "loss", True), fit("eval", "eval", True)]
    optional = ([fit("where", "where", True, most=28)] if any(r.id in remotes for r in rows) else [])
    optional += [fit("method", "method", True), fit("base", "base", True, most=22), fit("started", "started", True)]
    names = [r.id + (" (UNTRAINED)" if r.untrained else "") for r in rows]
    room = width - sum(c.width for c in required)
    want = min(NAME_ROOM, max([len("run")] + [len(DATE_PREFIX.sub("", n)) for n in names]) + 1)
    chosen = []
    for col in optional:
        if room - col.width >= want:
            chosen.append(col)
            room -= col.width
    name_col = RunsColumn("run", "run", max(4, room))
    columns = [name_col] + required + chosen
    out = []
    for r, v in zip(rows, values):
        flag = " (UNTRAINED)" if r.untrained else ""
        name_w = name_col.width - 1
        if flag and len(r.id) + len(flag) > name_w:
            flag = " (U)"
        name = visible(r.id, single_line=True)
        cells = {"run": Text.assemble(short_run_name(name, max(1, name_w - len(flag))), (flag, "bold red"))}
        for col in columns[1:]:
            cell = v[col.key]
            if not isinstance(cell, Text):
                cell = Text(cell if len(cell) < col.width else middle(cell, col.width - 1))
            cells[col.key] = cell
        out.append((r.id, cells))
    for col in columns:
        if col.right:
            for _rid, cells in out:
                cells[col.key].justify = "right"
    return columns, out


def _gb(value: float) -> str:
    return f"{value:.1f} GB" if value >= 0.1 else f"{value * 1024:.0f} MB"


def launch_rows(run_plan) -> tuple[list[tuple[str, Any]], str]:
    """The launch confirmation's rows (what, where, device, memory, time, steps) and its title, from a
    training.launch.RunPlan (`with_device` for a run on this machine)."""
    from training.plan import Shape, describe_device, format_duration

    request, plan, device, seconds = run_plan.request, run_plan.plan, run_plan.device, run_plan.seconds
    split = request.split.name
    method = plan["method"]
    mem = plan["memory_gb"][method]
    params = sum(Shape(**plan["shape"]).params())
    size = f"{params / 1e9:.1f}B" if params >= 1e9 else f"{params / 1e6:.1f}M"
    base = plan["base"] + (" (UNTRAINED tiny model)" if plan.get("untrained") else "")
    what = f"{method} of {base} ({size} parameters) on split {split}"
    if request.preset:
        what += f", preset {request.preset}"
    rows: list[tuple[str, Any]] = [("run", what)]
    if device is None:
        rows += [("where", f"SSH host {request.host.target}: uploaded and started there, detached"),
                 ("device", "the host's GPU (its agent checks it when the run starts)"),
                 ("memory", f"{_gb(mem['total_gb'])} on the card ({_gb(mem['peak_gb'])} peak, plan)")]
    else:
        rows += [("where", "this machine, detached (it goes on if the studio closes)"),
                 ("device", describe_device(device))]
        if device["kind"] == "cuda":
            rows.append(("memory", f"{_gb(mem['total_gb'])} on the card ({_gb(mem['peak_gb'])} peak, plan)"))
        else:
            rows.append(("memory", f"about {_gb(2 * mem['peak_gb'])} of RAM (fp32 on a CPU; the plan's peak in bf16: "
                                   f"{_gb(mem['peak_gb'])})"))
    steps = plan.get("steps")
    if device is not None:
        rows.append(("time", f"{format_duration(seconds)} (rough)" if seconds is not None
                     else "unknown: the base's tokenizer is not here to count the tokens"))
    if steps:
        rows.append(("steps", f"{steps['steps']:,} optimizer step{'s' if steps['steps'] != 1 else ''}, "
                              f"{plan['samples']['train']:,} training samples"))
    for note in plan.get("notes") or []:
        rows.append(("note", note))
    return rows, f"Launch a training run on {split}?"


class TrainScreen(Screen):
    BINDINGS = bindings_for("train")
    DEFAULT_CSS = """
    #tr-main { height: 1fr; }
    #tr-form { width: 36; border: round $primary 50%; padding: 0 1; }
    #tr-grid { grid-size: 2; grid-columns: 11 1fr; grid-rows: 1; grid-gutter: 0 1; height: auto; }
    #tr-grid Label { padding: 0; }
    #tr-buttons { height: auto; margin-top: 1; }
    #tr-buttons Button { margin-right: 1; }
    #tr-right { width: 1fr; }
    #tr-runs { height: 8; border: round $primary 30%; }
    #tr-view { height: 1fr; border: round $primary 30%; }
    #tr-plan { height: 1fr; }
    #tr-plan-text { width: auto; }
    #tr-message { height: auto; max-height: 4; padding: 0 1; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.selected: str | None = None   # run id shown in the chart
        self._offset = 0
        self._generation: Any = None
        self._run_ids: list[str] = []
        self._streaming: set[str] = set()    # remote runs being mirrored by this screen
        self._remotes: dict[str, str] = {}   # run id -> host target, for runs with remote.json
        self._states: dict[str, RunState] = {}
        self._rows: list[RunInfo] = []       # the runs listed last (the table is laid out again on resize)
        self._layout: tuple = ()             # the columns shown: (key, width) pairs
        self._preparing = False              # a launch is being planned: another ctrl+s waits for it

    def compose(self) -> ComposeResult:
        from training.config import preset_names

        presets = preset_names()
        yield Header()
        with Horizontal(id="tr-main"):
            with VerticalScroll(id="tr-form"):
                with Grid(id="tr-grid"):
                    yield Label("preset")
                    yield Select([(p, p) for p in presets], value="seed" if "seed" in presets else presets[0], id="tr-preset",
                                 allow_blank=False, compact=True)
                    yield Label("split")
                    yield Select([], id="tr-split", prompt="(no splits)", compact=True)
                    yield Label("base")
                    yield Input("", id="tr-base", compact=True, placeholder="smollm2-135m-instruct | org/name | folder | .gguf")
                    yield Label("method")
                    yield Select([(m, m) for m in ("lora", "qlora", "full")], value="lora", id="tr-method",
                                 allow_blank=False, compact=True)
                    for fid, field in knobs():
                        yield Label(field.label)
                        yield Input("", id=f"tr-{fid}", type=field.kind, compact=True)
                    yield Label("--set")
                    yield Input("", id="tr-sets", placeholder="train.max_steps=50 …", compact=True)
                    yield Label("host")
                    yield Input("", id="tr-host", placeholder="local (or gpu1, me@host:22)", compact=True)
                with Horizontal(id="tr-buttons"):
                    yield Button("Plan (p)", id="tr-plan-go", compact=True)
                    yield Button("Launch (^S)", id="tr-go", variant="primary", compact=True)
            with Vertical(id="tr-right"):
                table = DataTable(id="tr-runs", cursor_type="row", zebra_stripes=False, cell_padding=0)
                yield table
                with ContentSwitcher(initial="tr-chart", id="tr-view"):
                    yield LossChart(id="tr-chart")
                    yield ScrollableContainer(Static("", id="tr-plan-text"), id="tr-plan")
        yield Static("", id="tr-message")
        yield JobProgress()
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#tr-form").border_title = "New run"
        self.query_one("#tr-runs").border_title = "Runs"
        self.query_one("#tr-view").border_title = "Curve"
        table = self.query_one("#tr-runs", DataTable)
        self._fill_from_preset(str(self.query_one("#tr-preset", Select).value))
        self._load_splits()
        self.action_reload()
        self.set_interval(RUNS_REFRESH_S, self.action_reload)
        self.set_interval(FOLLOW_S, self._follow)
        # with runs to watch, the runs table; with none yet, the form's first field
        (table if self._has_runs() else self.query_one("#tr-preset")).focus()

    def _has_runs(self) -> bool:
        try:
            return any(p.is_dir() for p in self._runs_dir().iterdir())
        except OSError:
            return False

    def on_screen_resume(self) -> None:
        if self.is_mounted:
            self._load_splits()
            self.action_reload()

    def message(self, text: str, style: str = "") -> None:
        self.query_one("#tr-message", Static).update(Text(visible(text), style=style))

    # -- the form -------------------------------------------------------------------------------
    @on(Select.Changed, "#tr-preset")
    def _preset_changed(self, event: Select.Changed) -> None:
        if event.value is not Select.NULL:
            self._fill_from_preset(str(event.value))

    def _fill_from_preset(self, preset: str) -> None:
        try:
            values = preset_values(preset)
        except TrainingError as exc:
            self.message(app_message(exc), "bold red")
            return
        from training.config import preset_summary

        self.query_one("#tr-form").border_subtitle = visible(preset_summary(preset), single_line=True)
        self.query_one("#tr-base", Input).value = values["base"]
        self.query_one("#tr-method", Select).value = values["method"]
        for fid, _key in KNOB_KEYS:
            self.query_one(f"#tr-{fid}", Input).value = values[fid]

    def form(self) -> dict[str, str]:
        split = self.query_one("#tr-split", Select).value
        values = {"preset": str(self.query_one("#tr-preset", Select).value),
                  "split": "" if split is Select.NULL else str(split),
                  "method": str(self.query_one("#tr-method", Select).value)}
        for fid in ["base", "sets", "host"] + [fid for fid, _key in KNOB_KEYS]:
            values[fid] = self.query_one(f"#tr-{fid}", Input).value.strip()
        return values

    @work(thread=True, exclusive=True, group="tr-splits")
    def _load_splits(self) -> None:
        from curation.export import list_splits

        names = [s["name"] for s in list_splits(self.app.engine.ws)]
        self.app.call_from_thread(self._show_splits, names)

    def _show_splits(self, names: list[str]) -> None:
        box = self.query_one("#tr-split", Select)
        current = box.value
        box.set_options([(visible(n, single_line=True), n) for n in names])
        if current in names:
            box.value = current
        elif names:
            box.value = names[-1]

    # -- plan -----------------------------------------------------------------------------------
    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "tr-go":
            self.action_launch()
        elif event.button.id == "tr-plan-go":
            self.action_plan()

    def action_plan(self) -> None:
        try:
            request = run_request(self.app.engine.ws.root, self.form())
        except (StudioError, TrainingError) as exc:
            self.message(app_message(exc), "bold red")
            return
        self.query_one("#tr-plan-text", Static).update(Text("planning… (tokenising the split)", style="dim"))
        self.query_one("#tr-view", ContentSwitcher).current = "tr-plan"
        self.query_one("#tr-view").border_title = "Plan (select a run for its curve)"
        self._plan(request)

    @work(thread=True, exclusive=True, group="tr-plan")
    def _plan(self, request) -> None:
        from training.launch import plan_run
        from training.plan import format_plan

        try:
            text = Text(visible(format_plan(plan_run(request).plan)), no_wrap=True)  # tables: scroll, not wrap
        except (StudioError, TrainingError) as exc:
            text = Text(visible(app_message(exc)), style="bold red")
        self.app.call_from_thread(self.query_one("#tr-plan-text", Static).update, text)

    # -- launch ---------------------------------------------------------------------------------
    def action_launch(self) -> None:
        """Plan the launch in a worker (the plan's memory and steps, this machine's device), then ask:
        the confirmation (studio/screens/confirm.py) shows what will run, where, on which device,
        its memory and rough time, or why it is refused. Nothing is created before Launch."""
        if self._preparing:
            self.message("still planning the launch…", "dim")
            return
        try:
            request = run_request(self.app.engine.ws.root, self.form())
        except (StudioError, TrainingError) as exc:
            self.message(app_message(exc), "bold red")
            return
        self._preparing = True
        self.message(f"planning the launch on {request.split.name}… (tokenising the split, reading the device)", "dim")
        self._prepare_launch(request)

    @work(thread=True, exclusive=True, group="tr-prepare")
    def _prepare_launch(self, request) -> None:
        from training.launch import plan_run

        try:
            run_plan = plan_run(request, with_device=True)
        except (StudioError, TrainingError) as exc:
            self.app.call_from_thread(self._launch_refused_early, app_message(exc))
            return
        except Exception as exc:  # a tokenizer or file problem: said here, the studio stays up
            self.app.call_from_thread(self._launch_refused_early, f"planning failed: {type(exc).__name__}: {exc}")
            return
        self.app.call_from_thread(self._confirm_launch, run_plan)

    def _launch_refused_early(self, text: str) -> None:
        self._preparing = False
        self.message(text, "bold red")

    def _confirm_launch(self, run_plan) -> None:
        from .confirm import LaunchConfirmScreen

        self._preparing = False
        self.message("")
        rows, title = launch_rows(run_plan)
        refusal = run_plan.refusal

        def answer(result: dict | None) -> None:
            if refusal:
                self.message(f"not launched: {refusal}", "bold red")
            elif result is None:
                self.message("launch cancelled: nothing was created", "dim")
            else:
                self._start(run_plan)

        self.app.push_screen(LaunchConfirmScreen(title, rows, refusal=refusal), answer)

    def _start(self, run_plan) -> None:
        host = run_plan.request.host
        self.message(f"starting a run on {run_plan.request.split.name} ({host.target if host else 'here'})…", "dim")
        self._launch(run_plan)

    @work(thread=True, group="tr-launch")
    def _launch(self, run_plan) -> None:
        """Create the planned run and start it detached: here, or uploaded to and started on its host."""
        from training.launch import launch_run, new_run

        host = run_plan.request.host
        try:
            run_dir = new_run(run_plan.request, self._runs_dir(), planned=run_plan)
            if host is not None:
                self.app.call_from_thread(self.message, f"uploading {run_dir.name} to {host.target}…", "dim")
            started = launch_run(run_dir, host)
        except (StudioError, TrainingError) as exc:
            self.app.call_from_thread(self.message, app_message(exc), "bold red")
            return
        if started.remote is None:
            text = f"started {run_dir.name} (pid {started.pid}), detached: it goes on if the studio closes"
        else:
            remote = started.remote
            text = (f"started {remote.run_id} on {remote.host.target}:{remote.remote_dir} (pid {remote.pid}); "
                    "mirroring its metrics here")  # select_run starts the mirror
        self.app.call_from_thread(self._started, run_dir.name, text, host.target if host is not None else None)

    def _started(self, run_id: str, text: str, host: str | None = None) -> None:
        if host is not None:
            self._remotes[run_id] = host
        self.message(text, "bold green")
        self.notify(text, title="train")
        self.select_run(run_id)
        self.action_reload()

    @work(group="tr-stream")
    async def _stream(self, run_dir: Path) -> None:
        """Mirror a remote run's metrics into its local directory until it ends (the chart reads
        the mirror like any run). A dropped connection is reported; selecting the run again resumes."""
        from training.errors import TrainingError
        from training.remote import stream_metrics

        if run_dir.name in self._streaming:
            return
        self._streaming.add(run_dir.name)
        try:
            result = await stream_metrics(run_dir)
            self.notify(f"{run_dir.name}: {result.state}", title="remote run")
        except TrainingError as exc:
            self.message(f"{run_dir.name}: {exc} (select the run again to resume mirroring)", "bold red")
        finally:
            self._streaming.discard(run_dir.name)

    def _runs_dir(self) -> Path:
        return self.app.engine.ws.runs_dir

    # -- runs list ------------------------------------------------------------------------------
    def action_reload(self) -> None:
        self._list_runs()

    @work(thread=True, exclusive=True, group="tr-runs")
    def _list_runs(self) -> None:
        from training.remote import read_remote
        from training.runs import list_runs

        rows = list_runs(self._runs_dir())
        remotes = {}
        for r in rows:
            try:
                remote = read_remote(r.path)
            except (OSError, ValueError, KeyError, TypeError):
                remotes[r.id] = "remote"
                continue
            if remote is not None:
                remotes[r.id] = remote.host.target
        self.app.call_from_thread(self._show_runs, rows, remotes)

    def _show_runs(self, rows: list[RunInfo], remotes: dict[str, str]) -> None:
        if not self.query("#tr-runs"):
            return  # the studio is quitting: the screen's widgets are gone
        self._remotes.update(remotes)
        self._states = {r.id: r.state for r in rows}
        self._rows = rows
        self._fill_runs()
        ids = self._run_ids
        if self.selected is None and ids:
            self.select_run(ids[-1])

    def _table_width(self, table: DataTable, n_rows: int) -> int:
        """Columns the table can show without a horizontal scrollbar (less the vertical one when
        the rows overflow)."""
        width = table.size.width or max(20, self.app.size.width - 36 - 2)
        if table.size.height and n_rows > table.size.height - 1:
            width -= table.styles.scrollbar_size_vertical
        return width

    def _fill_runs(self) -> None:
        """Lay the runs table out for its width (runs_layout) and fill it: cells are updated in place
        while the runs and the columns stay the same, else the table is built again."""
        table = self.query_one("#tr-runs", DataTable)
        columns, data = runs_layout(self._rows, self._remotes, self._table_width(table, len(self._rows)))
        layout = tuple((c.key, c.width) for c in columns)
        ids = [rid for rid, _ in data]
        if ids == self._run_ids and layout == self._layout:
            for rid, cells in data:
                for col in columns:
                    table.update_cell(rid, col.key, cells[col.key])
            return
        if layout != self._layout:
            table.clear(columns=True)
            for col in columns:
                table.add_column(Text(col.label, justify="right" if col.right else "left"), width=col.width, key=col.key)
            self._layout = layout
        else:
            table.clear()
        for rid, cells in data:
            table.add_row(*(cells[c.key] for c in columns), key=rid)
        self._run_ids = ids
        if self.selected in ids:
            table.move_cursor(row=ids.index(self.selected), animate=False)

    def on_resize(self) -> None:
        if self.is_mounted:
            self.call_after_refresh(self._fill_runs)

    @on(DataTable.RowHighlighted, "#tr-runs")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key is not None and event.row_key.value != self.selected:
            self.select_run(str(event.row_key.value))

    @on(DataTable.RowSelected, "#tr-runs")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.select_run(str(event.row_key.value), force=True)

    # -- the chart ------------------------------------------------------------------------------
    def select_run(self, run_id: str, force: bool = False) -> None:
        """Show `run_id`'s curve (from its metrics.jsonl, read again from the start)."""
        view = self.query_one("#tr-view", ContentSwitcher)
        view.current = "tr-chart"
        view.border_title = f"Curve: {visible(run_id, single_line=True)}"
        if run_id != self.selected:
            view.border_subtitle = ""  # what the run used: set from its start line once read
        if run_id != self.selected or force:
            self.selected = run_id
            self._offset = 0
            self._generation = None
            self.query_one("#tr-chart", LossChart).reset(run_id)
        table = self.query_one("#tr-runs", DataTable)
        if run_id in self._run_ids and table.cursor_row != self._run_ids.index(run_id):
            table.move_cursor(row=self._run_ids.index(run_id), animate=False)
        run_dir = self._runs_dir() / run_id
        state = self._states.get(run_id)
        if (run_dir / REMOTE_JSON).is_file() and run_id not in self._streaming \
                and not (state is not None and state.is_final):
            self._stream(run_dir)  # reattach: keep the mirror growing
        self._follow()

    def _follow(self) -> None:
        if self.selected is not None:
            self._read_metrics(self.selected, self._offset)

    @work(thread=True, exclusive=True, group="tr-follow")
    def _read_metrics(self, run_id: str, offset: int) -> None:
        from training.metrics import metric_points, read_metrics, run_summary
        from training.runs import read_status

        run_dir = self._runs_dir() / run_id
        generation = read_status(run_dir).metrics_generation
        records, new_offset = read_metrics(run_dir, offset)
        restarted = new_offset < offset  # the file was cut (resume): read_metrics started at 0
        self.app.call_from_thread(self._got_metrics, run_id, offset, new_offset, metric_points(records),
                                  generation, restarted, run_summary(records))

    def _got_metrics(self, run_id: str, offset: int, new_offset: int, points: list[dict[str, Any]],
                     generation: Any, restarted: bool, summary: str | None = None) -> None:
        if run_id != self.selected or offset != self._offset:
            return  # a late answer for another run, or for an offset already read
        if not self.query("#tr-chart"):
            return  # the studio is quitting: the screen's widgets are gone
        if summary:
            self.query_one("#tr-view", ContentSwitcher).border_subtitle = visible(summary, single_line=True)
        chart = self.query_one("#tr-chart", LossChart)
        if restarted or (self._generation is not None and generation != self._generation and offset):
            # A resume cut the file: start over from 0 on the next read.
            chart.reset(run_id)
            self._offset = 0
            self._generation = generation
            return
        self._generation = generation
        self._offset = new_offset
        chart.extend(points)

    # -- cancel ---------------------------------------------------------------------------------
    def action_cancel_run(self) -> None:
        from .dialogs import ConfirmScreen

        run_id = self.selected
        if run_id is None:
            self.message("select a run to cancel", "yellow")
            return
        state = self._states.get(run_id)
        if state is not None and state.is_final:
            self.message(f"{run_id} is already {state}", "yellow")
            return

        def answer(yes: bool | None) -> None:
            if yes:
                self._cancel(run_id)

        self.app.push_screen(ConfirmScreen(f"Cancel run {visible(run_id, single_line=True)}? It stops at the next "
                                           "step with a checkpoint (resumable with studio train --resume)."), answer)

    @work(group="tr-cancel")
    async def _cancel(self, run_id: str) -> None:
        import asyncio

        from training import runs
        from training.errors import TrainingError
        from training.remote import cancel_remote

        run_dir = self._runs_dir() / run_id
        try:
            if (run_dir / REMOTE_JSON).is_file():
                await cancel_remote(run_dir)
            else:
                await asyncio.to_thread(runs.cancel, run_dir, wait_s=5.0)
        except TrainingError as exc:
            self.message(app_message(exc), "bold red")
            return
        self.message(f"cancel sent to {run_id}", "bold yellow")
        self.action_reload()
