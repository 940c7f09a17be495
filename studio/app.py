"""The Textual app (placeholder shell; the studio issue fills it)."""
from __future__ import annotations

from pathlib import Path

from textual.app import App


class StudioApp(App):
    def __init__(self, workspace: Path):
        super().__init__()
        self.workspace_path = workspace
