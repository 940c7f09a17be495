"""`studio cancel RUN`: stop a training run (it keeps a resumable checkpoint; a run started with
--host is stopped on its box)."""
from __future__ import annotations

from ._command import Args, argument, studio_command
from ._common import out, out_json, workspace_path


@studio_command("cancel", "stop a running training run (resume later with studio train --resume RUN)", json_flag=True)
@argument("run", metavar="RUN", help="run id (or a unique prefix, or a path)")
def command(args: Args) -> int:
    from training import runs

    from ._remote import cancel_if_remote

    run_dir = runs.find_run(workspace_path(args) / "runs", args.run)
    st = cancel_if_remote(args, run_dir) or runs.cancel(run_dir, wait_s=30)
    if args.json:
        out_json({"run": run_dir.name, **st.to_json()})
    else:
        out(f"{run_dir.name}: {st.state} at step {st.step}")
    return 0
