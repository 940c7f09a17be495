"""Small pieces the curation screens (Duplicates, Quality, Export, Import) share: run an engine
function that writes as a job, and open Review on a filter.

Engine functions that write (find_duplicates, run_quality, export_split, import_paths) use `ws.con`
and `ws.transaction()`, so they must run on the engine's writer thread (studio/engine.py). A job
worker (`app.run_job`) submits them there and waits, so the progress bar and Escape-to-cancel work
while the UI stays live. A StudioError comes back as the result (not a notification) so the
screen can show it where the user is looking (an import's bad rows, an existing split).
"""
from __future__ import annotations

from typing import Any, Callable

from curation import browse
from curation.errors import StudioError


def run_engine_job(app: Any, kind: str, fn: Callable[..., Any], *args: Any,
                   on_done: Callable[[Any], None], takes_job: bool = True, **kw: Any) -> None:
    """Run `fn(ws, *args, job=job, **kw)` on the writer thread as an app job; `on_done(result)`
    runs on the UI thread with the result, or with the StudioError the function raised."""

    def body(job: Any) -> Any:
        extra = {"job": job} if takes_job else {}
        try:
            return app.engine.write(fn, *args, **kw, **extra).result()
        except StudioError as exc:
            return exc

    app.run_job(kind, body, on_done)


async def open_review(app: Any, flt: browse.Filter) -> None:
    """Switch to Review and show `flt` (after Review's own first filter, if it is new)."""
    await app.switch_mode("review")
    screen = app.screen
    if hasattr(screen, "apply_filter"):
        screen.call_after_refresh(screen.apply_filter, flt)
