"""Near-duplicate detection: the studio's dedup against a plain datasketch pipeline, same run.

    .venv/bin/python benches/dedup_bench.py [--n 1000000] [--plain-n 20000] [--acc-families 3000]

1. Speed: a generated workspace of N bilingual samples (a fifth of them planted near or exact
   copies). Timed end to end: text read from the workspace, clusters written back. Each pipeline
   runs in a fresh process; peak RSS is sampled over that process and all its children (the
   worker pool) together. The plain pipeline (per-token `MinHash.update` with datasketch's sha1,
   `MinHashLSH` at the same threshold, union-find) runs on a prefix of --plain-n samples and is
   extrapolated linearly (its LSH cost per sample is flat); the studio runs on that prefix too.
2. Accuracy: generated families with planted near duplicates (punctuation width, whitespace,
   edited characters/words, a moved sentence, an added closing line) and hard negatives (same
   instruction, other answer). Pair precision/recall/F1 against the components of pairs whose
   exact Jaccard on the same shingles is >= 0.8.
Prints a markdown table; benches/results/dedup.md holds a run.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

THRESHOLD = 0.8


# -- workspace generation ---------------------------------------------------------------------------
def build_workspace(path: Path, n: int, seed: int = 0) -> None:
    import numpy as np
    import pyarrow as pa

    from curation import store
    from curation.workspace import open_workspace
    from tests._dedup_data import EN_CLOSERS, EN_GLUE, EN_WORDS, ZH_CLOSERS, ZH_GLUE, ZH_WORDS

    rng = np.random.default_rng(seed)
    zh = np.array(ZH_WORDS + ZH_GLUE)
    en = np.array(EN_WORDS + EN_GLUE)
    ins_list, ans_list = [], []
    for i in range(n):
        if i > 100 and rng.random() < 0.2:  # a planted copy of an earlier sample
            j = int(rng.integers(0, i))
            ins, ans = ins_list[j], ans_list[j]
            r = rng.random()
            if r < 0.3:
                ans = ans + (ZH_CLOSERS[0] if ans[:1] >= "\u4e00" else " " + EN_CLOSERS[0])
            elif r < 0.6:
                ans = ans.replace("，", ",").replace("。", ".")
            elif r < 0.8:
                cut = int(rng.integers(0, max(1, len(ans) - 4)))
                ans = ans[:cut] + ans[cut + 2:]
            ins_list.append(ins)
            ans_list.append(ans)
            continue
        if rng.random() < 0.5:
            ins = "".join(rng.choice(zh, int(rng.integers(6, 14)))) + "？"
            k = int(rng.integers(25, 70))
            words = rng.choice(zh, k)
            ans = "，".join("".join(words[s:s + 6]) for s in range(0, k, 6)) + "。"
        else:
            ins = " ".join(rng.choice(en, int(rng.integers(6, 14)))).capitalize() + "?"
            ans = " ".join(rng.choice(en, int(rng.integers(25, 70)))).capitalize() + "."
        ins_list.append(ins)
        ans_list.append(ans)
    ws = open_workspace(path)
    step = 100_000
    with ws.transaction():
        for s in range(0, n, step):
            ins, ans = ins_list[s:s + step], ans_list[s:s + step]
            msgs = [json.dumps([{"role": "user", "content": a}, {"role": "assistant", "content": b}], ensure_ascii=False)
                    for a, b in zip(ins, ans)]
            m = len(ins)
            cols = {
                "kind": ["chat"] * m, "system": [None] * m, "messages": msgs, "text": [None] * m,
                "instruction": ins, "answer": ans, "lang": [None] * m, "tags": [[]] * m,
                "source_file": ["bench.jsonl"] * m, "source_row": list(range(s, s + m)),
                "source_id": [None] * m, "parent_id": [None] * m, "operation": [None] * m, "lineage": [None] * m, "tools": [None] * m,
                "content_hash": [hashlib.sha256(x.encode()).hexdigest() for x in msgs],
            }
            store.insert_arrow(ws.con, pa.table(cols, schema=store.arrow_schema()), import_id=None)
    ws.close()


# -- the two pipelines (each run in its own process) -------------------------------------------------
def _cpu() -> float:
    """CPU seconds of this process and its finished children (the worker pool): robust to other
    jobs sharing the CPU, unlike wall time."""
    import resource

    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def run_ours(path: Path, limit: int | None) -> dict:
    from curation import dedup
    from curation.workspace import open_workspace

    ws = open_workspace(path)
    if limit is not None:  # keep only a prefix: the same samples the plain pipeline sees
        with ws.transaction():
            ws.con.execute("DELETE FROM samples WHERE id > ?", [limit])
    ws.con.execute("CHECKPOINT")
    c0 = _cpu()
    t = time.perf_counter()
    report = dedup.find_duplicates(ws, dedup.DedupParams())
    secs = time.perf_counter() - t
    ws.close()
    return {"seconds": secs, "cpu": _cpu() - c0, "samples": report.samples, "clusters": report.clusters, "duplicates": report.duplicates,
            "candidates": report.candidate_pairs}


def plain_datasketch(items: list[tuple[int, str]]) -> dict[int, int]:
    """What one would write with datasketch directly: normalise, shingle, `MinHash.update` per
    shingle, `MinHashLSH` query + insert, union-find. Returns each key's cluster root."""
    from datasketch import MinHash, MinHashLSH

    from curation.normalize import normalize
    from curation.shingles import shingles

    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=128)
    parent: dict[int, int] = {}

    def find(x):
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    for key, text in items:
        m = MinHash(num_perm=128)
        for s in set(shingles(normalize(text))):
            m.update(s.encode("utf-8"))
        for other in lsh.query(m):
            ra, rb = find(key), find(other)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
        lsh.insert(key, m)
    return {key: find(key) for key, _ in items}


def run_plain(path: Path, limit: int) -> dict:
    """The plain datasketch pipeline over the workspace's first `limit` samples, timed."""
    import duckdb

    from curation.normalize import field_text_sql

    c0 = _cpu()
    t = time.perf_counter()
    con = duckdb.connect(str(path / "studio.duckdb"))
    rows = con.execute(f"SELECT s.id, {field_text_sql('sample')} FROM samples s WHERE id <= ? ORDER BY id", [limit]).fetchall()
    roots = plain_datasketch(rows)
    clusters = {}
    for sid, _ in rows:
        clusters.setdefault(roots[sid], []).append(sid)
    multi = [c for c in clusters.values() if len(c) > 1]
    with con.cursor() as cur:  # write back like the studio does (cluster ids on samples)
        cur.execute("CREATE TEMP TABLE plain_clusters (sample_id BIGINT, cluster BIGINT)")
        cur.execute("INSERT INTO plain_clusters SELECT unnest(?), unnest(?)",
                    [[s for c in multi for s in c], [c[0] for c in multi for _ in c]])
    secs = time.perf_counter() - t
    return {"seconds": secs, "cpu": _cpu() - c0, "samples": len(rows), "clusters": len(multi), "duplicates": sum(len(c) - 1 for c in multi)}


def _peak_rss_of(cmd: list[str]) -> tuple[dict, float]:
    """Run cmd; return (its JSON output, peak RSS in GB of it and its children together)."""
    import psutil

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    peak = 0
    ps = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            total = ps.memory_info().rss + sum(c.memory_info().rss for c in ps.children(recursive=True))
            peak = max(peak, total)
        except psutil.Error:
            pass
        time.sleep(0.05)
    out = proc.stdout.read()
    if proc.returncode:
        raise SystemExit(f"{cmd} failed ({proc.returncode})")
    return json.loads(out.strip().splitlines()[-1]), peak / 1e9


# -- accuracy -----------------------------------------------------------------------------------
def accuracy(families: int) -> list[tuple[str, float, float, float]]:
    from curation import dedup, store
    from curation.normalize import marked_text
    from curation.samples import chat
    from curation.workspace import open_workspace
    from tests._dedup_data import generate, pair_scores, truth_clusters

    rows = generate(families, seed=7)
    # the text the workspace hands to dedup (role-marked turns: curation/normalize.py)
    texts = [marked_text([{"role": "user", "content": i}, {"role": "assistant", "content": a}]) for i, a, _ in rows]
    truth = truth_clusters(texts, [f for *_, f in rows], THRESHOLD, 3)
    out = []
    with tempfile.TemporaryDirectory() as d:
        ws = open_workspace(Path(d) / "ws")
        with ws.transaction():
            ids = store.insert_samples(ws.con, [chat(i, a) for i, a, _ in rows])
        for verify in (True, False):
            dedup.find_duplicates(ws, dedup.DedupParams(verify=verify))
            cl = dict(ws.con.execute("SELECT id, cluster_id FROM samples").fetchall())
            out.append((f"studio dedup ({'verified' if verify else '--no-verify'})", *pair_scores([cl[i] for i in ids], truth)))
        ws.close()
    plain = plain_datasketch(list(enumerate(texts)))
    roots = [plain[i] for i in range(len(rows))]
    from collections import Counter

    sizes = Counter(roots)
    out.append(("plain datasketch (MinHashLSH defaults)", *pair_scores([r if sizes[r] > 1 else None for r in roots], truth)))
    return out, len(rows), sum(t is not None for t in truth)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--plain-n", type=int, default=20_000)
    ap.add_argument("--acc-families", type=int, default=3000)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("_role", nargs="?", help=argparse.SUPPRESS)
    ap.add_argument("_path", nargs="?", help=argparse.SUPPRESS)
    ap.add_argument("_limit", nargs="?", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._role == "ours":
        print(json.dumps(run_ours(Path(args._path), args._limit if args._limit else None)))
        return
    if args._role == "plain":
        print(json.dumps(run_plain(Path(args._path), args._limit)))
        return

    work = args.workdir or Path(tempfile.mkdtemp(prefix="dedup-bench-"))
    big = work / f"ws-{args.n}"
    t = time.perf_counter()
    if not (big / "studio.duckdb").exists():
        build_workspace(big, args.n)
    print(f"built workspace of {args.n:,} samples in {time.perf_counter() - t:.0f}s (not timed below)", file=sys.stderr)
    import shutil

    small = work / f"ws-{args.plain_n}"
    shutil.rmtree(small, ignore_errors=True)
    shutil.copytree(big, small)
    small2 = work / f"ws-{args.plain_n}-ours"
    shutil.rmtree(small2, ignore_errors=True)
    shutil.copytree(big, small2)
    fresh = work / "ws-fresh"
    shutil.rmtree(fresh, ignore_errors=True)
    shutil.copytree(big, fresh)
    me = [sys.executable, __file__]
    ours_full, ours_full_mem = _peak_rss_of(me + ["ours", str(fresh)])
    ours_small, ours_small_mem = _peak_rss_of(me + ["ours", str(small2), str(args.plain_n)])
    plain, plain_mem = _peak_rss_of(me + ["plain", str(small), str(args.plain_n)])
    acc, acc_rows, acc_dup = accuracy(args.acc_families)

    cpu = os.cpu_count()
    lines = [
        f"Machine: {cpu}-core CPU (shared with other jobs while measured), no GPU. Command: "
        f"`.venv/bin/python benches/dedup_bench.py --n {args.n} --plain-n {args.plain_n} --acc-families {args.acc_families}`",
        "",
        "| pipeline | samples | wall s | samples/s (wall) | CPU s | samples per CPU-second | peak RSS (GB, with workers) | clusters | duplicates |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| studio dedup, end to end | {ours_full['samples']:,} | {ours_full['seconds']:.1f} | "
        f"{ours_full['samples'] / ours_full['seconds']:,.0f} | {ours_full['cpu']:.1f} | {ours_full['samples'] / ours_full['cpu']:,.0f} | {ours_full_mem:.2f} | {ours_full['clusters']:,} | {ours_full['duplicates']:,} |",
        f"| studio dedup, prefix | {ours_small['samples']:,} | {ours_small['seconds']:.1f} | "
        f"{ours_small['samples'] / ours_small['seconds']:,.0f} | {ours_small['cpu']:.1f} | {ours_small['samples'] / ours_small['cpu']:,.0f} | {ours_small_mem:.2f} | {ours_small['clusters']:,} | {ours_small['duplicates']:,} |",
        f"| plain datasketch, prefix | {plain['samples']:,} | {plain['seconds']:.1f} | "
        f"{plain['samples'] / plain['seconds']:,.0f} | {plain['cpu']:.1f} | {plain['samples'] / plain['cpu']:,.0f} | {plain_mem:.2f} | {plain['clusters']:,} | {plain['duplicates']:,} |",
        f"| plain datasketch, extrapolated to {args.n:,} | {args.n:,} | {plain['seconds'] * args.n / plain['samples']:,.0f} | "
        f"{plain['samples'] / plain['seconds']:,.0f} | - | - | - | - | - |",
        "",
        f"Speed ratio (studio end to end at {args.n:,} vs plain datasketch): "
        f"**{(ours_full['samples'] / ours_full['seconds']) / (plain['samples'] / plain['seconds']):.1f}x** in wall time, "
        f"**{(ours_full['samples'] / ours_full['cpu']) / (plain['samples'] / plain['cpu']):.1f}x** in CPU time; "
        f"on the same {args.plain_n:,}-sample prefix: "
        f"{plain['seconds'] / ours_small['seconds']:.1f}x (this includes the studio's fixed costs: worker start-up, "
        f"writing clusters and signatures).",
        "",
        f"Accuracy on {acc_rows:,} generated samples ({acc_dup:,} in ground-truth duplicate groups; "
        f"truth = components of pairs with exact Jaccard >= {THRESHOLD} on the same shingles):",
        "",
        "| pipeline | pair precision | pair recall | F1 |",
        "|---|---:|---:|---:|",
    ] + [f"| {name} | {p:.3f} | {r:.3f} | {f:.3f} |" for name, p, r, f in acc]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
