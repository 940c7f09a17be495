"""`studio why RUN ITEM`: why did the fine-tune answer that? The eval item, the model's answer, and
the training rows most like it with their curation history (curation/why.py).

An eval (`studio eval`, training/evaluate.py) leaves RUN/evals/EVAL_ID/items.jsonl; this command
reads one item of it, finds the k nearest rows of the split the run trained on (the run's
config.yaml data.split) by the dedup engine's shingles and MinHash, and shows where each row came
from: source file and line, status, quality flags, duplicate cluster, edits and augmentation. The
workspace is opened only for that last step and closed right after (DuckDB locks it exclusively).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from curation.errors import NotFound, StudioError

from ._command import Args, argument, option, studio_command
from ._common import out, out_json, workspace_path

TEXT_WIDTH = 240  # characters of a prompt, answer or training row shown (all of it with --json)


def _pick_eval(run_dir: Path, eval_id: str | None) -> dict[str, Any]:
    from training.evaluate import list_evals

    evals = list_evals(run_dir)
    if not evals:
        raise StudioError(f"run {run_dir.name} has no evals; run studio eval {run_dir.name} first.")
    if eval_id is None:
        return evals[0]
    for e in evals:
        if eval_id in (e.get("eval_id"), Path(e["path"]).name):
            return e
    names = ", ".join(Path(e["path"]).name for e in evals[:5])
    raise NotFound(f"run {run_dir.name} has no eval {eval_id!r}; its evals: {names}.")


def _pick_item(items: list[dict[str, Any]], ref: str, eval_path: Path) -> dict[str, Any]:
    wanted = [ref] + ([f"s{ref}"] if ref.isdigit() else [])
    for item in items:
        if item.get("id") in wanted:
            return item
    ids = ", ".join(str(i.get("id")) for i in items[:5]) + (", ..." if len(items) > 5 else "")
    raise NotFound(f"no item {ref!r} in eval {eval_path.name} ({len(items)} items: {ids}); "
                   f"give an id from {eval_path / 'items.jsonl'}.")


def _pick_model(item: dict[str, Any], summary: dict[str, Any], run_id: str, wanted: str | None) -> str:
    answers = item.get("answers") or {}
    if wanted is not None:
        if wanted not in answers:
            raise NotFound(f"model {wanted!r} did not answer item {item.get('id')}; the eval's models: "
                           f"{', '.join(answers) or 'none'}.")
        return wanted
    names = [m.get("name") for m in summary.get("models") or []] + list(answers)
    if run_id in answers:
        return run_id
    for name in names:
        if name in answers:
            return name
    raise StudioError(f"item {item.get('id')} has no answers; run studio eval {run_id} again.")


def _split_dir(run_dir: Path) -> Path:
    from training.config import load_run_config

    split = load_run_config(run_dir).data.split
    if not split:
        raise StudioError(f"run {run_dir.name} names no split (config.yaml data.split); nothing to compare with.")
    p = Path(split)
    if not p.exists():
        raise NotFound(f"split {split} (data.split of run {run_dir.name}) is missing; export it again with "
                       f"studio export {p.name} (same settings), then run studio why again.")
    return p


def explain(args: Args) -> dict[str, Any]:
    """Everything `studio why` shows, as one dict (the --json output)."""
    from curation.why import item_query, nearest_training_rows
    from training.evaluate import read_items
    from training.runs import find_run

    from ._common import open_ws

    if args.k < 1:
        raise StudioError("-k must be at least 1.")
    root = workspace_path(args)
    run_dir = find_run(root / "runs", args.run)
    ev = _pick_eval(run_dir, args.eval_id)
    eval_path = Path(ev["path"])
    item = _pick_item(read_items(eval_path), args.item, eval_path)
    model = _pick_model(item, ev, run_dir.name, args.model)
    split = _split_dir(run_dir)
    query = item_query(item, model)
    from curation.workspace import DB_NAME

    ws = open_ws(args) if (root / DB_NAME).is_file() else None  # no database: rows without history
    try:
        rows = nearest_training_rows(ws, split, query, k=args.k)
    finally:
        if ws is not None:
            ws.close()
    own = (item.get("source") or {}).get("sample_id")
    for r in rows:
        r["is_item"] = own is not None and r["sample_id"] == own
    msgs = item.get("messages") or []
    prompt = next((m.get("content") or "" for m in reversed(msgs) if m.get("role") == "user"), "")
    return {"run": run_dir.name, "eval": eval_path.name, "scorer": ev.get("scorer"), "item": item.get("id"),
            "model": model, "prompt": prompt, "reference": item.get("reference"),
            "answer": (item.get("answers") or {}).get(model), "source": item.get("source") or {},
            "split": str(split), "workspace": str(root) if ws is not None else None, "nearest": rows}


def _short(text: str | None, width: int = TEXT_WIDTH) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= width else flat[:width - 1] + "…"


def _num(v: Any) -> str:
    return "?" if v is None else f"{v:g}"


def _history_lines(h: dict[str, Any]) -> list[str]:
    src = h.get("source_file") or "(no source file)"
    if h.get("source_row") is not None:
        src += f":{h['source_row']}"
    lines = [f"source {src}  status {h.get('status')}"]
    if h.get("flags"):
        lines.append("flags: " + ", ".join(f"{f['rule_id']} ({_num(f['value'])} vs {_num(f['threshold'])})"
                                           for f in h["flags"]))
    c = h.get("cluster")
    if c:
        role = "the keeper" if c["is_keeper"] else f"keeper is {c['keeper_id']}"
        lines.append(f"cluster {c['id']} ({c['method']}, {c['size']} samples): {role}")
    elif h.get("duplicate_of") is not None:
        lines.append(f"duplicate of {h['duplicate_of']}")
    e = h.get("edits") or {}
    if e.get("earlier_versions"):
        last = e.get("latest") or {}
        lines.append(f"edited: version {e['version']} ({e['earlier_versions']} earlier), last by op {last.get('op_id')}"
                     + (f" at {str(last['at'])[:19]}" if last.get("at") else "") + (f": {last['reason']}" if last.get("reason") else ""))
    a = h.get("augment")
    if a:
        by = "/".join(str(x) for x in (a.get("provider"), a.get("model")) if x)
        lines.append(f"augmented: {a.get('operation') or '?'} of {a.get('parent_id')}" + (f" by {by}" if by else "")
                     + (f" (job {a['job_id']})" if a.get("job_id") else ""))
    if h.get("judge"):
        lines.append(f"judge score {_num(h['judge']['score'])}")
    return lines


def render(d: dict[str, Any]) -> list[str]:
    """The lines `studio why` prints (raw; printed through safe_text.visible)."""
    ans = d.get("answer") or {}
    verdict = {True: "correct", False: "wrong"}.get(ans.get("correct"), "not scored")
    lines = [f"run {d['run']}  eval {d['eval']} ({d.get('scorer') or '?'})  item {d['item']}  model {d['model']}",
             f"prompt:    {_short(d['prompt'])}",
             f"reference: {_short(d.get('reference'))}",
             f"answer:    {_short(ans.get('text'))}  [{verdict}]", ""]
    if not d["nearest"]:
        lines.append(f"no training row of {d['split']} shares a shingle with this prompt and answer.")
        return lines
    lines.append(f"nearest training rows of {d['split']}:")
    for r in d["nearest"]:
        sid = f"sample {r['sample_id']}" if r["sample_id"] is not None else "no sample id"
        lines.append(f"{r['rank']:>2}. {sid}  similarity {r['similarity']:.2f}  train row {r['row']}"
                     + ("  (this very item)" if r.get("is_item") else ""))
        lines.append(f"    Q: {_short(r['instruction'])}")
        lines.append(f"    A: {_short(r['answer'])}")
        if r["history"] is None:
            src = r.get("source") or {}
            where = f"{src.get('source_file')}:{src.get('source_row')}" if src.get("source_file") else "unknown source"
            lines.append(f"    {where}; not in this workspace, no history")
        else:
            lines += [f"    {line}" for line in _history_lines(r["history"])]
    return lines


@studio_command("why", "show the training rows most like an eval answer, with their curation history", json_flag=True,
                epilog="example: studio why RUN s17 --model base -k 3")
@argument("run", metavar="RUN", help="run id (or a unique prefix, or a path)")
@argument("item", metavar="ITEM", help="eval item id, as in items.jsonl: s17 (or 17), val:3, row:3")
@option("--eval", "eval_id", metavar="EVAL_ID", help="which eval of the run (default: the newest)")
@option("--model", metavar="NAME",
        help="whose answer to explain (default: the run's adapter, "
             "else the eval's first model)")
@option("-k", type=int, default=5, metavar="N", help="how many training rows (default 5)")
def command(args: Args) -> int:
    d = explain(args)
    if args.json:
        out_json(d)
    else:
        for line in render(d):
            out(line)
    return 0
