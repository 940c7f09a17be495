"""`studio runs` lists training runs; `studio cancel RUN` stops one (it keeps a resumable checkpoint)."""
from __future__ import annotations

import argparse

from ._common import add_command, out, out_json, workspace_path


def register(sub) -> None:
    p = add_command(sub, "runs", "list training runs: state, step, loss, eval loss, base, method", json_flag=True)
    p.add_argument("--host", metavar="HOST", help="list the runs on this SSH host instead (~/.ssh/config alias or user@host)")
    from ._remote import add_host_options

    add_host_options(p)
    p.set_defaults(func=cmd_runs)
    c = add_command(sub, "cancel", "stop a running training run (resume later with studio train --resume RUN)",
                    json_flag=True)
    c.add_argument("run", metavar="RUN", help="run id (or a unique prefix, or a path)")
    c.set_defaults(func=cmd_cancel)


def cmd_runs(args: argparse.Namespace) -> int:
    from training.runs import list_runs

    if getattr(args, "host", None):
        from ._remote import print_remote_runs

        return print_remote_runs(args)
    rows = list_runs(workspace_path(args) / "runs")
    if args.json:
        out_json([r.to_json() for r in rows])
        return 0
    if not rows:
        out("no runs yet; start one with: studio train SPLIT")
        return 0
    out(f"{'id':<40} {'state':<10} {'step':>11} {'loss':>8} {'eval':>8}  {'method':<6} {'base':<28} started")
    for r in rows:
        step = f"{r.step or 0}/{r.max_steps or '?'}"
        loss = f"{r.loss:.4f}" if isinstance(r.loss, (int, float)) else "-"
        ev = f"{r.eval_loss:.4f}" if isinstance(r.eval_loss, (int, float)) else "-"
        base = (r.base or "?") + (" (untrained)" if r.untrained else "")
        out(f"{r.id:<40} {r.state:<10} {step:>11} {loss:>8} {ev:>8}  {r.method or '?':<6} {base:<28} "
            f"{r.started_at or '-'}")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    from training import runs

    from ._remote import cancel_if_remote

    run_dir = runs.find_run(workspace_path(args) / "runs", args.run)
    st = cancel_if_remote(args, run_dir) or runs.cancel(run_dir, wait_s=30)
    if args.json:
        out_json({"run": run_dir.name, **st.to_json()})
    else:
        out(f"{run_dir.name}: {st.state} at step {st.step}")
    return 0
