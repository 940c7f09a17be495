"""What approve and reject share: select samples, set their status as one operation, report it."""
from __future__ import annotations

import click

from ._command import Args, argument, option, studio_command
from ._select import filter_options

# The second example of each command's help; the first names ids. Every example must select
# samples in the demo workspace (tests/test_cli_help_and_codes.py runs them).
EXAMPLE = {
    "approve": "studio approve --status pending --source sharegpt_chat.jsonl --duplicates exclude",
    "reject": "studio reject --status pending --flag answer_too_short --reason 'too short to train on'",
}


def status_command(name: str, status: str) -> click.Command:
    @studio_command(name, f"mark samples {status} (one operation; `studio undo` reverts it)", json_flag=True,
             epilog=f"examples:\n  studio {name} 12 15 20-30 --reason 'checked'\n  {EXAMPLE[name]}")
    @argument("ids", nargs=-1, metavar="ID", help="sample ids or ranges like 10-20")
    @option("--reason", help="why (kept in the audit log)")
    @filter_options
    def handler(args: Args) -> int:
        return run(args, status)

    return handler


def run(args: Args, status: str) -> int:
    from curation import review

    from ._common import open_ws, out, out_json
    from ._select import selected_ids

    with open_ws(args) as ws:
        ids = selected_ids(ws.con, args)
        op_id = review.set_status(ws, ids, status, reason=args.reason)
        changed = 0 if op_id is None else review.get_operation(ws.con, op_id).sample_count
    if args.json:
        out_json({"operation": op_id, "status": status, "selected": len(ids), "changed": changed})
    elif op_id is None:
        # Nothing changed, so nothing was recorded: `studio undo` still reverts the last real change.
        out(f"nothing to change: {len(ids):,} sample{'s were' if len(ids) != 1 else ' was'} already {status}.")
    else:
        same = len(ids) - changed
        out(f"{status} {changed:,} sample{'s' if changed != 1 else ''} (operation {op_id})"
            + (f"; {same:,} already {status}" if same else "") + ". `studio undo` reverts it.")
    return 0
