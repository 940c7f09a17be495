"""`studio eval MODEL...`: answer an eval set with the base, runs' adapters and merged models, score
every answer, and print one table (training/evaluate.py does the work).

MODEL is `base` (the runs' base with adapters off), a run id (its adapter), `merged:RUN`, or any
base that `base:` accepts (e.g. smollm2-135m-instruct). The eval set (`--on`) defaults to the first
run's split, its validation part; it may be another split or any alpaca / messages / sharegpt file.
Results go to the first run's `evals/EVAL_ID/` (a run named as a model or as `merged:RUN`;
docs/contracts.md), else WORKSPACE/evals/EVAL_ID/.
Ctrl-C stops after the batch in flight and writes what finished.
"""
from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

import click

from curation.errors import StudioError

from ._command import Args, argument, option, studio_command
from ._common import out, out_json, workspace_path


def _judge(args: Args, job):
    """(workspace, batch scorer): the judge reuses augmentation's client, request cache and cost
    accounting, which live in the workspace (so it is open, and locked, while the eval runs).
    `job` (a curation Job) lets Ctrl-C stop the judge's requests too."""
    from curation.augment.eval_judge import judge_scorer

    from ._common import open_ws

    ws = open_ws(args)
    try:
        return ws, judge_scorer(ws, provider=args.provider, model=args.judge_model, job=job)
    except BaseException:
        ws.close()
        raise


@studio_command("eval", "score the base, runs' adapters and merged models on an eval set, side by side", json_flag=True,
                epilog="examples: studio eval base RUN | studio eval base RUN1 RUN2 --on v2 --scorer exact | "
                       "studio eval RUN merged:RUN --on heldout.jsonl --scorer numeric | "
                       "studio eval base RUN --scorer judge --provider openai")
@argument("models", nargs=-1, required=True, metavar="MODEL", help="base, a run id, merged:RUN, or a base model name")
@option("--on", metavar="SPLIT|FILE",
        help="eval set: a split name or path, or a data file "
             "(default: the first run's split)")
@option("--part", type=click.Choice(("val", "train", "all")), default="val", help="which part of a split (default val)")
@option("--scorer", type=click.Choice(("exact", "contains", "regex", "numeric", "json", "judge")), default="contains",
        help="how an answer is scored against the reference (default contains)")
@option("--limit", type=int, metavar="N", help="first N items only")
@option("--max-new-tokens", type=int, default=128, metavar="N", help="answer length cap (default 128)")
@option("--batch-size", type=int, default=8, metavar="N", help="prompts generated together (default 8)")
@option("--provider", metavar="NAME", help="with --scorer judge: the provider (studio providers)")
@option("--judge-model", metavar="MODEL", help="with --scorer judge: override the provider's model")
@option("--name", metavar="EVAL_ID", help="eval id (default eval-DATE-TIME)")
@option("--device", metavar="DEV", help="cpu or cuda (default: cuda when there is one)")
def command(args: Args) -> int:
    from training.quiet import quiet_libraries

    quiet_libraries(verbose=args.verbose)  # before anything imports transformers

    from training import evaluate

    for name, value in (("--limit", args.limit), ("--max-new-tokens", args.max_new_tokens),
                        ("--batch-size", args.batch_size)):
        if value is not None and value <= 0:
            raise StudioError(f"{name} must be a positive number, got {value}")
    runs_dir = workspace_path(args) / "runs"
    specs = evaluate.resolve_models(args.models, runs_dir)
    source = evaluate.resolve_eval_set(args.on, workspace_path(args) / "splits", specs)
    items = evaluate.load_items(source, part=args.part, limit=args.limit)
    eval_id = args.name or time.strftime("eval-%Y%m%d-%H%M%S")
    # a merged model's run is its folder's parent (RUN/merged)
    first_run = next((Path(s.path) if s.kind == "adapter" else Path(s.path).parent
                      for s in specs if s.kind in ("adapter", "merged")), None)
    out_dir = (first_run / evaluate.EVALS_DIR / eval_id) if first_run else workspace_path(args) / "evals" / eval_id
    if out_dir.exists():
        raise StudioError(f"{out_dir} already exists; pick another --name")

    from curation.jobs import Job

    extra = {}
    ws = None
    judge_job = Job(kind="eval:judge")
    if args.scorer == "judge":
        ws, extra["judge"] = _judge(args, judge_job)
    cancel = threading.Event()

    def on_sigint(signum, frame):
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        judge_job.cancel()
        print("\nstudio eval: stopping after this batch (Ctrl-C again to quit now)", file=sys.stderr)

    def progress(done: int, total: int, model: str) -> None:
        if not args.json:
            print(f"eval: {done}/{total} answers ({model})", file=sys.stderr)

    old = signal.signal(signal.SIGINT, on_sigint) if threading.current_thread() is threading.main_thread() else None
    try:
        print(f"studio eval: {len(items)} items from {source} ({args.part}), models: "
              f"{', '.join(s.name for s in specs)}", file=sys.stderr)
        result = evaluate.run_eval(
            source, specs, scorer=args.scorer, part=args.part, max_new_tokens=args.max_new_tokens,
            batch_size=args.batch_size, device=args.device, out_dir=out_dir, eval_id=eval_id, extra_scorers=extra,
            progress=progress, cancel=cancel, items=items)
    finally:
        if old is not None:
            signal.signal(signal.SIGINT, old)
        if ws is not None:
            ws.close()
    if args.json:
        out_json({**result.summary(), "path": str(out_dir)})
    else:
        out(evaluate.format_table(result))
        out(f"per item: {out_dir / 'items.jsonl'}")
        adapters = [s.name for s in specs if s.kind == "adapter"]
        if adapters and any(s.kind == "base" for s in specs):
            rows = result.items
            worse = len(evaluate.disagreements(rows, "base", adapters[0]))
            better = len(evaluate.disagreements(rows, adapters[0], "base"))
            out(f"{adapters[0]} vs base: right where the base was wrong on {better}, wrong where the base was right "
                f"on {worse}; `studio why {adapters[0]} ITEM` shows the training rows nearest an answer")
    return 1 if result.cancelled else 0
