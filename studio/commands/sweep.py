"""`studio sweep SPLIT --r 8,16,32 --lr 2e-4,1e-4,5e-5 --epochs 1,2,3`: a grid of runs, ranked.

Each point is an ordinary run (SWEEP-r16-lr2e-4-e3) trained one after another in this process;
the table at the end orders them by final validation loss, best marked with *. The rest of the
config comes from --preset / --config / --set as in `studio train`. Ctrl-C stops the sweep; the
runs already finished stay (and `studio runs` lists them).
"""
from __future__ import annotations

import shlex
from datetime import datetime

from curation.errors import StudioError

from ._command import Args, CommaList, argument, option, studio_command
from ._common import out, out_json, workspace_path
from .train import config_keys_section, config_options


@studio_command("sweep", "train a grid of runs over rank / learning rate / epochs and rank by eval loss",
                json_flag=True, epilog="example: studio sweep v1 --r 8,16,32 --lr 2e-4,1e-4,5e-5 --epochs 1,2,3",
                help_sections=config_keys_section,
                # what `train.build_config` reads that a sweep does not set
                defaults={"plan": False, "gpu_mem": None, "oom_retry": False, "host": None})
@argument("split", metavar="SPLIT", help="split name in WORKSPACE/splits, or a path (needs validation rows)")
@option("--r", "r", type=CommaList(int), metavar="R,...", help="LoRA ranks (alpha follows 2*r)")
@option("--lr", "lr", type=CommaList(float), metavar="LR,...", help="learning rates")
@option("--epochs", type=CommaList(float), metavar="E,...", help="epochs")
@option("--name", metavar="NAME", help="sweep name, the prefix of its run ids (default: sweep-TIME)")
@config_options  # --config, --preset, --set, --base, --method: for every run of the grid
@option("--replay", metavar="FILE", help="general-data JSONL mixed into every run against forgetting")
@option("--replay-fraction", type=float, default=0.1, metavar="F",
        help="with --replay: general rows per training row (default 0.1)")
@option("--dry-run", is_flag=True, help="list the runs the grid makes; train nothing")
def command(args: Args) -> int:
    from training.quiet import quiet_libraries

    quiet_libraries(verbose=args.verbose)  # before anything imports transformers

    from training.sweep import format_table, plan_sweep, run_sweep

    from .train import build_config, resolve_split

    split = resolve_split(args)
    cfg = build_config(args, split)
    name = args.name or f"sweep-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    points = plan_sweep(name, r=args.r, lr=args.lr, epochs=args.epochs)
    if cfg.method == "full" and args.r:
        raise StudioError("--r sets the LoRA rank, but --method full trains no adapter; drop --r or use lora/qlora")
    if args.dry_run:
        if args.json:
            out_json([{"run": p.name, "changes": p.changes} for p in points])
        else:
            for p in points:
                out(f"{p.name}  " + " ".join(f"{k}={v}" for k, v in p.changes.items()))
        return 0
    ws = f" -w {shlex.quote(str(args.workspace))}" if args.workspace else ""
    reproduce = f"studio{ws} train {shlex.quote(args.split)} --config {{config}}"

    def progress(point, run_dir, status) -> None:
        if not args.json:
            ev = status.eval_loss
            out(f"  {run_dir.name}: {status.state}" + (f", eval_loss {ev:.4f}" if isinstance(ev, float) else ""))

    if not args.json:
        out(f"sweep {name}: {len(points)} runs, one after another")
    import contextlib
    import sys

    # The trainer prints its own progress on stdout; with --json stdout must hold only the JSON.
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        rows = run_sweep(workspace_path(args) / "runs", cfg, points, sweep=name, reproduce=reproduce,
                         on_run=progress, replay=(args.replay, args.replay_fraction) if args.replay else None)
    if args.json:
        out_json({"sweep": name, "ranking": rows})
    else:
        out(format_table(rows))
    return 0 if rows and rows[0]["best"] else 1
