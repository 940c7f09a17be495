"""P / R / F1 of the default quality rules on the labelled sets of benches/quality_label.py, through
the real path: the rows are written as an alpaca JSON file, imported into a temporary workspace
and checked with `run_quality` and the built-in rules file.

    python benches/quality_eval.py --git ROOT [--write]

ROOT holds the sources' git dirs (<owner>+<name>/repo, see quality_label.py). Per rule: true
positives (the rule fired and the truth expects it), false positives (it fired on a row whose
truth neither expects nor allows it), false negatives (expected, did not fire), and the share of
clean rows it flagged. Overall: per row (defective or not against flagged by any rule or not),
and the share of clean rows flagged by any rule. --write puts the tables in
benches/results/quality.md with the machine, date and command.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import quality_label  # noqa: E402

TARGET_F1, TARGET_CLEAN = 0.95, 0.005
BEFORE = ("Read with care: only heldout2's **first run** was blind: P 0.972 / R 0.952 / F1 0.962, **1.67%** of clean rows "
          "flagged (rules of commit 868a280, after its flagged real rows were hand-labelled): F1 met, the clean-row target "
          "missed by 1.17 points. The table above is after four classes seen in that run were fixed (see the notes at the "
          "end). Before this round (commit 97f4b72): tuning F1 0.961 / 0.25%, heldout 0.943 / 0.62%.")
NOTES = """
Sources (git snapshots, commits in benches/quality_label.py SOURCES): tuning = hiyouga/LLaMA-Factory
@ff6d4d1 data/alpaca_en_demo.json + alpaca_zh_demo.json; held-out = BELLE open-source 1k (zh) as kept
in shibing624/MedicalGPT @5fec167 data/finetune/Belle_open_source_1k.json, sahil280114/codealpaca
@2f78ddc data/code_alpaca_2k.json (en, code), yizhongw/self-instruct @0b26cca data/seed_tasks.jsonl
(en, human-written); heldout2 = tatsu-lab/alpaca_eval @cd543a1 results/gpt4_0613/model_outputs.json (805
AlpacaEval instructions with GPT-4 answers, en) and yangjianxin1/Firefly @e22b406 data/dummy_data.jsonl (MOSS
conversations, one row per turn, 120 of 154 turns Chinese). The rows are rebuilt from the snapshots; the
repository keeps ids and labels only.

heldout2 was built (labelling script, truth file, commit 868a280) after the tuning-set fixes of this round and
before anything was measured on it; its first run with those rules, after hand-labelling the 29 real rows they
flagged, was P 0.972 / R 0.952 / F1 0.962 with 1.67% of clean rows flagged: F1 met, clean-row target missed
(+1.17 points). Its seven false flags were then read and four classes fixed (a request for a template, form or
filler text keeps its [slots]; a placeholder the request names and its input holds is the subject; an emoji is a
unit; three or more equal |-rows without a rule are a grid), which gives the table above. So heldout2 too is now
a set that was looked at: the blind number is the one above, not the table.

How the truth was made: planted rows carry one defect each (the class is the `defect` field of the
truth files); truncation and too-short rows may also be flagged by the other of the two without
counting as false positives (`allowed`). Real rows: every real row that any version of the rules
flagged during the work was read and labelled by hand (benches/data/quality_hand_labels.jsonl, with
a note each); real rows no rule flagged were not read one by one, so defects that every rule misses
are counted as clean rows here. "As an AI ..." openings count as refusals (the rule's definition).

Caveat on the first held-out set: it was not blind. Its flagged real rows were read for the hand labels,
and some of its misses (truncated unfenced code, tags in code, BELLE's "标题：..." lines) led to rule
changes, so its numbers are closer to a second tuning set than to the issue's outside set.
Per-rule FP counts include firing on planted rows of another class; the per-row line does not.
"""


def flags_for(rows) -> dict[str, set[str]]:
    from curation import quality
    from curation.importers import import_paths
    from curation.workspace import open_workspace

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "rows.json"
        src.write_text(json.dumps([{"id": r.id, "instruction": r.instruction, "input": r.input, "output": r.output}
                                   for r in rows], ensure_ascii=False), encoding="utf-8")
        ws = open_workspace(Path(tmp) / "ws")
        try:
            import_paths(ws, [src])
            quality.run_quality(ws)
            got = ws.con.execute("SELECT s.source_id, f.rule_id FROM quality_flags f JOIN samples s ON s.id = f.sample_id").fetchall()
            imported = {r[0] for r in ws.con.execute("SELECT source_id FROM samples").fetchall()}
        finally:
            ws.close()
    missing = {r.id for r in rows} - imported
    if missing:
        raise SystemExit(f"{len(missing)} rows were not imported (e.g. {sorted(missing)[:3]}); the evaluation needs every row.")
    out: dict[str, set[str]] = defaultdict(set)
    for sid, rule in got:
        out[sid].add(rule)
    return out


def f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def evaluate(set_name: str, git_root: Path) -> tuple[str, dict]:
    rows, truth = quality_label.build(set_name, git_root)
    fired = flags_for(rows)
    rules = sorted({r for t in truth for r in t["expected"]} | {r for v in fired.values() for r in v})
    clean = [t for t in truth if not t["expected"]]
    per_rule = {}
    for rule in rules:
        tp = fp = fn = clean_hits = 0
        for t in truth:
            hit = rule in fired.get(t["id"], ())
            want = rule in t["expected"]
            tp += hit and want
            fn += want and not hit
            fp += hit and not want and rule not in t.get("allowed", [])
            clean_hits += hit and not t["expected"]
        p = tp / (tp + fp) if tp + fp else 1.0
        r = tp / (tp + fn) if tp + fn else 1.0
        per_rule[rule] = (tp, fp, fn, p, r, f1(p, r) if tp + fn else float("nan"), clean_hits / len(clean))
    bad = [t for t in truth if t["expected"]]
    tp = sum(1 for t in bad if fired.get(t["id"]))
    fp = sum(1 for t in clean if fired.get(t["id"]))
    fn = len(bad) - tp
    P, R = tp / (tp + fp), tp / (tp + fn)
    overall = {"rows": len(truth), "defective": len(bad), "clean": len(clean), "P": P, "R": R, "F1": f1(P, R),
               "clean_flagged": fp / len(clean)}
    by_defect = defaultdict(lambda: [0, 0])
    for t in bad:
        by_defect[t["defect"] or "?"][0] += 1
        by_defect[t["defect"] or "?"][1] += any(r in fired.get(t["id"], ()) for r in t["expected"])
    lines = [f"### {set_name}: {', '.join(s for s, _, _ in quality_label.SETS[set_name])}", "",
             f"{len(truth)} rows: {len(bad)} defective ({sum(t['kind'] == 'planted' for t in bad)} planted, "
             f"{sum(t['kind'] == 'real' for t in bad)} real rows hand-labelled), {len(clean)} clean.", "",
             "| rule | TP | FP | FN | P | R | F1 | clean rows flagged |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for rule, (a, b, c, p, r, f, cl) in per_rule.items():
        lines.append(f"| {rule} | {a} | {b} | {c} | {p:.3f} | {r:.3f} | {'-' if f != f else f'{f:.3f}'} | {cl:.2%} |")
    lines.append(f"| **any rule, per row** | {tp} | {fp} | {fn} | **{P:.3f}** | **{R:.3f}** | **{overall['F1']:.3f}** | "
                 f"**{overall['clean_flagged']:.2%}** |")
    lines += ["", "Recall by planted class (rows caught by their expected rule / rows): "
              + ", ".join(f"{k} {v[1]}/{v[0]}" for k, v in sorted(by_defect.items())), ""]
    misses = [(t["id"], t["expected"], sorted(fired.get(t["id"], ()))) for t in bad if not any(r in fired.get(t["id"], ()) for r in t["expected"])]
    false_flags = [(t["id"], sorted(fired[t["id"]])) for t in clean if fired.get(t["id"])]
    return "\n".join(lines), {"overall": overall, "misses": misses, "false_flags": false_flags}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--git", type=Path, required=True, help="folder holding <owner>+<name>/repo git dirs of the sources")
    ap.add_argument("--write", action="store_true", help="write benches/results/quality.md")
    ap.add_argument("--show", action="store_true", help="list the missed and the falsely flagged rows")
    args = ap.parse_args()
    parts, summary = [], []
    for name in quality_label.SETS:
        table, info = evaluate(name, args.git)
        parts.append(table)
        o = info["overall"]
        ok = o["F1"] >= TARGET_F1 and o["clean_flagged"] <= TARGET_CLEAN
        summary.append(f"| {name} | {o['P']:.3f} | {o['R']:.3f} | {o['F1']:.3f} | {o['clean_flagged']:.2%} | "
                       f"{'met' if ok else 'missed: F1 %+.3f, clean %+.2f points' % (o['F1'] - TARGET_F1, 100 * (o['clean_flagged'] - TARGET_CLEAN))} |")
        if args.show:
            for m in info["misses"]:
                print("MISS", *m)
            for m in info["false_flags"]:
                print("FALSE", *m)
    head = ["| set | P | R | F1 | clean rows flagged | target (F1 >= 0.95, <= 0.5% clean flagged) |",
            "| --- | ---: | ---: | ---: | ---: | --- |", *summary]
    text = "\n".join(head) + "\n\n" + BEFORE + "\n\n" + "\n\n".join(parts)
    print(text)
    if args.write:
        cmd = "PYTHONPATH=$PWD .venv/bin/python benches/quality_eval.py --git ROOT --write"
        machine = f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, Python {platform.python_version()}"
        doc = (f"# Quality rules on real data: P / R / F1 per rule\n\nMeasured {dt.date.today()} on {machine}.\n"
               f"Command: `{cmd}` (ROOT holds git snapshots of the sources; see benches/quality_label.py).\n\n"
               "Old numbers (issue 20, held-out set kept outside the project): P 0.787 / R 0.870 / F1 0.827, 2.8% of "
               "clean rows flagged; a reference rule set 0.975 / 0.980 / 0.978, 0.3%.\n\n" + text + "\n" + NOTES)
        out = HERE / "results" / "quality.md"
        old = out.read_text(encoding="utf-8") if out.exists() else ""
        keep = old[old.index("\n## Speed"):] if "\n## Speed" in old else ""  # written by hand from quality_speed.py
        out.write_text(doc + keep, encoding="utf-8")


if __name__ == "__main__":
    main()
