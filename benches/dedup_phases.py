"""Where a whole dedup's time goes, threshold against threshold, in one run: each round copies an
imported workspace, drops its stored signatures (so every round hashes afresh, as a first dedup
does) and runs `find_duplicates`, timing each phase from the job's progress messages. The
thresholds alternate (ABBA...) so that drift on a shared machine falls on both, after an untimed
warm-up run (--warmup: a process's first dedup is slower than its later ones).

    PYTHONPATH=. .venv/bin/python benches/dedup_phases.py WORKSPACE --thresholds 0.7,0.8 --rounds 2

Prints a markdown table: one row per run, then the mean per threshold and the ratio of the
first threshold's total to the second's. The copies go to a temporary folder beside the workspace
(it needs room for one more copy).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PHASES = ("hashing", "finding", "checking", "writing")


def one_run(src: Path, threshold: float) -> dict[str, float]:
    from curation.dedup import DedupParams, find_duplicates
    from curation.jobs import Job
    from curation.workspace import open_workspace

    tmp = Path(tempfile.mkdtemp(prefix=".dedup-phases-", dir=src.parent))
    try:
        dst = tmp / "ws"
        shutil.copytree(src, dst)
        with open_workspace(dst) as ws:
            ws.con.execute("DELETE FROM minhash_signatures")
            ws.con.execute("CHECKPOINT")
        os.sync()  # the copy's dirty pages written back before the clock starts
        times: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        last = [None, 0.0]

        def progress(job) -> None:
            now = time.perf_counter()
            if job.message != last[0]:
                phase = _phase(last[0])
                if phase:
                    times[phase] += now - last[1]
                last[0], last[1] = job.message, now

        with open_workspace(dst) as ws:
            t0 = last[1] = time.perf_counter()
            find_duplicates(ws, DedupParams(threshold=threshold), Job(kind="dedup", on_progress=progress, min_interval=0))
            end = time.perf_counter()
        phase = _phase(last[0])
        if phase:
            times[phase] += end - last[1]
        times["total"] = end - t0
        return times
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _phase(message: str | None) -> str | None:
    if not message:
        return None
    word = re.split(r"\W+", message.strip().lower())[0]
    return word if word in PHASES else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workspace", type=Path)
    ap.add_argument("--thresholds", default="0.7,0.8")
    ap.add_argument("--rounds", type=int, default=2, help="runs of each threshold")
    ap.add_argument("--warmup", type=int, default=1,
                    help="untimed runs first (the last threshold): a process's first dedup ran 6-14 s slower "
                         "than its later ones in every measurement of 2026-12-07, and the first timed run was "
                         "always the first threshold's")
    a = ap.parse_args()
    ts = [float(t) for t in a.thresholds.split(",")]
    order = [ts[(i + i // 2) % 2] if len(ts) == 2 else ts[i % len(ts)] for i in range(a.rounds * len(ts))]
    for _ in range(a.warmup):
        r = one_run(a.workspace, ts[-1])
        print(f"warm-up t={ts[-1]}: " + ", ".join(f"{k} {v:.2f}" for k, v in r.items()), file=sys.stderr, flush=True)
    rows = []
    for t in order:
        r = one_run(a.workspace, t)
        rows.append((t, r))
        print(f"t={t}: " + ", ".join(f"{k} {v:.2f}" for k, v in r.items()), file=sys.stderr, flush=True)
    cols = [*PHASES, "total"]
    print("| threshold | " + " | ".join(cols) + " |")
    print("| ---: | " + " | ".join("---:" for _ in cols) + " |")
    for t, r in rows:
        print(f"| {t} | " + " | ".join(f"{r[c]:.2f}" for c in cols) + " |")
    means = {t: {c: sum(r[c] for u, r in rows if u == t) / sum(1 for u, _ in rows if u == t) for c in cols} for t in ts}
    for t in ts:
        print(f"| **mean {t}** | " + " | ".join(f"{means[t][c]:.2f}" for c in cols) + " |")
    if len(ts) == 2:
        a_, b_ = ts
        rest = [c for c in PHASES if c != "hashing"]
        print(f"\ntotal at {a_} / at {b_}: {means[a_]['total'] / means[b_]['total']:.3f}; without the hashing: "
              f"{sum(means[a_][c] for c in rest) / sum(means[b_][c] for c in rest):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
