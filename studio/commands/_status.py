"""What approve and reject share: select samples, set their status as one operation, report it."""
from __future__ import annotations

import argparse

from ._select import add_filter_options


def add_status_command(sub, name: str, status: str, add_command) -> None:
    p = add_command(
        sub, name, f"mark samples {status} (one operation; `studio undo` reverts it)", json_flag=True,
        epilog=f"examples: studio {name} 12 15 20-30 --reason 'checked'   studio {name} --status pending --flag too_short",
    )
    p.add_argument("ids", nargs="*", metavar="ID", help="sample ids or ranges like 10-20")
    p.add_argument("--reason", help="why (kept in the audit log)")
    add_filter_options(p)
    p.set_defaults(func=lambda args: run(args, status))


def run(args: argparse.Namespace, status: str) -> int:
    from curation import review

    from ._common import open_ws, out, out_json
    from ._select import selected_ids

    with open_ws(args) as ws:
        ids = selected_ids(ws.con, args)
        op_id = review.set_status(ws, ids, status, reason=args.reason)
        changed = ws.con.execute("SELECT sample_count FROM operations WHERE id = ?", [op_id]).fetchone()[0]
    if getattr(args, "json", False):
        out_json({"operation": op_id, "status": status, "selected": len(ids), "changed": changed})
    else:
        same = len(ids) - changed
        out(f"{status} {changed:,} sample{'s' if changed != 1 else ''} (operation {op_id})"
            + (f"; {same:,} already {status}" if same else "") + ". `studio undo` reverts it.")
    return 0
