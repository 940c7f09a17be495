"""`studio runs` lists training runs (here, or on an SSH host with --host); `studio cancel` stops one."""
from __future__ import annotations

from ._command import Args, option, studio_command
from ._common import out, out_json, workspace_path
from ._remote import host_options


@studio_command("runs", "list training runs: state, step, loss, eval loss, base, method", json_flag=True)
@option("--host", metavar="HOST", help="list the runs on this SSH host instead (~/.ssh/config alias or user@host)")
@host_options
def command(args: Args) -> int:
    from training.runs import list_runs

    if args.host:
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
