"""`studio history [-n N]`: the audit log, newest first."""
from __future__ import annotations

import json

from ._command import Args, option, studio_command


@studio_command("history", "list the latest operations (what changed, when, why)", json_flag=True)
@option("-n", "--limit", type=int, default=30, help="how many (default 30)")
def command(args: Args) -> int:
    from curation import review

    from ._common import open_ws, out, out_json

    with open_ws(args) as ws:
        ops = review.history(ws.con, args.limit)
    if args.json:
        out_json([o.as_dict() for o in ops])
        return 0
    if not ops:
        out("no operations yet.")
    for o in ops:
        what = {k: v for k, v in o.details.items() if k not in ("undo", "undo_handler")}
        line = f"{o.id:>6}  {str(o.at)[:19]}  {o.kind:<10} {o.sample_count:>8,} samples"
        if o.reason:
            line += f"  reason: {o.reason}"
        if what:
            line += f"  {json.dumps(what, ensure_ascii=False)[:120]}"
        if o.undone_by:
            line += f"  [undone by {o.undone_by}]"
        out(line)
    return 0
