"""Import speed: `import_paths` on a generated 1M-row alpaca JSONL beside DuckDB's own `read_json`
of the same file, in one run. Target (issue 2): the import reaches at least half of read_json's
rows/s.

    .venv/bin/python benches/import_bench.py [--rows 1000000] [--threads N]

Prints a markdown table: seconds, rows/s, ratio to read_json, peak RSS (of this process, which
does both, so the import's peak is the max of the two rows).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import tempfile
import time
from pathlib import Path

WORDS = ("the model data train answer question sort list python function return value quick "
         "explain summary translate write code review memory batch token layer").split()
HAN = "数据模型训练排序列表函数返回值快速问题回答翻译总结代码显存批次学习率验证"


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """Alpaca rows like real ones: a third Chinese (with full-width punctuation), 1 in 4 with an input."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(rows):
            if i % 3 == 0:
                ins = "请解释" + "".join(rng.choice(HAN) for _ in range(rng.randint(6, 20))) + "？"
                out = "，".join("".join(rng.choice(HAN) for _ in range(rng.randint(5, 15))) for _ in range(rng.randint(2, 6))) + "。"
            else:
                ins = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 15))).capitalize() + "?"
                out = " ".join(rng.choice(WORDS) for _ in range(rng.randint(15, 60))) + "."
            rec = {"id": f"r{i}", "instruction": ins, "input": f"input {i}" if i % 4 == 0 else "", "output": out}
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--threads", type=int, default=0, help="DuckDB threads for both (0: DuckDB's default)")
    args = ap.parse_args()

    import duckdb

    from curation.importers import import_paths
    from curation.workspace import open_workspace

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "alpaca.jsonl"
        generate(src, args.rows)
        size_mb = src.stat().st_size / 1e6
        src.read_bytes()  # warm the page cache for both contenders

        con = duckdb.connect()
        if args.threads:
            con.execute(f"SET threads = {args.threads}")
        t = time.perf_counter()
        con.execute("CREATE TABLE t AS SELECT * FROM read_json(?)", [str(src)])
        base_s = time.perf_counter() - t
        assert con.execute("SELECT count(*) FROM t").fetchone()[0] == args.rows
        con.close()
        rss_base = peak_rss_mb()

        ws = open_workspace(Path(tmp) / "ws")
        if args.threads:
            ws.con.execute(f"SET threads = {args.threads}")
        t = time.perf_counter()
        report = import_paths(ws, [src])
        import_s = time.perf_counter() - t
        assert report.rows_imported == args.rows and report.files[0].fast_path
        ws.close()
        rss_import = peak_rss_mb()

    cpu = platform.processor() or platform.machine()
    print(f"{args.rows:,} alpaca rows, {size_mb:.0f} MB JSONL; {os.cpu_count()} CPUs ({cpu}); "
          f"DuckDB threads: {args.threads or 'default'}\n")
    print("| what | seconds | rows/s | vs read_json | peak RSS MB |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print(f"| DuckDB `read_json` into an in-memory table | {base_s:.2f} | {args.rows / base_s:,.0f} | 1.00 | {rss_base:,.0f} |")
    print(f"| `import_paths` into a workspace (fast path, committed) | {import_s:.2f} | {args.rows / import_s:,.0f} | "
          f"{base_s / import_s:.2f} | {rss_import:,.0f} |")


if __name__ == "__main__":
    main()
