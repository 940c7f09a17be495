"""`studio keeper CLUSTER SAMPLE`: choose which member of a duplicate cluster survives.

The choice is a reviewer's: later dedup runs keep it. One undoable operation."""
from __future__ import annotations

from ._command import Args, argument, option, studio_command
from ._common import open_ws, out


@studio_command("keeper", "choose the keeper of a duplicate cluster")
@argument("cluster", type=int, help="cluster id (from `studio dedup --json`)")
@argument("sample", type=int, help="sample id of the member to keep")
@option("--reason", help="why (kept in the history)")
def command(args: Args) -> int:
    from curation import browse, dedup

    with open_ws(args) as ws:
        op_id = dedup.set_keeper(ws, args.cluster, args.sample, reason=args.reason)
        size = browse.cluster_size(ws.con, args.cluster)
    if op_id is None:
        out(f"cluster {args.cluster}: sample {args.sample} already is its keeper, chosen by a reviewer; nothing changed")
        return 0
    out(f"cluster {args.cluster}: keeping sample {args.sample}; the other {size - 1} are duplicates of it "
        f"(operation {op_id}; `studio undo` reverts it)")
    return 0
