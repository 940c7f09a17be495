"""Dedup on real-length bilingual rows: the studio end to end (import + dedup, launch to exit),
the studio's dedup alone at t=0.7 and t=0.8 (peak memory of its process tree), and rensa alone,
in one run.

    PYTHONPATH=. .venv/bin/python benches/dedup_real.py [--rows 100000 1000000] [--skip-rensa] [--baseline DIR]
        [--llamafactory GIT_DIR]

Rows: with --llamafactory (or LLAMAFACTORY_GIT), benches/dedup_data.py's realistic data: mostly
unique rows composed from the real sentences of LLaMA-Factory's demo files, ~15% of rows in planted
near-duplicate families of 2-30 with realistic edits; recall is measured on the planted copies
(recall_planted: copies at or above t to their original, share clustered with their family /
with the original, by edit type). Without it, benches/io_speed.py's generator (a few hundred real
answers, so at 100k rows every answer has hundreds of edited copies: giant families), with the
old recall measure (`recall`).

Each studio step runs as its own `studio` process (python -m studio.cli), timed launch to exit:
`studio import FILE` into a fresh workspace, then `studio dedup --threshold T` on a copy of the
imported workspace (no stored signatures: each dedup hashes every row). rensa alone: the same
normalised texts (read from the workspace, not timed), split into words and CJK characters in
Python, `RMinHashDeduplicator` at the same threshold with LSH, one process; this is what a plain
rensa pipeline does, without verification or clusters.

Only ratios from the same run mean anything on a loaded machine: the table prints them.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benches"))


PEAK: dict[str, float] = {}  # the last studio call's peak resident memory of its process tree, bytes


def studio(*args: str, root: Path = ROOT) -> float:
    """Run `studio ARGS` (the code in `root`) in a fresh process; wall seconds, launch to exit.
    PEAK["rss"]: the peak of the summed resident memory of the process and its workers (polled)."""
    import psutil

    env = dict(os.environ, PYTHONPATH=str(root))
    t = time.perf_counter()
    # cwd=root: `python -c` puts the working directory first on sys.path, ahead of PYTHONPATH
    proc = psutil.Popen([sys.executable, "-c", "import sys; from studio.cli import main; sys.exit(main())", *args],
                        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=root)
    peak = 0
    while proc.poll() is None:
        try:
            rss = proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
        except psutil.Error:
            rss = 0
        peak = max(peak, rss)
        time.sleep(0.1)
    secs = time.perf_counter() - t
    PEAK["rss"] = peak
    if proc.returncode:
        raise SystemExit(f"studio {' '.join(args)} failed ({proc.returncode}): {proc.stderr.read()[-2000:]}")
    return secs


def rensa_alone(texts: list[str], threshold: float) -> tuple[float, int]:
    """A plain rensa pipeline over normalised texts: tokens (words, CJK characters), R-MinHash,
    LSH deduplicator. Returns (seconds, rows flagged as duplicates)."""
    import re

    from rensa import RMinHashDeduplicator

    from curation.lang import CJK_CLASS

    token = re.compile(f"[{CJK_CLASS}]|[^\\W{CJK_CLASS}]+")
    t = time.perf_counter()
    dedup = RMinHashDeduplicator(threshold=threshold, num_perm=128, use_lsh=True)
    keep = dedup.add_pairs((str(i), token.findall(x)) for i, x in enumerate(texts))
    return time.perf_counter() - t, len(texts) - sum(1 for k in keep if k)


def recall(ws_dir: Path, threshold: float, sample: int = 2000) -> tuple[float, float, int]:
    """For up to `sample` rows that have an earlier near copy (exact Jaccard >= threshold with one
    of the 20 previous rows of the same first answer paragraph): the share that are in a cluster
    (caught), and the share in the same cluster as that copy (clusters are verified against their
    keeper, so in families of hundreds two near rows may rightly sit in different clusters)."""
    import duckdb
    import numpy as np

    from curation import normalize as norm
    from curation import shingles as sh

    con = duckdb.connect(str(ws_dir / "studio.duckdb"), read_only=True)
    rows = con.execute(f"SELECT s.id, s.cluster_id, split_part(s.answer, chr(10), 1), {norm.field_text_sql('sample')} "
                       "FROM samples s ORDER BY s.id").fetchall()
    con.close()
    first: dict[str, list[int]] = {}
    for i, (_, _, head, _) in enumerate(rows):
        first.setdefault(head, []).append(i)
    order = np.random.default_rng(0).permutation(len(rows))
    sets: dict[int, np.ndarray] = {}

    def get(i: int) -> np.ndarray:
        if i not in sets:
            sets[i] = sh.shingle_set(norm.normalize(rows[i][3]))
        return sets[i]

    near = caught = together = 0
    for i in order.tolist():
        fam = first[rows[i][2]]
        for j in fam[:fam.index(i)][-20:]:
            if sh.jaccard(get(i), get(j)) >= threshold:
                near += 1
                caught += rows[i][1] is not None
                together += rows[i][1] is not None and rows[i][1] == rows[j][1]
                break
        if near >= sample:
            break
    return (caught / near, together / near, near) if near else (float("nan"), float("nan"), 0)


def recall_planted(ws_dir: Path, truth_path: Path, threshold: float) -> tuple[dict[str, tuple[int, float, float]], int]:
    """Recall of planted copies, by edit type: of the copies whose exact Jaccard to their family's
    original reaches the threshold, (how many, share in a cluster with a member of their family,
    share in the original's cluster). Also: rows clustered that are in no planted family."""
    import duckdb

    from curation import normalize as norm
    from curation import shingles as sh

    truth = [json.loads(x) for x in truth_path.read_text().splitlines()]
    con = duckdb.connect(str(ws_dir / "studio.duckdb"), read_only=True)
    cluster = dict(con.execute("SELECT id - 1, cluster_id FROM samples WHERE cluster_id IS NOT NULL").fetchall())
    rows = sorted({t["row"] for t in truth} | {t["root"] for t in truth})
    text = dict(con.execute(f"SELECT s.id - 1, {norm.field_text_sql('sample')} FROM samples s WHERE s.id - 1 IN "
                            "(SELECT unnest(?))", [rows]).fetchall())
    con.close()
    sets = {r: sh.shingle_set(norm.normalize(text[r])) for r in rows}
    fam_clusters: dict[int, list] = {}
    for t in truth:
        fam_clusters.setdefault(t["family"], []).append(cluster.get(t["row"]))
    out: dict[str, list[int]] = {}
    for t in truth:
        if t["edit"] == "original" or sh.jaccard(sets[t["row"]], sets[t["root"]]) < threshold:
            continue
        c = cluster.get(t["row"])
        with_family = c is not None and fam_clusters[t["family"]].count(c) > 1
        for key in (t["edit"], "all"):
            v = out.setdefault(key, [0, 0, 0])
            v[0] += 1
            v[1] += with_family
            v[2] += c is not None and c == cluster.get(t["root"])
    planted = {t["row"] for t in truth}
    stray = sum(1 for r in cluster if r not in planted)
    return {k: (v[0], v[1] / v[0], v[2] / v[0]) for k, v in out.items()}, stray


E2E = "**studio end to end, t=0.8: import, then dedup on that workspace**"


def measure(rows: int, tmp: Path, skip_rensa: bool, baseline: Path | None, lf: Path | None) -> list[tuple]:
    src = tmp / f"alpaca-{rows}.jsonl"
    if lf is None:  # the old data: a few hundred answers, each with hundreds of copies
        import io_speed

        shape = io_speed.generate(src, rows)
    else:
        import dedup_data

        shape = dedup_data.generate(src, rows, lf, dedup_data.resolve_commit(lf, "HEAD"))
    truth = Path(str(src) + ".truth.jsonl")
    base = tmp / f"ws-{rows}"
    # End to end as a user runs it: `studio import`, then `studio dedup` on that workspace, each
    # launch to exit. (The rows below time dedup alone on copies of one imported workspace: the
    # copying leaves gigabytes of dirty pages for the kernel to write back meanwhile.)
    e2e = tmp / f"ws-{rows}-e2e"
    e2e_import = studio("--workspace", str(e2e), "import", str(src), "--quiet")
    e2e_dedup = studio("--workspace", str(e2e), "dedup", "--threshold", "0.8", "--quiet")
    e2e_note = f"import {e2e_import:.1f} s + dedup {e2e_dedup:.1f} s"
    if lf is not None:
        e2e_note += f"; recall of planted copies {recall_planted(e2e, truth, 0.8)[0]['all'][1]:.4f}"
    shutil.rmtree(e2e)
    imp = studio("--workspace", str(base), "import", str(src), "--quiet")
    out = [("studio import", imp, f"peak {PEAK['rss'] / 1e6:,.0f} MB")]
    # The baseline imports into a workspace of its own: older code cannot open a newer schema.
    bases = {"studio": base}
    if baseline:
        bases["baseline"] = tmp / f"ws-{rows}-baseline"
        imp_b = studio("--workspace", str(bases["baseline"]), "import", str(src), "--quiet", root=baseline)
        out.append((f"baseline ({baseline.name}) import", imp_b, f"this code {imp_b / imp:.2f}x faster"))
    dd, dd_b = {}, {}
    for t in (0.8, 0.7):
        for label, root in [("studio", ROOT)] + ([(f"baseline ({baseline.name})", baseline)] if baseline else []):
            ws = tmp / f"ws-{rows}-{t}"
            shutil.rmtree(ws, ignore_errors=True)
            shutil.copytree(bases["studio" if label == "studio" else "baseline"], ws)
            secs = studio("--workspace", str(ws), "dedup", "--threshold", str(t), "--quiet", root=root)
            peak = PEAK["rss"]
            note = f"peak {peak / 1e6:,.0f} MB ({peak / rows / 1e3:.1f} KB/row)"
            if lf is not None:
                rec, stray = recall_planted(ws, truth, t)
                a = rec["all"]
                note += (f"; planted copies >= t: {a[0]:,}, recall {a[1]:.4f} (with family) / {a[2]:.4f} (with original); "
                         + ", ".join(f"{k} {v[1]:.3f}" for k, v in sorted(rec.items()) if k != "all")
                         + f"; {stray:,} clustered rows outside planted families")
            else:
                caught, together, near = recall(ws, t)
                note += f"; {near:,} rows with a near copy: {caught:.3f} in a cluster, {together:.3f} in the copy's cluster"
            if label == "studio":
                dd[t] = secs
            else:
                dd_b[t] = secs
                note = f"this code {secs / dd[t]:.2f}x faster; " + note
            out.append((f"{label} dedup alone, t={t}", secs, note))
            shutil.rmtree(ws, ignore_errors=True)
    out.insert(0, (E2E, e2e_import + e2e_dedup, e2e_note))
    out.insert(2, ("studio import + dedup alone on a copy, t=0.8", imp + dd[0.8], ""))
    out.insert(3, ("studio import + dedup alone on a copy, t=0.7", imp + dd[0.7], ""))
    if baseline:
        out.insert(4, (f"baseline ({baseline.name}) import + dedup alone on a copy, t=0.8", imp_b + dd_b[0.8],
                       f"this code {(imp_b + dd_b[0.8]) / (imp + dd[0.8]):.2f}x faster"))
    if not skip_rensa:
        import duckdb

        from curation import normalize as norm

        con = duckdb.connect(str(base / "studio.duckdb"), read_only=True)
        texts = [norm.normalize(r[0]) for r in con.execute(
            f"SELECT {norm.field_text_sql('sample')} FROM samples s ORDER BY s.id").fetchall()]
        con.close()
        for t in (0.8, 0.7):
            secs, dups = rensa_alone(texts, t)
            out.append((f"rensa alone (1 process), t={t}", secs, f"{dups:,} rows flagged"))
    print(f"\n{rows:,} rows: {json.dumps(shape)}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000])
    ap.add_argument("--skip-rensa", action="store_true")
    ap.add_argument("--baseline", type=Path, help="a checkout of older code (git archive) to time the same dedup with")
    ap.add_argument("--llamafactory", type=Path, default=os.environ.get("LLAMAFACTORY_GIT"),
                    help="git directory of a LLaMA-Factory clone: realistic data (benches/dedup_data.py); "
                         "without it, io_speed's data with giant families")
    args = ap.parse_args()
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; command: PYTHONPATH=. python benches/dedup_real.py "
          f"--rows {' '.join(map(str, args.rows))}{' --skip-rensa' if args.skip_rensa else ''}"
          f"{f' --baseline {args.baseline}' if args.baseline else ''}"
          f"{f' --llamafactory {args.llamafactory}' if args.llamafactory else ''}")
    with tempfile.TemporaryDirectory(prefix="dedup-real-") as d:
        for rows in args.rows:
            table = measure(rows, Path(d), args.skip_rensa, args.baseline, args.llamafactory)
            by = {name: s for name, s, _ in table}
            print("\n| what | seconds | docs/s | note |\n| --- | ---: | ---: | --- |")
            for name, s, note in table:
                print(f"| {name} | {s:.1f} | {rows / s:,.0f} | {note} |")
            if not args.skip_rensa:
                print(f"\nratios, same run: studio dedup t=0.8 / rensa t=0.8: "
                      f"{by['rensa alone (1 process), t=0.8'] / by['studio dedup alone, t=0.8']:.2f}x; "
                      f"t=0.7: {by['rensa alone (1 process), t=0.7'] / by['studio dedup alone, t=0.7']:.2f}x; "
                      f"studio end to end t=0.8 / rensa alone t=0.8: "
                      f"{by['rensa alone (1 process), t=0.8'] / by[E2E]:.2f}x; "
                      f"dedup t=0.7 / t=0.8 time: {by['studio dedup alone, t=0.7'] / by['studio dedup alone, t=0.8']:.2f}")
            print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
            for f in Path(d).iterdir():
                shutil.rmtree(f) if f.is_dir() else f.unlink()


if __name__ == "__main__":
    main()
