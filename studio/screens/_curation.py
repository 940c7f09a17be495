"""Small pieces the screens share: run an engine function that writes as a job, open Review on a
filter, undo with a toast that says what was undone, and phrase engine errors for the app.

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


DERIVED_JOB = "languages and search"


def fill_derived(app: Any) -> None:
    """Fill the language and the search column of rows imported without them
    (`curation.store.fill_derived`) as a background job, one chunk of ids per writer-thread call so
    that edits and approvals go in between. A quiet worker looks first: the job (and its progress
    bar) starts only when rows lack them and no such job runs. Until a row has them, browse's
    search lowers that row's text itself (same matches, slower) and the row shows no language;
    Home's languages panel is refreshed when the job ends."""
    if app.engine is None or any(j.kind == DERIVED_JOB for j in app.jobs.values()):
        return

    def probe() -> None:
        from curation import store

        try:
            n, lo, hi = app.engine.write(lambda ws: store.derived_missing(ws.con)).result()
        except RuntimeError:  # the app closed its engine first: the next launch looks again
            return
        if n:
            app.call_from_thread(app.run_job, DERIVED_JOB, lambda job: fill(job, n, lo, hi), done)

    def fill(job: Any, n: int, lo: int, hi: int) -> int:
        from curation import store

        job.set_total(n)
        step = store.DERIVED_FILL_CHUNK
        for start in range(lo, hi + 1, step):
            job.check()
            end = min(start + step - 1, hi)
            job.advance(app.engine.write(lambda ws, a=start, b=end: store.fill_derived(ws.con, a, b)).result())
        return n

    def done(_n: Any) -> None:
        refresh = getattr(app.screen, "action_refresh_stats", None)
        if refresh is not None:
            refresh()

    app.run_worker(probe, thread=True, group="derived-probe", name="derived columns probe")


async def open_review(app: Any, flt: browse.Filter) -> None:
    """Switch to Review and show `flt` (after Review's own first filter, if it is new)."""
    await app.switch_mode("review")
    screen = app.screen
    if hasattr(screen, "apply_filter"):
        screen.call_after_refresh(screen.apply_filter, flt)


# -- undo ----------------------------------------------------------------------------------------
def undo_last(ws: Any) -> list[Any]:
    """Undo the last operation (writer thread) and return it as `curation.review.Operation`s (empty:
    nothing to undo). `undo.undo` returns ids; what they were is read first, in the same
    writer-thread call, as `studio undo` does, so nothing can come between."""
    from curation import undo

    pending = {o.id: o for o in undo.undoable(ws.con, 1)}
    return [pending[i] for i in undo.undo(ws, 1) if i in pending]


_STATUS_VERBS = {"approved": "approve", "rejected": "reject", "pending": "reset to pending"}
_KIND_NAMES = {"status": "status change", "edit": "edit", "import": "import", "dedup": "dedup run",
               "keeper": "keeper choice", "quality": "quality run"}


def describe_operation(op: Any) -> str:
    """`approve of 40 samples (operation 7)`: what an operation did, for a person."""
    kind = str(op.kind)
    if kind == "status":
        what = _STATUS_VERBS.get(str(op.details.get("status")), "status change")
    elif kind.startswith("augment:"):
        what = f"augment {kind.partition(':')[2]}"
    else:
        what = _KIND_NAMES.get(kind, kind)
    n = int(op.sample_count or 0)
    count = f" of {n:,} sample{'s' if n != 1 else ''}" if n else ""
    return f"{what}{count} (operation {op.id})"


def op_note(op_id: int | None) -> str:
    """The tail of a notice: which operation `u` undoes, or that nothing changed (a no-op is not
    recorded, so there is nothing to undo)."""
    return "nothing changed" if op_id is None else f"operation {op_id}; u undoes"


def undo_message(ops: list[Any]) -> str:
    """The toast after an undo: `undid approve of 40 samples (operation 7)`, or nothing to undo."""
    if not ops:
        return "nothing to undo"
    return "undid " + "; ".join(describe_operation(o) for o in ops)


# -- engine errors in the app's words ---------------------------------------------------------------
# The engine words its errors for the command line ("pass --skip-invalid"). In the app there is no
# flag to pass: each phrase names the field, box or key that does the same. tests/
# test_app_first_hour.py checks that every CLI phrase below still occurs in the engine's source, so a
# reworded error fails a test instead of reaching the app in CLI words.
def _key(screen: str) -> str:
    from ..bindings import screen_key

    return screen_key(screen)


APP_PHRASES: list[tuple[str, str]] = [
    # import (curation/importers/core.py)
    ("pass --skip-invalid", "tick 'skip invalid rows'"),
    ("Name the fields with --map ", "Name the fields in the 'fields' box: "),
    ("pass --format", "choose the format"),
    # augment (curation/augment/providers.py)
    ("pass --model NAME or set model in studio.yaml", "fill the 'model' field or set model in studio.yaml"),
    # export (curation/export.py)
    ("Pass --force to replace it", "Tick 'replace' (force) to replace it"),
    ("(studio approve ID..., or in the review screen) or pass --include approved+pending",
     f"(a on the Review screen, key {_key('review')}) or set include to approved+pending"),
    ("pass --include ", "set include to "),
    ("--include ", "include "),
    # quality (curation/quality.py): in the app the rules file is the workspace's rules.yaml
    ("Pass an existing file with --rules.", "Fix or delete the workspace's rules.yaml."),
    # train and eval (training/config.py, training/evaluate.py)
    ("pass --base MODEL", "fill the 'base' field"),
    ("or --base tiny for", "or type tiny there for"),
    ("export a split with --val", f"export a split with a val fraction (Export screen, key {_key('export')})"),
]


def app_message(error: Any) -> str:
    """An engine error's text with its command-line advice said as the app's fields and keys."""
    text = str(error)
    for cli, app in APP_PHRASES:
        text = text.replace(cli, app)
    return text
