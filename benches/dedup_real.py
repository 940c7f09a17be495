"""Dedup on real-length bilingual rows: the studio end to end (import + dedup, launch to exit),
the studio's dedup alone at t=0.7 and t=0.8, and rensa alone, in one run.

    PYTHONPATH=. .venv/bin/python benches/dedup_real.py [--rows 100000 1000000] [--skip-rensa] [--baseline DIR]

Rows: benches/io_speed.py's generator (real text of the repository: LLaMA-Factory's alpaca_zh_demo
and glaive rows, sample_data, README prose; ~15% Chinese, ~650-character answers, a third with an
input, code and escapes), alpaca JSON Lines. Its pools are small (a few hundred answers), so at
100k rows every answer has hundreds of edited copies: large near-duplicate families, the hard case
for candidate verification and chain splitting.

Each studio step runs as its own `studio` process (python -m studio.cli), timed launch to exit:
`studio import FILE` into a fresh workspace, then `studio dedup --threshold T` on a copy of the
imported workspace (no stored signatures: each dedup hashes every row). rensa alone: the same
normalised texts (read from the workspace, not timed), split into words and CJK characters in
Python, `RMinHashDeduplicator` at the same threshold with LSH, one process; this is what a plain
rensa pipeline does, without verification or clusters.

Recall: for a 2,000-row sample of pairs (row, an earlier row with the same first answer part and
exact Jaccard >= t), the share that the studio put in one cluster.

Only ratios from the same run mean anything on a loaded machine: the table prints them.
"""
from __future__ import annotations

import argparse
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


def studio(*args: str, root: Path = ROOT) -> float:
    """Run `studio ARGS` (the code in `root`) in a fresh process; wall seconds, launch to exit."""
    env = dict(os.environ, PYTHONPATH=str(root))
    t = time.perf_counter()
    # cwd=root: `python -c` puts the working directory first on sys.path, ahead of PYTHONPATH
    proc = subprocess.run([sys.executable, "-c", "import sys; from studio.cli import main; sys.exit(main())", *args],
                          env=env, capture_output=True, text=True, cwd=root)
    secs = time.perf_counter() - t
    if proc.returncode:
        raise SystemExit(f"studio {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
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


def measure(rows: int, tmp: Path, skip_rensa: bool, baseline: Path | None) -> list[tuple]:
    import io_speed

    src = tmp / f"alpaca-{rows}.jsonl"
    shape = io_speed.generate(src, rows)
    base = tmp / f"ws-{rows}"
    imp = studio("--workspace", str(base), "import", str(src), "--quiet")
    out = [("studio import", imp, "")]
    dd = {}
    for t in (0.8, 0.7):
        ws = tmp / f"ws-{rows}-{t}"
        shutil.rmtree(ws, ignore_errors=True)
        shutil.copytree(base, ws)
        dd[t] = studio("--workspace", str(ws), "dedup", "--threshold", str(t), "--quiet")
        caught, together, near = recall(ws, t)
        out.append((f"studio dedup alone, t={t}", dd[t], f"{near:,} rows with a near copy: {caught:.3f} in a cluster, "
                                                           f"{together:.3f} in the copy's cluster"))
        if baseline is not None:  # the same dedup by an older checkout, on a fresh copy
            shutil.rmtree(ws, ignore_errors=True)
            shutil.copytree(base, ws)
            old = studio("--workspace", str(ws), "dedup", "--threshold", str(t), "--quiet", root=baseline)
            caught, together, near = recall(ws, t)
            out.append((f"baseline ({baseline.name}) dedup alone, t={t}", old,
                        f"this code {old / dd[t]:.2f}x faster; recall {caught:.3f} / {together:.3f}"))
    out.insert(1, ("studio end to end (import + dedup t=0.8)", imp + dd[0.8], ""))
    out.insert(2, ("studio end to end (import + dedup t=0.7)", imp + dd[0.7], ""))
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
    print(f"\n{rows:,} rows, {shape['zh_share']:.1%} Chinese, mean answer {shape['mean_answer_chars']:,.0f} chars",
          flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000])
    ap.add_argument("--skip-rensa", action="store_true")
    ap.add_argument("--baseline", type=Path, help="a checkout of older code (git archive) to time the same dedup with")
    args = ap.parse_args()
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; command: PYTHONPATH=. python benches/dedup_real.py "
          f"--rows {' '.join(map(str, args.rows))}{' --skip-rensa' if args.skip_rensa else ''}"
          f"{f' --baseline {args.baseline}' if args.baseline else ''}")
    with tempfile.TemporaryDirectory(prefix="dedup-real-") as d:
        for rows in args.rows:
            table = measure(rows, Path(d), args.skip_rensa, args.baseline)
            by = {name: s for name, s, _ in table}
            print("\n| what | seconds | docs/s | note |\n| --- | ---: | ---: | --- |")
            for name, s, note in table:
                print(f"| {name} | {s:.1f} | {rows / s:,.0f} | {note} |")
            if not args.skip_rensa:
                print(f"\nratios, same run: studio dedup t=0.8 / rensa t=0.8: "
                      f"{by['rensa alone (1 process), t=0.8'] / by['studio dedup alone, t=0.8']:.2f}x; "
                      f"t=0.7: {by['rensa alone (1 process), t=0.7'] / by['studio dedup alone, t=0.7']:.2f}x; "
                      f"studio end to end t=0.8 / rensa alone t=0.8: "
                      f"{by['rensa alone (1 process), t=0.8'] / by['studio end to end (import + dedup t=0.8)']:.2f}x; "
                      f"dedup t=0.7 / t=0.8 time: {by['studio dedup alone, t=0.7'] / by['studio dedup alone, t=0.8']:.2f}")
            print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
            for f in Path(d).iterdir():
                shutil.rmtree(f) if f.is_dir() else f.unlink()


if __name__ == "__main__":
    main()
