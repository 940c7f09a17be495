"""`studio show ID [--json]`: one sample in full: the conversation, flags, cluster, versions, history."""
from __future__ import annotations

import textwrap

from ._command import Args, argument, studio_command


def _block(text: str | None) -> str:
    return textwrap.indent(text or "", "    ", lambda line: True)


def render(d) -> list[str]:
    """The lines `studio show` prints (raw; the caller passes them through safe_text.visible)."""
    src = d.source_file or "(no source file)"
    if d.source_row is not None:
        src += f":{d.source_row}"
    if d.source_id:
        src += f" (id {d.source_id})"
    lines = [f"sample {d.id}  {d.status}  version {d.version}  {d.kind}  lang {d.lang or '?'}", f"source: {src}"]
    if d.duplicate_of is not None:
        lines.append(f"duplicate of {d.duplicate_of} (leaves every split)")
    if d.parent_id is not None or d.operation not in (None, "import"):
        lines.append(f"lineage: {d.operation or ''} from {d.parent_id}" + (f" {d.lineage}" if d.lineage else ""))
    if d.tags:
        lines.append("tags: " + ", ".join(d.tags))
    if d.judge_score is not None:
        lines.append(f"judge score {d.judge_score:g}" + (f": {d.judge_reason}" if d.judge_reason else ""))
    lines.append("")
    if d.kind == "text":
        lines += ["── text ──", _block(d.text)]
    else:
        if d.system:
            lines += ["── system ──", _block(d.system)]
        for m in d.messages:
            lines += [f"── {m['role']} ──", _block(m["content"])]
    if d.flags:
        lines += ["", "flags:"]
        for f in d.flags:
            measure = ""
            if f.value is not None:
                measure = f" value {f.value:g}" + (f", threshold {f.threshold:g}" if f.threshold is not None else "")
            lines.append(f"  {f.rule_id}:{measure}" + (f"  {f.detail}" if f.detail else ""))
    if d.cluster:
        c = d.cluster
        lines += ["", f"cluster {c.id} ({c.method} on {c.fields}, keeper {c.keeper_id} chosen by {c.keeper_chosen_by}"
                  + (", resolved" if c.resolved else "") + "):"]
        for sid, sim in c.members:
            mark = "keeper" if sid == c.keeper_id else (f"similarity {sim:.2f}" if sim is not None else "")
            lines.append(f"  {'*' if sid == d.id else ' '} {sid}  {mark}")
    if d.versions:
        lines += ["", "earlier versions:"]
        for v in d.versions:
            first = next((m["content"] for m in v.messages if m["role"] == "user"), v.text or "")
            lines.append(f"  v{v.version}  (replaced by operation {v.op_id})  {' '.join(first.split())[:80]}")
    if d.history:
        lines += ["", "history:"]
        for h in d.history:
            change = ""
            if h["old_status"] != h["new_status"]:
                change = f" {h['old_status']} -> {h['new_status']}"
            if h["old_version"] != h["new_version"]:
                change += f" v{h['old_version']} -> v{h['new_version']}"
            lines.append(f"  op {h['op_id']} {h['kind']}{change}" + (f"  ({h['reason']})" if h["reason"] else "")
                         + (f"  [undone by {h['undone_by']}]" if h["undone_by"] else ""))
    return lines


@studio_command("show", "show one sample: conversation, flags, duplicate cluster, versions, history", json_flag=True,
                epilog="examples:\n  studio show 12\n  studio show 12 --json")
@argument("id", type=int, metavar="ID", help="sample id (as `studio stats`, the review list and exports show it)")
def command(args: Args) -> int:
    from curation import browse

    from ._common import open_ws, out, out_json

    with open_ws(args) as ws:
        d = browse.get_sample(ws.con, args.id)
    if args.json:
        out_json(d.as_dict())
        return 0
    for line in render(d):
        out(line)
    return 0
