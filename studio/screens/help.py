"""The help screen (? or F1): every action of the registry, grouped by screen, with its keys.

Generated from studio/bindings.py (with the user's keymap applied), so it cannot drift from the
keys that actually work.
"""
from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from ..bindings import SCREENS, all_actions, key_display


def help_table(keymap: dict[str, str] | None = None) -> Table:
    keymap = keymap or {}
    titles = {"app": "Everywhere"} | {s.name: s.title for s in SCREENS}
    table = Table(box=None, show_header=False, expand=True, padding=(0, 1))
    table.add_column("keys", style="bold", no_wrap=True)
    table.add_column("action")
    table.add_column("id", style="dim", no_wrap=True)
    scopes: dict[str, list] = {}
    for a in all_actions():
        scopes.setdefault(a.scope, []).append(a)
    for scope, actions in scopes.items():
        table.add_row(Text(titles.get(scope, scope), style="bold underline"), "", "")
        for a in actions:
            table.add_row(key_display(keymap.get(a.id, a.keys)), a.description, a.id)
    return table


class HelpScreen(ModalScreen[None]):
    # A modal screen stops the app's own bindings: the number keys are repeated here (with the
    # registry's ids, so a keymap moves them too) to close the help and switch screens.
    BINDINGS = [Binding("escape,q,question_mark,f1", "dismiss_help", "Close")] + [
        Binding(s.key, f"go('{s.name}')", f"Go to {s.title}", show=False, id=f"screen.{s.name}") for s in SCREENS
    ]

    def compose(self) -> ComposeResult:
        keymap = getattr(getattr(self.app, "_settings", None), "keymap", None)
        with VerticalScroll(classes="dialog", id="help-dialog"):
            yield Static(Text("Keys (Esc closes, a number key goes to its screen; Ctrl+P searches every action)",
                              style="bold"))
            yield Static(help_table(keymap), id="help-table")

    def action_dismiss_help(self) -> None:
        self.dismiss(None)

    def action_go(self, name: str) -> None:
        self.dismiss(None)
        self.app.call_later(self.app.action_switch_to, name)
