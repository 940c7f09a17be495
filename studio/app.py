"""The Textual app: it opens the workspace, holds the screens and routes registry actions.

Domain work lives elsewhere: queries in curation.browse, writes in curation.review (through
studio.engine's writer thread), screen logic in studio/screens. Screens are Textual modes made
on first use from studio/bindings.py's SCREENS (so a heavy screen costs nothing at start).

Nothing here imports torch, transformers, peft, trl, bitsandbytes, datasets or openai
(tests/test_boundaries.py checks `import studio.app`).

`STUDIO_EXIT_AFTER_PAINT=FILE` makes the app write {"seconds", "heavy_modules"} to FILE right after
its first frame and exit: benches/studio_bench.py measures start-up with it.
"""
from __future__ import annotations

import importlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Static

from curation import browse
from curation.errors import StudioError
from training.errors import TrainingError

from . import settings as settings_mod
from .bindings import SCREENS, all_actions, bindings_for
from .palette import StudioCommands

SWITCH_INTERVAL_S = 0.0005
HEAVY_MODULES = ("torch", "transformers", "peft", "trl", "bitsandbytes", "datasets", "openai")


class WorkspaceErrorScreen(Screen):
    """Shown instead of the studio when the workspace cannot be opened (held by another process,
    too new, not a workspace): the message says what to do; q quits."""

    BINDINGS = [Binding("q,escape,ctrl+q", "app.quit", "Quit")]

    def __init__(self, message: str):
        super().__init__()
        self.message = message

    def compose(self) -> ComposeResult:
        from rich.text import Text

        from curation.safe_text import visible

        with Vertical(id="workspace-error"):
            yield Static(Text("The workspace cannot be opened", style="bold"), id="workspace-error-title")
            yield Static(Text(visible(self.message)), id="workspace-error-message")
            yield Static(Text("Press q to quit."))
        yield Footer()


class StudioApp(App):
    """THE STUDIO. `StudioApp(workspace)`; `screen=` picks the first screen ("home" by default)."""

    CSS_PATH = "studio.tcss"
    TITLE = "THE STUDIO"
    COMMANDS = App.COMMANDS | {StudioCommands}
    BINDINGS = bindings_for("app")

    def __init__(self, workspace: Path, *, screen: str = "home", create: bool = True):
        super().__init__()
        self.workspace_path = Path(workspace)
        self.first_screen = screen
        self.create = create
        self.engine: Any = None  # studio.engine.Engine once the workspace is open
        self.ipc: Any = None  # studio.ipc_server.Server: runs `studio stats` & co. for other processes
        self.jobs: dict[int, Any] = {}  # running curation.jobs.Job by id, shown by JobProgress
        self._job_ids = 0
        self._settings, self._settings_problem = settings_mod.load()

    # -- start and stop -------------------------------------------------------------------------
    def on_mount(self) -> None:
        # A worker thread running Python code (quality rules, tokenising) holds the GIL for the
        # interpreter's switch interval (5 ms) each time the UI thread wants it back, several
        # times per key press: a shorter interval keeps key presses smooth during such jobs.
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        if self._settings.theme in self.available_themes:
            self.theme = self._settings.theme
        if self._settings.keymap:
            self.set_keymap(self._settings.keymap)
        self.theme_changed_signal.subscribe(self, self._save_theme)
        if self._settings_problem:
            self.notify(self._settings_problem, severity="warning", timeout=8)
        try:
            from curation.workspace import open_workspace

            from .engine import Engine

            self.engine = Engine(open_workspace(self.workspace_path, create=self.create))
        except StudioError as exc:
            self.push_screen(WorkspaceErrorScreen(str(exc)))
            return
        from .ipc_server import start_server

        self.ipc = start_server(self.engine)  # read-only commands while we hold the workspace
        self.sub_title = self.engine.name
        for entry in SCREENS:
            self.add_mode(entry.name, self._screen_factory(entry.module, entry.cls))
        self.switch_mode(self.first_screen if self.first_screen in self._modes else "home")
        self.refresh_counts()

    def on_ready(self) -> None:
        target = os.environ.get("STUDIO_EXIT_AFTER_PAINT")
        if target:
            Path(target).write_text(json.dumps({
                "seconds": _seconds_since_process_start(),
                "heavy_modules": sorted(m for m in HEAVY_MODULES if m in sys.modules),
            }))
            self.exit()
            return
        if self.engine is not None and not self.engine.ws.read_only:
            # rows a command-line import left without their language and search column (after the first paint)
            from .screens._curation import fill_derived

            fill_derived(self)

    def on_unmount(self) -> None:
        # Cancel running jobs first: engine.close() waits for the writer thread and for jobs on
        # their own connections (an augment job sending requests), which would otherwise hold
        # quitting until they ran out.
        for job in list(self.jobs.values()):
            job.cancel()
        if self.ipc is not None:
            self.ipc.stop()
        if self.engine is not None:
            self.engine.close()

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """App.run, then, once torch is loaded (a Playground or Eval model), exit at once: the
        interpreter's teardown with torch and a model loaded took 1-4 s after the screen had gone
        (measured on the 2-core machine; `exit_without_teardown`)."""
        result = super().run(*args, **kwargs)
        if not kwargs.get("headless"):  # a person's terminal (tests and snapshots run headless, in pytest's process)
            self.exit_without_teardown()
        return result

    def exit_without_teardown(self) -> None:
        """os._exit with the app's return code when torch is imported: the workspace is closed (on_unmount),
        runs are separate processes, and model threads are daemons, so nothing is left to finish but
        freeing memory the OS frees anyway. Without torch, a normal exit (fast) keeps atexit handlers."""
        if "torch" not in sys.modules:
            return
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError, AttributeError):
                pass
        os._exit(int(self.return_code or 0))

    @staticmethod
    def _screen_factory(module: str, cls: str) -> Callable[[], Screen]:
        return lambda: getattr(importlib.import_module(module), cls)()

    # -- header counts ------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="counts")
    def refresh_counts(self) -> None:
        """Workspace name and counts by status in the header; call after any change."""
        by = browse.status_counts(self.engine.reader())
        total = sum(by.values())
        text = (f"{self.engine.name} · {total:,} samples · {by.get('pending', 0):,} pending "
                f"· {by.get('approved', 0):,} ✓ · {by.get('rejected', 0):,} ✗")
        self.call_from_thread(setattr, self, "sub_title", text)

    # -- actions --------------------------------------------------------------------------------
    def action_switch_to(self, name: str) -> None:
        if self.engine is not None and name in self._modes:
            self.switch_mode(name)

    # -- text fields: Escape leaves one (studio/bindings.py says why) -------------------------------
    def _text_field(self) -> Any:
        """The focused text field (Input, TextArea) of a studio screen or dialog, else None (the
        command palette and theme picker keep their own Escape)."""
        from textual.screen import SystemModalScreen
        from textual.widgets import Input, TextArea

        if isinstance(self.screen, SystemModalScreen):
            return None
        focused = self.screen.focused
        return focused if isinstance(focused, (Input, TextArea)) else None

    def _first_field(self) -> Any:
        """The first text field Tab would reach on a studio screen (None: it has none showing)."""
        from textual.screen import SystemModalScreen
        from textual.widgets import Input, TextArea

        if isinstance(self.screen, SystemModalScreen):
            return None
        return next((w for w in self.screen.focus_chain if isinstance(w, (Input, TextArea))), None)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "leave_field":  # only in a field: elsewhere Escape is the screen's
            return self._text_field() is not None
        if action == "enter_field":  # only where there is a field to type in
            return self._text_field() is None and self._first_field() is not None
        return True

    def action_enter_field(self) -> None:
        field = self._first_field()
        if field is None:
            from textual.actions import SkipAction

            raise SkipAction()
        field.focus()

    def action_leave_field(self) -> None:
        """Blur the focused text field; focus goes to the screen's AUTO_FOCUS widget (its list or
        table), or nowhere. The screen's own Escape (close, cancel, stop) is for the next press."""
        from textual.actions import SkipAction

        if self._text_field() is None:
            raise SkipAction()
        screen = self.screen
        target = None
        selector = screen.AUTO_FOCUS
        if selector and selector != "*":
            target = next((w for w in screen.query(selector) if w.focusable), None)
        screen.set_focus(target)

    def action_show_help(self) -> None:
        from .screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_cancel_jobs(self) -> None:
        """Cancel every running job (import, dedup, quality, export, augment): each stops at its
        next safe point and leaves the workspace as the job's own contract says."""
        if not self.jobs:
            self.notify("no job is running")
            return
        for job in list(self.jobs.values()):
            job.cancel()
        self.notify(f"cancelling {len(self.jobs)} job(s)")

    def action_pick_theme(self) -> None:
        self.search_themes()

    def run_registry_action(self, action_id: str) -> None:
        """Run a registry action by id (the palette calls this): switches screen first if needed."""
        action = next(a for a in all_actions() if a.id == action_id)
        if action.scope == "app":
            self.call_later(self.run_action, action.action)
            return

        async def switch_then_run() -> None:
            if self.current_mode != action.scope:
                await self.switch_mode(action.scope)
            await self.screen.run_action(action.action)

        self.call_later(switch_then_run)

    def _save_theme(self, theme: Any) -> None:
        self._settings.theme = theme.name
        try:
            settings_mod.save(self._settings)
        except OSError as exc:
            self.notify(f"could not save the theme to {settings_mod.settings_path()}: {exc}", severity="warning")

    # -- long work ------------------------------------------------------------------------------
    def run_job(self, kind: str, fn: Callable[[Any], Any], on_done: Callable[[Any], None] | None = None,
                job: Any = None) -> None:
        """Run `fn(job)` (a curation function taking a `curation.jobs.Job`) in a thread worker; the
        JobProgress widget on every screen shows its progress; Escape on it cancels. `on_done`
        gets the result on the UI thread. StudioErrors and the trainer's TrainingErrors become
        notifications. `job`: a Job (or subclass, e.g. an AugmentJob with its own counters) to use
        instead of a plain one."""
        from curation.jobs import Job

        self._job_ids += 1
        job = job if job is not None else Job(kind=kind)
        self.jobs[self._job_ids] = job
        job_id = self._job_ids

        def body() -> None:
            try:
                result = fn(job)
            except (StudioError, TrainingError) as exc:
                # the engine's CLI advice ("pass --skip-invalid") said as the app's fields and keys
                from .screens._curation import app_message

                self.call_from_thread(self.notify, app_message(exc), title=kind, severity="error", timeout=10)
            except Exception as exc:  # a full disk is the user's to fix, as the command line says it
                from curation.errors import disk_full_error

                err = disk_full_error(exc, self.workspace_path)
                if err is None:
                    raise
                self.call_from_thread(self.notify, str(err), title=kind, severity="error", timeout=10)
            else:
                if on_done is not None:
                    self.call_from_thread(on_done, result)
                else:
                    self.call_from_thread(self.notify, f"{kind} done", title=kind)
            finally:
                self.jobs.pop(job_id, None)
                self.call_from_thread(self.refresh_counts)

        self.run_worker(body, thread=True, group="jobs", name=kind, exit_on_error=True)


def _seconds_since_process_start() -> float:
    """Wall time since this process started (Linux: /proc), else since studio.app was imported."""
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        start = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return round(uptime - start, 3)
    except (OSError, ValueError, IndexError):
        return round(time.monotonic() - _IMPORTED_AT, 3)


_IMPORTED_AT = time.monotonic()
