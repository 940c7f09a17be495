"""Named presets: partial YAML configs merged over training.config's defaults (`--preset NAME`)."""
from __future__ import annotations

from importlib import resources


def names() -> list[str]:
    """The presets in this folder, sorted (`studio train --help` and the Train screen list them)."""
    return sorted(p.name[:-5] for p in resources.files(__name__).iterdir() if p.name.endswith(".yaml"))
