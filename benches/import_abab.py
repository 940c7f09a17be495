"""Alternating launches of `studio import FILE` from two (or more) checkouts, each into a fresh
workspace, beside DuckDB's own `read_json` of the same file into a DuckDB file (the issue's
baseline), in the same round: rounds of baseline, A, B / baseline, B, A ... Each studio import is
its own process (launch to exit); the table gives wall seconds, CPU seconds of the process, the
workspace file's size, and each import's ratio to the baseline of its own round.

    PYTHONPATH=. .venv/bin/python benches/import_abab.py FILE ROUNDS old=DIR,new=DIR

Each DIR is a checkout of the code (e.g. `git worktree add DIR COMMIT`). Results in
benches/results/io.md.
"""
from __future__ import annotations

import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dedup_real  # noqa: E402


def read_json_seconds(src: Path, db: Path | None) -> float:
    """DuckDB's read_json of the file into a table of a new DuckDB file (`db`), committed, or of an
    in-memory database (`db` None): seconds."""
    t = time.perf_counter()
    con = duckdb.connect(str(db) if db is not None else ":memory:")
    con.execute("CREATE TABLE t AS SELECT * FROM read_json(?, format = 'newline_delimited')", [str(src)])
    con.close()
    return time.perf_counter() - t


def main() -> None:
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    src, rounds = Path(sys.argv[1]), int(sys.argv[2])
    roots = {k: Path(v) for k, v in (a.split("=", 1) for a in sys.argv[3].split(","))}
    labels = list(roots)
    rows: list[tuple[int, str, float, float, float, float]] = []  # round, what, secs, cpu, MB, load
    with tempfile.TemporaryDirectory(prefix="import-abab-") as d:
        for r in range(rounds):
            order = labels if r % 2 == 0 else labels[::-1]
            for label in ["read_json", "in_memory", *order]:
                target = Path(d) / "run"
                shutil.rmtree(target, ignore_errors=True)
                target.mkdir()
                load = os.getloadavg()[0]
                r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                if label == "in_memory":
                    c0 = time.process_time()
                    secs = read_json_seconds(src, None)
                    cpu, size = time.process_time() - c0, 0
                elif label == "read_json":
                    c0 = time.process_time()
                    secs = read_json_seconds(src, target / "t.duckdb")
                    cpu = time.process_time() - c0
                    size = (target / "t.duckdb").stat().st_size
                else:
                    secs = dedup_real.studio("--workspace", str(target / "ws"), "import", str(src), "--quiet",
                                             root=roots[label])
                    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                    cpu = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
                    size = (target / "ws" / "studio.duckdb").stat().st_size
                rows.append((r, label, secs, cpu, size / 1e6, load))
                print(f"round {r} {label}: {secs:.2f} s, cpu {cpu:.2f} s, {size / 1e6:,.0f} MB, load {load:.2f}", flush=True)
    base = {r: s for r, what, s, *_ in rows if what == "read_json"}
    mem = {r: s for r, what, s, *_ in rows if what == "in_memory"}
    print(f"\n{src.name}, {rounds} rounds\n")
    print("| round | what | seconds | CPU s | file MB | vs read_json into a file | vs read_json in memory | load 1 min |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r, what, secs, cpu, mb, load in rows:
        studio = what not in ("read_json", "in_memory")
        ratio, ratio_mem = (f"{base[r] / secs:.3f}x", f"{mem[r] / secs:.3f}x") if studio else ("", "")
        print(f"| {r} | {what} | {secs:.2f} | {cpu:.2f} | {mb:,.0f} | {ratio} | {ratio_mem} | {load:.2f} |")
    for label in labels:
        ratios = [base[r] / s for r, what, s, *_ in rows if what == label]
        in_mem = [mem[r] / s for r, what, s, *_ in rows if what == label]
        print(f"\n{label}: median {statistics.median(ratios):.3f}x of read_json into a file ({', '.join(f'{x:.3f}' for x in ratios)}), "
              f"{statistics.median(in_mem):.3f}x of read_json in memory")


if __name__ == "__main__":
    main()
