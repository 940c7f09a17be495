"""Playground: ask a finished run a question and read the base's answer beside the adapter's.

The model loads in a daemon thread (`training.inference.load_session`, torch imported there, never
at start) while both panes show a loading indicator. Enter in the prompt streams the two answers
token by token (`chat_pair_stream`: the base with the adapter switched off, then the adapter: one
model, so in turn) into the two panes; Escape stops. Quitting waits for neither thread (see
`in_daemon_thread` and `on_unmount`). The run list arrives focused, without type-ahead (`i` or Tab
enters the prompt), and is read again every RUNS_POLL_S while shown, so a run that finishes on the
Train screen appears here. A run on the built-in tiny base says UNTRAINED in the title: its
answers are noise by design. Model text is shown through safe_text.visible.
"""
from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Select, Static

from curation.errors import StudioError
from curation.safe_text import visible

from ..bindings import bindings_for
from ..widgets.job_progress import JobProgress

if TYPE_CHECKING:
    from training.rundir import RunInfo

RUNS_POLL_S = 3.0  # while shown, the run list is read again: a run that finishes appears without a key
MAX_NEW_TOKENS = 96
SEED = 0  # the same seed for both answers: the difference is the adapter's, not the dice's


def finished_runs(runs_dir: Path) -> list[RunInfo]:
    """Runs that have an adapter/ or model/ to load, newest last."""
    from training.runs import list_runs

    out = []
    for r in list_runs(runs_dir):
        if (r.path / "adapter" / "adapter_config.json").is_file() or (r.path / "model" / "config.json").is_file():
            out.append(r)
    return out


def in_daemon_thread(fn: Callable[[], Any], name: str) -> "asyncio.Future[Any]":
    """Run fn() in a daemon thread; the returned future (of the running loop) gets its result. Not a
    Textual thread worker: those run in the event loop's executor, whose threads the interpreter joins
    at exit, so a model still loading or answering held quitting until it finished. A daemon thread
    is not waited for; if the app has gone when fn returns, the result is dropped."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def body() -> None:
        try:
            result, error = fn(), None
        except BaseException as exc:  # delivered to the awaiting worker
            result, error = None, exc

        def settle() -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        try:
            loop.call_soon_threadsafe(settle)
        except RuntimeError:  # the loop is closed: the studio quit meanwhile
            pass

    threading.Thread(target=body, name=name, daemon=True).start()
    return future


class PlaygroundScreen(Screen):
    BINDINGS = bindings_for("playground")
    AUTO_FOCUS = "#pg-run"  # arrival and Escape from the prompt: the run list, where number keys switch screens
    DEFAULT_CSS = """
    #pg-top { height: auto; }
    #pg-run { width: 1fr; }
    #pg-title { height: auto; padding: 0 1; }
    #pg-panes { height: 1fr; }
    .pg-pane { width: 1fr; border: round $primary 40%; padding: 0 1; }
    #pg-prompt { dock: bottom; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.session: Any = None
        self.session_run: str | None = None
        self.untrained = False
        self._stop = threading.Event()
        self._answers = {"base": "", "adapter": ""}
        self._run_ids: list[str] | None = None  # the finished runs listed last

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="pg-top"):
            # no type-ahead: a question typed here must not pick a run (the prompt takes text after i or Tab)
            yield Select([], id="pg-run", prompt="(no finished runs)", compact=True, type_to_search=False)
        yield Static("", id="pg-title")
        with Horizontal(id="pg-panes"):
            with VerticalScroll(id="pg-base-pane", classes="pg-pane"):
                yield Static("", id="pg-base")
            with VerticalScroll(id="pg-adapter-pane", classes="pg-pane"):
                yield Static("", id="pg-adapter")
        yield Input("", id="pg-prompt", placeholder="ask something, Enter sends")
        yield JobProgress()
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#pg-base-pane").border_title = "base"
        self.query_one("#pg-adapter-pane").border_title = "adapter"
        self.action_reload()
        self.set_interval(RUNS_POLL_S, self._poll_runs)
        self.query_one("#pg-run", Select).focus()  # not the prompt: number keys switch screens

    def on_screen_resume(self) -> None:
        if self.is_mounted:
            self.action_reload()

    def on_unmount(self) -> None:
        """Quitting: stop a generation at its next token and drop the model; wait for nothing. The
        load and generate threads are daemon threads (in_daemon_thread), so the process exits
        without joining them, and the model is not released here (the OS frees it; studio.app
        skips the interpreter's teardown once torch is loaded)."""
        self._stop.set()
        self.session = None

    def _poll_runs(self) -> None:
        if self.is_current:
            self._list_runs()

    def action_reload(self) -> None:
        self._list_runs()

    @work(thread=True, exclusive=True, group="pg-runs")
    def _list_runs(self) -> None:
        rows = finished_runs(self.app.engine.ws.runs_dir)
        self.app.call_from_thread(self._show_runs, rows)

    def _show_runs(self, rows: list[RunInfo]) -> None:
        box = self.query_one("#pg-run", Select)
        current = box.value
        ids = [r.id for r in rows]
        if ids == self._run_ids:
            return  # unchanged: setting the options again would close an open list
        self._run_ids = ids
        box.set_options([(visible(r.id, single_line=True) + (" (UNTRAINED base)" if r.untrained else ""),
                          r.id) for r in rows])
        if current in ids:
            box.value = current
        elif ids:
            box.value = ids[-1]
        else:
            self._title(Text("no finished run yet: train one on the Train screen (key 8)", style="dim"))

    def _title(self, text: Text) -> None:
        self.query_one("#pg-title", Static).update(text)

    # -- loading --------------------------------------------------------------------------------
    @on(Select.Changed, "#pg-run")
    def _run_changed(self, event: Select.Changed) -> None:
        if event.value is not Select.NULL and event.value != self.session_run:
            self.load(str(event.value))

    def load(self, run_id: str) -> None:
        self._stop.set()
        self.session = None
        self.session_run = run_id
        for pane in ("#pg-base-pane", "#pg-adapter-pane"):
            self.query_one(pane).loading = True
        self._title(Text(f"loading {visible(run_id, single_line=True)}…", style="dim"))
        self._load(run_id)

    @work(exclusive=True, group="pg-load")
    async def _load(self, run_id: str) -> None:
        from training.errors import TrainingError

        run_dir = self.app.engine.ws.runs_dir / run_id

        def load() -> tuple[Any, Any]:
            from training.inference import describe_run, load_session

            return describe_run(run_dir), load_session(run_dir)

        try:
            described, session = await in_daemon_thread(load, name=f"load {run_id}")
        except TrainingError as exc:
            self._loaded(run_id, None, StudioError(str(exc)))
            return
        self._loaded(run_id, session, described)

    def _loaded(self, run_id: str, session: Any, info: Any) -> None:
        if run_id != self.session_run:
            return  # another run was picked meanwhile
        for pane in ("#pg-base-pane", "#pg-adapter-pane"):
            self.query_one(pane).loading = False
        if isinstance(info, StudioError):
            self._title(Text(visible(str(info)), style="bold red"))
            return
        self.session = session
        self.untrained = bool(info.untrained_base)
        name = visible(run_id, single_line=True)
        base = visible(str(info.base), single_line=True)
        title = Text()
        title.append(f"{name}", style="bold")
        title.append(f"  base {base} · {info.method} · {session.device}")
        if self.untrained:
            title.append("  UNTRAINED", style="bold red")
            title.append(" random-weight demo model: its answers mean nothing", style="red")
        self._title(title)
        self.query_one("#pg-base-pane").border_title = f"base {base}" + (" (UNTRAINED)" if self.untrained else "")
        self.query_one("#pg-adapter-pane").border_title = f"adapter {name}"

    # -- asking ---------------------------------------------------------------------------------
    @on(Input.Submitted, "#pg-prompt")
    def _ask(self, event: Input.Submitted) -> None:
        prompt = event.value.strip()
        if not prompt:
            return
        if self.session is None:
            self.notify("no model loaded yet: pick a finished run", severity="warning")
            return
        self._stop.set()
        self._stop = threading.Event()
        self._answers = {"base": "", "adapter": ""}
        self.query_one("#pg-base", Static).update("")
        self.query_one("#pg-adapter", Static).update("")
        self._generate(self.session, prompt, self._stop)

    @work(exclusive=True, group="pg-generate")
    async def _generate(self, session: Any, prompt: str, stop: threading.Event) -> None:
        from training.errors import TrainingError
        from training.inference import chat_pair_stream

        messages = [{"role": "user", "content": prompt}]
        loop = asyncio.get_running_loop()

        def generate() -> None:
            for side, piece in chat_pair_stream(session, messages, max_new_tokens=MAX_NEW_TOKENS, seed=SEED):
                if stop.is_set():
                    break  # the stream's own cleanup stops the model at its next token
                loop.call_soon_threadsafe(self._piece, stop, side, piece)

        try:
            await in_daemon_thread(generate, name="playground generate")
        except TrainingError as exc:
            self.notify(str(exc), severity="error")
        except asyncio.CancelledError:  # a new question, or quitting: this one stops at its next token
            stop.set()
            raise

    def _piece(self, stop: threading.Event, side: str, piece: str) -> None:
        if stop is not self._stop or stop.is_set() or not self.is_mounted:
            return
        self._answers[side] += piece
        self.query_one(f"#pg-{side}", Static).update(Text(visible(self._answers[side])))

    def answer(self, side: str) -> str:
        """The text shown so far in the `base` or `adapter` pane."""
        return self._answers[side]

    def action_stop(self) -> None:
        self._stop.set()
