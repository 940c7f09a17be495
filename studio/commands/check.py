"""`studio check [--repair | --salvage DEST] [--json]`: verify a workspace, fix what is safe, or copy
what can be read out of a damaged one (curation.check). Exit status 0 when clean (or repaired), 1
when problems remain (2 for a usage error or a workspace another process holds)."""
from __future__ import annotations

from pathlib import Path

import click

from ._command import Args, option, studio_command

_LABEL = {"ok": "ok", "problem": "PROBLEM", "fixed": "fixed", "note": "note"}


def _one_mode(args: Args) -> None:
    if args.repair and args.salvage is not None:
        raise click.UsageError("--repair and --salvage exclude each other: salvage only reads the damaged file")


@studio_command(
    "check", "verify the workspace: the DuckDB file and its WAL, every table, the schema, orphan rows, "
    "jobs whose process died, leftovers of killed exports", json_flag=True,
    epilog="examples: studio check | studio check --repair | studio check --salvage ../rescued-workspace",
    check=_one_mode)
@option("--repair", is_flag=True,
        help="fix what is safe: move an unreadable WAL aside (kept), delete orphan rows, mark dead jobs "
             "interrupted, remove dead temporary folders; never writes to a damaged database file")
@option("--salvage", type=click.Path(path_type=Path), metavar="DEST",
        help="copy every table that can be read (the damaged file is only read) into a new workspace at DEST")
def command(args: Args) -> int:
    from curation import check

    from ._common import out, out_json, workspace_path

    root = workspace_path(args)
    if args.salvage is not None:
        result = check.salvage(root, args.salvage)
        if args.json:
            out_json(result)
            return 0 if result["complete"] else 1
        for t in result["tables"]:
            rows = "?" if t["rows"] is None else f"{t['rows']:,}"
            line = f"{t['table']}: {t['copied']:,} of {rows} rows copied"
            if t["unreadable"]:
                line += f", {t['unreadable']:,} unreadable"
            if t["note"]:
                line += f" ({t['note']})"
            out(("ok       " if not t["unreadable"] and not t["note"] else "PROBLEM  ") + line)
        out(f"salvaged {root} into {result['dest']}, as of {result['source_as_of']}. splits/ and runs/ are plain "
            f"folders: copy them over yourself. Look at it with `studio check -w {result['dest']}`, then use it "
            f"with -w {result['dest']} or put it in place of {root}.")
        return 0 if result["complete"] else 1
    report = check.check_workspace(root, repair=args.repair)
    if args.json:
        out_json(report.as_dict())
        return 0 if report.clean else 1
    for f in report.findings:
        out(f"{_LABEL.get(f.status, f.status):<8} {f.check:<7} {f.message}")
    problems = sum(f.status == "problem" for f in report.findings)
    fixed = sum(f.status == "fixed" for f in report.findings)
    if problems:
        damaged = any(f.status == "problem" and f.check in ("open", "file", "tables") for f in report.findings)
        hint = (f" (`studio check --salvage NEW_DIR -w {root}` copies what can be read into a new workspace)" if damaged
                else "" if args.repair else " (`studio check --repair` fixes what is safe)")
        out(f"{problems} problem{'s' if problems != 1 else ''} remain{'s' if problems == 1 else ''}{hint}")
        return 1
    out(f"clean: repaired {fixed} thing{'s' if fixed != 1 else ''}" if fixed else "clean")
    return 0
