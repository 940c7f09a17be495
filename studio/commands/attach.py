"""`studio attach RUN`: follow a remote run again, resuming the local mirror from its size.

The run kept going on the GPU box while nobody watched; attach copies the metrics lines written
since (no gap, no duplicate), prints them, and follows until the run ends. Ctrl-C detaches again.
"""
from __future__ import annotations

from ._command import Args, argument, option, studio_command
from ._remote import follow_in_terminal, run_dir_of


@studio_command("attach", "follow a run started with --host: mirror and print its metrics until it ends")
@argument("run", metavar="RUN", help="run id (under WORKSPACE/runs/) or run directory")
@option("--quiet", "-q", is_flag=True, help="mirror without printing the metrics lines")
def command(args: Args) -> int:
    return follow_in_terminal(run_dir_of(args, args.run), quiet=args.quiet)
