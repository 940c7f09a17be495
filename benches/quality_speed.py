"""`studio quality` speed, this tree against a baseline commit, in one run on one machine; and the
proof that both give the same verdicts.

    PYTHONPATH=. .venv/bin/python benches/quality_speed.py [--rows 100000] [--baseline 97f4b72]
        [--same 20000] [--git ROOT] [--per-rule 2000] [--current COMMIT]

- speed: benches/io_speed.py's generator writes --rows rows, `studio import` imports them once,
  and `studio quality` runs on a copy of that workspace with the baseline's code (its tree from
  `git archive`, first on PYTHONPATH) and with this tree's, each a fresh process through the real
  CLI (default pool: both cores above 20k rows). Wall seconds and rows/s, the load average beside.
- --per-rule N: CPU microseconds a row per rule on N generated rows, in one process, both trees.
- --same N: the values, flags and details of every rule on N generated rows and (with --git, the
  sources of benches/quality_label.py) on the labelled sets, from both trees; prints whether they
  are identical.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "97f4b72"  # the rules before the speed work (issue 20)


def _tree(commit: str, into: Path) -> Path:
    """The baseline commit's files (curation, studio, training), for PYTHONPATH."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "curation", "studio", "training"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def _env(path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(path)
    return env


def _rows_of(n: int, tmp: Path) -> list[tuple[str, str]]:
    sys.path.insert(0, str(ROOT / "benches"))
    import io_speed

    from curation.importers.alpaca import user_turn

    src = tmp / f"gen-{n}.jsonl"
    io_speed.generate(src, n, seed=7)
    rows = []
    for line in src.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        rows.append((user_turn(r["instruction"], r["input"] or None), r["output"]))
    return rows


def _worker(mode: str, data: Path, out: Path) -> None:
    """In a process whose PYTHONPATH picks the tree: measure rows from `data` (a pickle)."""
    from curation import quality

    rows = pickle.loads(data.read_bytes())
    rules = quality.load_rules()
    if mode == "verdicts":
        ids = list(range(len(rows)))
        res = []
        for lo in range(0, len(rows), quality.CHUNK):
            part = rows[lo:lo + quality.CHUNK]
            res.append(quality._measure_chunk(rules, ids[lo:lo + len(part)], [i for i, _ in part], [a for _, a in part],
                                              [None] * len(part)))
        out.write_bytes(pickle.dumps(res))
        return
    per: dict[str, float] = {}
    for r in rules:
        if not r.enabled:
            continue
        d = r.definition
        t = time.process_time()
        for i, a in rows:
            d.measure(i, a, r.threshold, "") if d.whole_sample else d.measure(i, a, r.threshold)
        per[r.id] = (time.process_time() - t) / len(rows) * 1e6
    t = time.process_time()
    quality._measure_chunk(rules, list(range(len(rows))), [i for i, _ in rows], [a for _, a in rows], [None] * len(rows))
    per["all rules, one chunk"] = (time.process_time() - t) / len(rows) * 1e6
    out.write_text(json.dumps(per))


def _in_tree(tree: Path, mode: str, rows, tmp: Path):
    data, out = tmp / "rows.pkl", tmp / "out.bin"
    data.write_bytes(pickle.dumps(rows))
    subprocess.run([sys.executable, __file__, "--worker", mode, str(data), str(out)], env=_env(tree), cwd=tree, check=True)
    return out.read_bytes()


def speed(rows: int, base: Path, here: Path, tmp: Path) -> None:
    sys.path.insert(0, str(ROOT / "benches"))
    import io_speed

    src = tmp / "rows.jsonl"
    io_speed.generate(src, rows)
    studio = [sys.executable, "-m", "studio"]
    ws0 = tmp / "ws0"
    subprocess.run(studio + ["import", str(src), "-w", str(ws0), "-q"], env=_env(ROOT), cwd=ROOT, check=True)
    print("| code | rows | seconds | rows/s | load average before |\n| --- | ---: | ---: | ---: | ---: |")
    got: dict[str, float] = {}
    for name, tree in (("baseline " + BASELINE, base), ("this tree", here)):
        ws = tmp / f"ws-{len(got)}"
        shutil.copytree(ws0, ws)
        load = os.getloadavg()[0]
        t = time.perf_counter()
        # cwd=tree too: `python -m` puts the working directory first on sys.path, before PYTHONPATH
        subprocess.run(studio + ["quality", "-w", str(ws), "-q"], env=_env(tree), cwd=tree, check=True)
        s = time.perf_counter() - t
        got[name] = s
        print(f"| {name} | {rows:,} | {s:.1f} | {rows / s:,.0f} | {load:.1f} |", flush=True)
        shutil.rmtree(ws)
    a, b = got.values()
    print(f"\nspeed-up: {a / b:.2f}x")


def main() -> None:
    global BASELINE
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _worker(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=0, help="time `studio quality` on this many generated rows")
    ap.add_argument("--baseline", default=BASELINE, help="the commit to compare with")
    ap.add_argument("--current", help="compare this commit instead of the working tree")
    ap.add_argument("--per-rule", type=int, default=0, help="CPU us a row per rule on this many rows")
    ap.add_argument("--same", type=int, default=0, help="compare verdicts on this many generated rows")
    ap.add_argument("--git", type=Path, help="with --same: also the labelled sets (sources' git dirs, see quality_label.py)")
    args = ap.parse_args()
    BASELINE = args.baseline
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        base = _tree(args.baseline, tmp / "baseline")
        here = _tree(args.current, tmp / "current") if args.current else ROOT
        if args.per_rule:
            rows = _rows_of(args.per_rule, tmp)
            old = json.loads(_in_tree(base, "per-rule", rows, tmp))
            new = json.loads(_in_tree(here, "per-rule", rows, tmp))
            print(f"CPU us a row, {args.per_rule:,} generated rows (each rule alone, then all rules as one chunk)\n")
            print("| rule | baseline | this tree | speed-up |\n| --- | ---: | ---: | ---: |")
            for k in old:
                print(f"| {k} | {old[k]:,.0f} | {new.get(k, float('nan')):,.0f} | {old[k] / new[k]:.1f}x |")
        if args.same:
            sets = {f"{args.same:,} generated rows": _rows_of(args.same, tmp)}
            if args.git:
                sys.path.insert(0, str(ROOT / "benches"))
                import quality_label

                from curation.importers.alpaca import user_turn
                for name in quality_label.SETS:
                    built, _ = quality_label.build(name, args.git)
                    sets[f"labelled set {name}"] = [(user_turn(r.instruction, r.input or None), r.output) for r in built]
            for name, rows in sets.items():
                same = _in_tree(base, "verdicts", rows, tmp) == _in_tree(here, "verdicts", rows, tmp)
                print(f"{name} ({len(rows):,} rows): values, flags and details {'identical' if same else 'DIFFERENT'}")
        if args.rows:
            speed(args.rows, base, here, tmp)


if __name__ == "__main__":
    main()
