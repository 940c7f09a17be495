"""What approve and reject share: select samples, set their status as one operation, report it."""
from __future__ import annotations

import argparse

from ._select import add_filter_options

# The second example of each command's help; the first names ids. Every example must select
# samples in the demo workspace (tests/test_cli_help_and_codes.py runs them).
EXAMPLE = {
    "approve": "studio approve --status pending --source sharegpt_chat.jsonl --duplicates exclude",
    "reject": "studio reject --status pending --flag answer_too_short --reason 'too short to train on'",
}


def add_status_command(sub, name: str, status: str, add_command) -> None:
    p = add_command(
        sub, name, f"mark samples {status} (one operation; `studio undo` reverts it)", json_flag=True,
        epilog=f"examples:\n  studio {name} 12 15 20-30 --reason 'checked'\n  {EXAMPLE[name]}",
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
        changed = 0 if op_id is None else review.get_operation(ws.con, op_id).sample_count
    if getattr(args, "json", False):
        out_json({"operation": op_id, "status": status, "selected": len(ids), "changed": changed})
    elif op_id is None:
        # Nothing changed, so nothing was recorded: `studio undo` still reverts the last real change.
        out(f"nothing to change: {len(ids):,} sample{'s were' if len(ids) != 1 else ' was'} already {status}.")
    else:
        same = len(ids) - changed
        out(f"{status} {changed:,} sample{'s' if changed != 1 else ''} (operation {op_id})"
            + (f"; {same:,} already {status}" if same else "") + ". `studio undo` reverts it.")
    return 0
