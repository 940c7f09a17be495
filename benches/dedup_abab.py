"""Alternating launches of two (or more) versions of the studio's dedup on copies of one imported
workspace: A B, B A, A B ... per threshold, each `studio dedup` its own process (launch to exit),
with its wall seconds, its cpu seconds (user + system of the process and its workers, from
getrusage(RUSAGE_CHILDREN)) and its peak RSS. On a shared, loaded machine only same-pair ratios
and cpu seconds mean much: it prints both.

    PYTHONPATH=. .venv/bin/python benches/dedup_abab.py WORKSPACE_DIR PAIRS old=DIR,new=DIR [0.8,0.7]

Each DIR is a checkout of the code (e.g. `git archive COMMIT | tar -x -C DIR`); WORKSPACE_DIR an
imported workspace without stored signatures (benches/dedup_real.py makes one). Results in
benches/results/dedup_real.md.
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dedup_real  # noqa: E402


def main() -> None:
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    base, pairs = Path(sys.argv[1]), int(sys.argv[2])
    roots = {k: Path(v) for k, v in (a.split("=", 1) for a in sys.argv[3].split(","))}
    thresholds = [float(x) for x in sys.argv[4].split(",")] if len(sys.argv) > 4 else [0.8, 0.7]
    labels = list(roots)
    res: list[dict] = []
    print("load average", " ".join(f"{x:.2f}" for x in os.getloadavg()), flush=True)
    with tempfile.TemporaryDirectory(prefix="dedup-abab-") as d:
        ws = Path(d) / "ws"
        for t in thresholds:
            for p in range(pairs):
                for label in labels if p % 2 == 0 else labels[::-1]:
                    shutil.rmtree(ws, ignore_errors=True)
                    shutil.copytree(base, ws)
                    load = os.getloadavg()[0]
                    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                    secs = dedup_real.studio("--workspace", str(ws), "dedup", "--threshold", str(t), "--quiet",
                                             root=roots[label])
                    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                    cpu = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
                    res.append(dict(t=t, pair=p, label=label, secs=round(secs, 2), cpu=round(cpu, 2),
                                    peak_mb=round(dedup_real.PEAK["rss"] / 1e6), load=round(load, 2)))
                    print(json.dumps(res[-1]), flush=True)

    def get(t: float, p: int, label: str, key: str) -> float:
        return next(r[key] for r in res if r["t"] == t and r["pair"] == p and r["label"] == label)

    for t in thresholds:
        for label in labels:
            print(f"t={t} {label}: wall median {statistics.median(get(t, p, label, 'secs') for p in range(pairs))}, "
                  f"cpu median {statistics.median(get(t, p, label, 'cpu') for p in range(pairs))}")
            if label != labels[0]:
                ratios = [get(t, p, label, "secs") / get(t, p, labels[0], "secs") for p in range(pairs)]
                print(f"  {label}/{labels[0]} same-pair wall ratios {[round(x, 3) for x in ratios]}, "
                      f"median {statistics.median(ratios):.3f}")
    print("load average", " ".join(f"{x:.2f}" for x in os.getloadavg()), flush=True)


if __name__ == "__main__":
    main()
