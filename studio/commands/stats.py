"""`studio stats [--json]`: what the workspace holds, by status, language, source, flags, clusters."""
from __future__ import annotations

from ._command import Args, studio_command


@studio_command("stats", "summarise the workspace: samples by status, language, source; flags; duplicates; splits",
                json_flag=True)
def command(args: Args) -> int:
    from curation import browse, export

    from ._common import fill_languages, open_ws, out, out_json

    with open_ws(args) as ws:
        fill_languages(ws)  # of rows a fast import left without one
        st = browse.stats(ws.con)
        st["splits"] = export.list_splits(ws)
        st["workspace"] = str(ws.root)
    if args.json:
        out_json(st)
        return 0
    out(f"workspace {st['workspace']}: {st['total']:,} samples"
        + (f" (ids {st['id_range'][0]}-{st['id_range'][1]})" if st["total"] else ""))
    if not st["total"]:
        out("import data with `studio import FILE`.")
        return 0
    out("  " + ", ".join(f"{k} {v:,}" for k, v in st["by_status"].items()))
    out("  language: " + ", ".join(f"{k or '?'} {v:,}" for k, v in st["by_lang"].items())
        + (f", not yet detected {st['lang_undetected']:,}" if st.get("lang_undetected") else ""))
    if set(st["by_kind"]) != {"chat"}:
        out("  kind: " + ", ".join(f"{k} {v:,}" for k, v in st["by_kind"].items()))
    out("sources:")
    for src, n in list(st["by_source"].items())[:20]:
        out(f"  {n:>10,}  {src or '(none)'}")
    if len(st["by_source"]) > 20:
        out(f"  ... and {len(st['by_source']) - 20} more")
    c = st["clusters"]
    out(f"duplicates: {c['count']:,} clusters ({c['unresolved']:,} unresolved), {c['duplicates_marked']:,} samples marked duplicate")
    if st["flags"]:
        out(f"quality flags ({st['flagged_samples']:,} samples flagged):")
        for rule, f in st["flags"].items():
            out(f"  {f['samples']:>10,}  {rule}  ({f['pending']:,} pending)")
    if st["judged"]:
        out(f"judged: {st['judged']:,}")
    ex = st["exportable"]
    out(f"exportable: {ex['approved']:,} approved, {ex['approved+pending']:,} with pending")
    for s in st["splits"]:
        out(f"split {s['name']}: {s['format']}, train {s['counts']['train']:,}, val {s['counts']['val']:,}")
    out(f"operations: {st['operations']['count']:,} (last {st['operations']['last_id']})")
    return 0
