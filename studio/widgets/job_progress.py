"""JobProgress: a bar per job the app is running (`StudioApp.run_job`), hidden when none runs.

It polls `app.jobs` (Job objects a worker thread advances) a few times a second instead of taking
messages from the worker: the worker never touches a widget, and a fast job cannot flood the queue.
"""
from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from curation.safe_text import visible


class JobProgress(Static):
    DEFAULT_CSS = """
    JobProgress { height: auto; max-height: 4; display: none; background: $boost; padding: 0 1; }
    JobProgress.-busy { display: block; }
    """

    def on_mount(self) -> None:
        self.set_interval(0.3, self._poll)

    def _poll(self) -> None:
        jobs = list(getattr(self.app, "jobs", {}).values())
        self.set_class(bool(jobs), "-busy")
        if not jobs:
            return
        text = Text()
        for i, job in enumerate(jobs):
            if i:
                text.append("\n")
            frac = job.fraction
            width = 20
            filled = int(width * (frac or 0))
            text.append(f"{job.kind:<10} ", style="bold")
            text.append("█" * filled + "░" * (width - filled) if frac is not None else "working…")
            done = f" {job.done:,}/{job.total:,}" if job.total else f" {job.done:,}"
            text.append(done + f"  {job.elapsed:.0f}s  ")
            text.append(visible(job.message, single_line=True)[:60], style="dim")
        self.update(text)
