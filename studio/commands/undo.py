"""`studio undo [N]`: revert the last N operations (status changes, edits, imports, ...)."""
from __future__ import annotations

from ._command import Args, argument, studio_command


@studio_command("undo", "revert the last N operations not yet undone (default 1)", json_flag=True,
                epilog="examples:\n  studio undo\n  studio undo 3 --json\n"
                       "\n`studio history` lists the operations, newest first; undo reverts them in that order.")
@argument("n", required=False, type=int, default=1, metavar="N",
          help="how many operations to revert, newest first (default 1; `studio history` lists them)")
def command(args: Args) -> int:
    from curation import undo

    from ._common import open_ws, out, out_json

    with open_ws(args) as ws:
        pending = {o.id: o for o in undo.undoable(ws.con, args.n)}
        undone = undo.undo(ws, args.n)
    if args.json:
        out_json({"undone": [pending[i].as_dict() for i in undone]})
    elif not undone:
        out("nothing to undo.")
    else:
        for i in undone:
            o = pending[i]
            out(f"undid operation {o.id}: {o.kind}, {o.sample_count:,} sample{'s' if o.sample_count != 1 else ''}"
                + (f" ({o.reason})" if o.reason else ""))
    return 0
