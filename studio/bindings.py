"""The one registry of the studio's actions: it feeds every screen's key bindings, the help screen
(`?`/F1) and the command palette, so a key is defined once and shown the same everywhere.

An `Action` names a Textual action (`action` is the method suffix on the screen or app, e.g.
"approve" -> `action_approve`), the keys that trigger it, a description, and its scope: "app"
actions work on every screen, other scopes are screen names. Each binding carries the action's
`id`, so a user keymap (`keymap` in the settings file, `{"review.approve": "y"}`) remaps it through
Textual's `App.set_keymap`.

Adding a screen: write `studio/screens/NAME.py` with a `Screen` subclass whose
`BINDINGS = bindings_for("NAME")`, add one `ScreenEntry` to `SCREENS` and its actions to `ACTIONS`.
The app, the help screen and the palette pick it up from here.

Focus: a focused text field (Input, TextArea) takes printable keys as text, so single keys (the
number keys that switch screens, `a`, `q`) work only outside one. Screens therefore arrive with
their list or table focused, or nothing (`Screen.AUTO_FOCUS`), never a text field: Tab or a click
(or `i`, into the first one) enters a field, Escape leaves it (focus goes back to the AUTO_FOCUS widget), and a second Escape
does what Escape does on that screen or dialog (close, cancel, stop).
"""
from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True)
class Action:
    id: str            # stable id, used by the keymap and the palette: "review.approve"
    keys: str          # Textual key names, comma separated: "a" or "down,j"
    action: str        # Textual action string run on the screen (or app for scope "app")
    description: str   # shown in the footer, the help screen and the palette
    scope: str         # "app" or a screen name
    show: bool = True  # shown in the footer (the help screen lists every action regardless)
    priority: bool = False  # run even when a focused widget (an Input) would take the key


@dataclass(frozen=True)
class ScreenEntry:
    name: str          # mode name and action scope: "review"
    title: str         # shown in the header and the palette: "Review"
    key: str           # key that switches to it from anywhere: "2"
    module: str        # imported on first switch, so heavy screens cost nothing at start
    cls: str           # the Screen subclass in that module
    description: str


SCREENS: list[ScreenEntry] = [
    ScreenEntry("home", "Home", "1", "studio.screens.home", "HomeScreen", "The workspace at a glance: counts, flags, jobs, runs"),
    ScreenEntry("review", "Review", "2", "studio.screens.review", "ReviewScreen", "Walk the samples: approve, reject, edit, undo"),
    ScreenEntry("duplicates", "Duplicates", "3", "studio.screens.duplicates", "DuplicatesScreen", "Duplicate clusters side by side: pick the keeper, run dedup"),
    ScreenEntry("quality", "Quality", "4", "studio.screens.quality", "QualityScreen", "Quality flags by rule: move a threshold, preview, apply"),
    ScreenEntry("export", "Export", "5", "studio.screens.export", "ExportScreen", "Freeze a train/validation split"),
    ScreenEntry("import", "Import", "6", "studio.screens.import_", "ImportScreen", "Import files into the workspace"),
    ScreenEntry("augment", "Augment", "7", "studio.screens.augment", "AugmentScreen", "LLM augmentation: dry-run cost, launch, progress, cancel"),
    ScreenEntry("train", "Train", "8", "studio.screens.train", "TrainScreen", "Plan and launch training runs (here or over SSH), live loss curves, cancel"),
    ScreenEntry("playground", "Playground", "9", "studio.screens.playground", "PlaygroundScreen", "Ask a finished run: base and adapter answers side by side"),
    ScreenEntry("evals", "Eval", "0", "studio.screens.evals", "EvalScreen", "Is the fine-tune better than the base, and where is it still wrong"),
]


ACTIONS: list[Action] = [
    # -- everywhere ---------------------------------------------------------------------------
    Action("app.help", "question_mark,f1", "app.show_help", "Keys and actions", "app"),
    Action("app.palette", "ctrl+p", "app.command_palette", "Command palette", "app", show=False),
    Action("app.theme", "ctrl+t", "app.pick_theme", "Change theme", "app", show=False),
    Action("app.quit", "ctrl+q", "app.quit", "Quit", "app", priority=True),
    Action("app.quit_q", "q", "app.quit", "Quit", "app", show=False),
    Action("app.cancel_jobs", "ctrl+x", "app.cancel_jobs", "Cancel running jobs", "app", show=False, priority=True),
    # Escape in a text field leaves it (focus goes to the screen's list, or nowhere) before the
    # screen's or dialog's own Escape runs: a second Escape does that. Active only in a field.
    Action("app.leave_field", "escape", "app.leave_field", "Leave field", "app", priority=True),
    Action("app.enter_field", "i", "app.enter_field", "Type in the first field", "app", show=False),
    # -- home ---------------------------------------------------------------------------------
    Action("home.refresh", "ctrl+r", "refresh_stats", "Refresh", "home"),
    # -- review -------------------------------------------------------------------------------
    Action("review.approve", "a", "approve", "Approve", "review"),
    Action("review.reject", "r", "reject", "Reject", "review"),
    Action("review.edit", "e", "edit", "Edit", "review"),
    Action("review.edit_external", "E", "edit_external", "Edit in $EDITOR", "review", show=False),
    Action("review.undo", "u", "undo", "Undo", "review"),
    Action("review.next", "down,j", "cursor_down", "Next sample", "review", show=False),
    Action("review.previous", "up,k", "cursor_up", "Previous sample", "review", show=False),
    Action("review.page_down", "pagedown", "page_down", "Page down", "review", show=False),
    Action("review.page_up", "pageup", "page_up", "Page up", "review", show=False),
    Action("review.first", "home,g", "first", "First sample", "review", show=False),
    Action("review.last", "end,G", "last", "Last sample", "review", show=False),
    Action("review.search", "slash", "search", "Search", "review"),
    Action("review.filter", "f", "filter", "Filter", "review"),
    Action("review.clear_filter", "x", "clear_filter", "Clear filter and search", "review", show=False),
    Action("review.toggle_select", "space", "toggle_select", "Select / unselect", "review", show=False),
    Action("review.select_range", "v", "select_range", "Select range to here", "review", show=False),
    Action("review.select_all", "asterisk", "select_all", "Select all matching the filter", "review", show=False),
    Action("review.bulk_approve", "A", "bulk_approve", "Approve selected (or all matching)", "review", show=False),
    Action("review.bulk_reject", "R", "bulk_reject", "Reject selected (or all matching)", "review", show=False),
    Action("review.reload", "ctrl+r", "reload", "Reload", "review", show=False),
    # -- duplicates ---------------------------------------------------------------------------
    Action("duplicates.keep", "k", "keep", "Keep this member", "duplicates"),
    Action("duplicates.next", "n", "next_cluster", "Next cluster", "duplicates"),
    Action("duplicates.previous", "p", "previous_cluster", "Previous cluster", "duplicates"),
    Action("duplicates.find", "d", "find_duplicates", "Find duplicates", "duplicates"),
    Action("duplicates.undo", "u", "undo", "Undo", "duplicates"),
    Action("duplicates.review", "o", "open_review", "Open cluster in Review", "duplicates"),
    Action("duplicates.reload", "ctrl+r", "reload", "Reload", "duplicates", show=False),
    # -- quality ------------------------------------------------------------------------------
    Action("quality.up", "right,plus", "threshold(1)", "Raise threshold", "quality", show=False),
    Action("quality.down", "left,minus", "threshold(-1)", "Lower threshold", "quality", show=False),
    Action("quality.apply", "enter", "apply", "Apply threshold / open in Review", "quality"),
    Action("quality.type", "t", "type_threshold", "Type a threshold", "quality"),
    Action("quality.review", "o", "open_review", "Open flagged in Review", "quality"),
    Action("quality.run", "r", "run_quality", "Run quality", "quality"),
    Action("quality.undo", "u", "undo", "Undo", "quality"),
    Action("quality.reload", "ctrl+r", "reload", "Reload", "quality", show=False),
    # -- export -------------------------------------------------------------------------------
    Action("export.export", "ctrl+s", "export", "Export split", "export", priority=True),
    Action("export.reload", "ctrl+r", "reload", "Reload", "export", show=False),
    # -- import -------------------------------------------------------------------------------
    Action("import.import", "ctrl+s", "run_import", "Import", "import", priority=True),
    # -- train --------------------------------------------------------------------------------
    Action("train.launch", "ctrl+s", "launch", "Launch run", "train", priority=True),
    Action("train.plan", "p", "plan", "Plan", "train"),
    Action("train.cancel", "c", "cancel_run", "Cancel run", "train"),
    Action("train.reload", "ctrl+r", "reload", "Reload runs", "train", show=False),
    # -- playground ---------------------------------------------------------------------------
    Action("playground.reload", "ctrl+r", "reload", "Reload runs", "playground", show=False),
    Action("playground.stop", "escape", "stop", "Stop answering", "playground"),
    # -- augment ------------------------------------------------------------------------------
    Action("augment.launch", "ctrl+s", "launch", "Launch job", "augment", priority=True),
    Action("augment.cancel", "escape,c", "cancel", "Cancel job", "augment"),
    Action("augment.review", "o", "open_review", "Review pending", "augment"),
    Action("augment.reload", "ctrl+r", "reload", "Reload", "augment", show=False),
    # -- evals --------------------------------------------------------------------------------
    Action("evals.filter", "d", "cycle_filter", "Filter right/wrong", "evals"),
    Action("evals.new", "n", "new_eval", "New eval", "evals"),
    Action("evals.why", "w", "why", "Why (nearest rows)", "evals"),
    Action("evals.next_eval", "e", "next_eval", "Next eval", "evals", show=False),
    Action("evals.reload", "ctrl+r", "reload", "Reload runs and evals", "evals", show=False),
]


def screen_actions() -> list[Action]:
    """One app action per screen: its key switches to it."""
    return [
        Action(f"screen.{s.name}", s.key, f"app.switch_to('{s.name}')", f"Go to {s.title}", "app", show=False)
        for s in SCREENS
    ]


def all_actions() -> list[Action]:
    return ACTIONS + screen_actions()


def bindings_for(scope: str) -> list[Binding]:
    """Textual bindings for a scope ("app" or a screen name), each with its action's id."""
    return [
        Binding(a.keys, a.action.removeprefix("app.") if scope == "app" else a.action, a.description,
                show=a.show, id=a.id, priority=a.priority)
        for a in all_actions() if a.scope == scope
    ]


def screen_key(name: str, keymap: dict[str, str] | None = None) -> str:
    """The key that switches to screen `name` as a person types it ("6"), the keymap applied."""
    entry = next(s for s in SCREENS if s.name == name)
    return key_display((keymap or {}).get(f"screen.{name}", entry.key))


def key_display(keys: str) -> str:
    """How a key list reads to a person: "question_mark,f1" -> "? / F1"."""
    names = {"question_mark": "?", "slash": "/", "asterisk": "*", "space": "Space", "pagedown": "PgDn",
             "pageup": "PgUp", "down": "↓", "up": "↑", "left": "←", "right": "→", "plus": "+", "minus": "-",
             "enter": "Enter", "escape": "Esc", "tab": "Tab"}
    out = []
    for k in keys.split(","):
        k = k.strip()
        out.append(names.get(k, k.upper() if k.startswith("f") and k[1:].isdigit() else k.replace("ctrl+", "Ctrl+")))
    return " / ".join(out)
