"""`studio attach RUN`: follow a remote run again, resuming the local mirror from its size.

The run kept going on the GPU box while nobody watched; attach copies the metrics lines written
since (no gap, no duplicate), prints them, and follows until the run ends. Ctrl-C detaches again.
"""
from __future__ import annotations

import argparse

from ._common import add_command
from ._remote import follow_in_terminal, run_dir_of


def register(sub) -> None:
    p = add_command(sub, "attach", "follow a run started with --host: mirror and print its metrics until it ends")
    p.add_argument("run", metavar="RUN", help="run id (under WORKSPACE/runs/) or run directory")
    p.add_argument("--quiet", "-q", action="store_true", help="mirror without printing the metrics lines")
    p.set_defaults(func=cmd_attach)


def cmd_attach(args: argparse.Namespace) -> int:
    return follow_in_terminal(run_dir_of(args, args.run), quiet=args.quiet)
