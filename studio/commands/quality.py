"""`studio quality`: mark samples with the quality rules they break (flags only mark).

--preview RULE=THRESHOLD says how many samples that threshold would flag, without changing
anything: from the values the last run stored, and for samples it did not measure (no run yet, or
added since), measured on the spot. A run that would change no flag or value records no operation."""
from __future__ import annotations

from ._command import Args, option, studio_command
from ._common import make_job, open_ws, out, out_json


def _parse_preview(text: str) -> tuple[str, float]:
    from curation.errors import StudioError

    rule, sep, value = text.partition("=")
    try:
        if not sep:
            raise ValueError
        return rule.strip(), float(value)
    except ValueError:
        raise StudioError(f"--preview {text!r}: expected RULE=THRESHOLD, e.g. --preview answer_too_short=5") from None


@studio_command("quality", "flag samples that break quality rules", json_flag=True,
                epilog="examples:\n"
                       "  studio quality\n"
                       "  studio quality --preview answer_too_short=5 --preview too_long=2048\n"
                       "  studio quality --json --quiet")
@option("--rules", metavar="FILE",
        help="rules YAML (default: WORKSPACE/rules.yaml when it exists, else the built-in "
             "curation/rules/default.yaml)")
@option("--preview", multiple=True, metavar="RULE=THRESHOLD",
        help="count what a threshold would flag, without changing anything (repeatable)")
@option("--quiet", "-q", is_flag=True, help="no progress on stderr")
def command(args: Args) -> int:
    from curation import quality
    from curation.errors import Cancelled

    with open_ws(args) as ws:
        if args.preview:
            rows = []
            for item in args.preview:
                rule, thr = _parse_preview(item)
                rows.append({"rule_id": rule, "threshold": thr, "would_flag": quality.preview(ws.con, rule, thr)})
            if args.json:
                out_json(rows)
            else:
                for r in rows:
                    out(f"{r['rule_id']} at {r['threshold']:g}: {r['would_flag']:,} samples would be flagged")
            return 0
        rules_file = args.rules or quality.workspace_rules_path(ws)
        rules = quality.load_rules(rules_file)  # errors before any work
        job, progress = make_job("quality", quiet=args.quiet or args.json)
        try:
            report = quality.run_quality(ws, rules=rules, job=job)
        except KeyboardInterrupt:
            raise Cancelled("quality check cancelled; the workspace is unchanged") from None
        finally:
            progress.finish()
        report.rules_file = str(rules_file)
        if args.json:
            out_json(report.as_dict())
            return 0
        if report.op_id is None:
            out(f"checked {report.samples:,} samples: {report.flagged_samples:,} flagged ({report.flags:,} flags) "
                f"in {report.seconds:.1f}s; nothing to change: the flags were already these (no operation recorded)")
        else:
            out(f"checked {report.samples:,} samples: {report.flagged_samples:,} flagged ({report.flags:,} flags) "
                f"in {report.seconds:.1f}s (operation {report.op_id}; `studio undo` reverts it)")
        for rid, n in sorted(report.by_rule.items(), key=lambda kv: -kv[1]):
            out(f"  {rid:<28} {n:,}")
    return 0
