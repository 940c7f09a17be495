"""`studio fetch RUN`: bring a remote run's results into its local mirror.

The rest of metrics.jsonl, status.json, train.log and the adapter (or model/ for full
fine-tuning), so chat, merge and serve work on this machine.
"""
from __future__ import annotations

from ._command import Args, argument, studio_command
from ._common import out
from ._remote import run_async, run_dir_of


@studio_command("fetch", "copy a remote run's adapter, metrics and status into the local mirror")
@argument("run", metavar="RUN", help="run id (under WORKSPACE/runs/) or run directory")
def command(args: Args) -> int:
    from training.remote import fetch_run, read_remote
    from training.rundir import has_status, read_status

    run_dir = run_dir_of(args, args.run)
    fetched = run_async(fetch_run(run_dir))
    state = str(read_status(run_dir).state) if has_status(run_dir) else "unknown"
    remote = read_remote(run_dir)
    out(f"fetched {', '.join(fetched)} from {remote.host.target} into {run_dir} (state {state})")
    if "adapter/" not in fetched and "model/" not in fetched:
        out("no adapter yet: the run has not saved one (it is written at the end)")
    return 0
