"""The command palette (Ctrl+P): every registry action, every screen, every theme, fuzzy-searched.

Built from studio/bindings.py, so a new action or screen shows up here without touching this file.
An action of another screen first switches to that screen, then runs there.
"""
from __future__ import annotations

from functools import partial
from typing import Callable

from textual.command import DiscoveryHit, Hit, Hits, Provider

from .bindings import SCREENS, all_actions, key_display


class StudioCommands(Provider):
    def _commands(self) -> list[tuple[str, str, Callable[[], object]]]:
        app = self.app
        titles = {s.name: s.title for s in SCREENS}
        out: list[tuple[str, str, Callable[[], object]]] = []
        for a in all_actions():
            if a.scope == "app":
                label = a.description
            else:
                label = f"{titles.get(a.scope, a.scope)}: {a.description}"
            out.append((label, f"{key_display(a.keys)}  ({a.id})", partial(app.run_registry_action, a.id)))
        for name in sorted(app.available_themes):
            out.append((f"Theme: {name}", "switch the colour theme (saved for next time)", partial(setattr, app, "theme", name)))
        return out

    async def discover(self) -> Hits:
        for label, help_text, callback in self._commands():
            yield DiscoveryHit(label, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for label, help_text, callback in self._commands():
            score = max(matcher.match(label), matcher.match(help_text) * 0.5)
            if score > 0:
                yield Hit(score, matcher.highlight(label), callback, help=help_text)
