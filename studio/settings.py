"""The person's studio settings, kept in their config folder (not the workspace: a theme follows
the person, not the data).

File: `$XDG_CONFIG_HOME/finetune-studio/settings.json` (default `~/.config/...`). Unknown keys are
kept; a broken file is ignored with a notification rather than stopping the studio.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Settings:
    theme: str = "textual-dark"
    """Name of a Textual theme (Ctrl+T or the palette's "Theme" lists them)."""
    keymap: dict[str, str] = field(default_factory=dict)
    """Action id -> keys, overriding the registry in studio/bindings.py: {"review.approve": "y"}."""


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "finetune-studio"


def settings_path() -> Path:
    return config_dir() / "settings.json"


def load() -> tuple[Settings, str | None]:
    """The settings and, when the file could not be read, why (to show the person)."""
    path = settings_path()
    if not path.exists():
        return Settings(), None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        keymap = data.get("keymap") or {}
        if not isinstance(keymap, dict):
            raise ValueError("keymap: expected an object of action id -> keys")
        return Settings(theme=str(data.get("theme") or Settings.theme), keymap={str(k): str(v) for k, v in keymap.items()}), None
    except (OSError, ValueError) as exc:
        return Settings(), f"{path}: {exc}; using defaults. Fix or delete the file."


def save(settings: Settings) -> None:
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    existing: dict = {}
    try:
        existing = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except (OSError, ValueError):
        existing = {}
    existing.update(asdict(settings))
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(existing, indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)
