"""N rows through the whole curation pipeline, each stage a fresh process: time and peak memory.

    PYTHONPATH=. .venv/bin/python benches/scale_rows.py --rows 100000 1000000 [--duckdb-memory 4GB]

Rows: benches/io_speed.py's generator (real-length bilingual alpaca JSON Lines: ~15% Chinese,
~650-character answers, built from a few hundred real answers with edits, so every answer has
rows/300 edited near copies: large near-duplicate families), or with `--realistic GIT_DIR`
benches/dedup_data.py's (rows composed from a LLaMA-Factory snapshot's real sentences: mostly
unique, 15% in planted families of 2-30).

Stages, each `sys.executable` in its own process through the real CLI, one after another on one
workspace: `studio import`, `studio dedup`, a review read (this file with `--review WS`:
curation.browse.page keyset-paged over every row by id, 100 a page, the review list's page),
`studio export v1 --include approved+pending`, `studio quality` (last: the longest).

With `--memory-cap 8G` every stage runs in a memory cgroup of its own with that limit
(benches/cgroup_cap.py: the kernel enforces it, and kills a stage whose anonymous memory does not
fit); the table then adds each stage's peak anonymous memory in the group and its peak charge
(page cache included). `--skip quality` leaves a stage out (at 10M rows `studio quality` alone
takes ~45 minutes on 2 cores).

Per stage: wall seconds; peak RSS of the largest process (os.wait4's ru_maxrss: the stage's
process or its largest worker); peak RSS of the whole process tree, summed (psutil, sampled every
0.2 s; '-' without psutil); the workspace folder's size after it. DuckDB's memory_limit is set with
$STUDIO_DUCKDB_MEMORY (curation/workspace.py) and read back from an opened workspace.

With two or more sizes it also prints, for the largest sizes, each stage's growth exponent
(t ~ rows^k) and an extrapolation to --extrapolate rows (default 10M): an extrapolation, not a run.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benches.cgroup_cap import CapUnavailable, MemoryCap, parse_size  # noqa: E402

PAGE = 100


@dataclass
class Stage:
    name: str
    seconds: float
    max_rss_mb: float       # largest single process
    tree_rss_mb: float | None  # whole process tree, summed, sampled
    ws_mb: float            # workspace folder after the stage
    anon_mb: float | None = None    # under --memory-cap: the cgroup's peak anonymous memory
    charge_mb: float | None = None  # under --memory-cap: the cgroup's peak charge (page cache included)


def _tree_rss(pid: int) -> float | None:
    try:
        import psutil
    except ImportError:
        return None
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


def _folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6 if path.exists() else 0.0


def run_stage(name: str, argv: list[str], ws: Path, env: dict[str, str], cap: MemoryCap | None = None) -> Stage:
    t = time.perf_counter()
    if cap is not None:
        cap.start()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=cap.enter if cap is not None else None)
    peak: list[float | None] = [None]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            rss = _tree_rss(proc.pid)
            if rss is not None:
                peak[0] = max(peak[0] or 0.0, rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    # threads drain the pipes; wait4 reaps the child and gives its own rusage (Popen.wait would not)
    stdout_chunks: list[str] = []
    stderr_chunks: list[str] = []
    readers = [threading.Thread(target=lambda s=s, c=c: c.append(s.read()), daemon=True)
               for s, c in ((proc.stdout, stdout_chunks), (proc.stderr, stderr_chunks))]
    for r in readers:
        r.start()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t
    done.set()
    for r in readers:
        r.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if cap is not None:
        cap.stop()
    if proc.returncode != 0:
        killed = f" (killed for memory: {cap.oom_kills()} OOM kill(s) under the {cap.limit / 2**30:.1f} GiB cap)" \
            if cap is not None and cap.oom_kills() else ""
        raise SystemExit(f"{name} failed (exit {proc.returncode}){killed} after {seconds:.0f} s: {' '.join(argv)}\n"
                         f"{''.join(stderr_chunks)[-2000:]}")
    stage = Stage(name, seconds, usage.ru_maxrss / 1024, peak[0], _folder_mb(ws))
    if cap is not None:
        charge = cap.charge_peak()
        stage.anon_mb, stage.charge_mb = cap.anon_peak / 2**20, None if charge is None else charge / 2**20
    return stage


def review_read(ws_dir: str) -> None:
    """Page through every sample by id, as the review list scrolls (the `--review` stage)."""
    from curation import browse
    from curation.workspace import open_workspace

    ws = open_workspace(ws_dir, create=False, read_only=True)
    after = None
    seen = 0
    while True:
        rows = browse.page(ws.con, after_id=after, limit=PAGE)
        if not rows:
            break
        seen += len(rows)
        after = rows[-1].id
    total = browse.count(ws.con)
    ws.close()
    if seen != total:
        raise SystemExit(f"review read saw {seen:,} rows of {total:,}")
    print(seen)


def memory_limit(ws: Path, env: dict[str, str], cap: MemoryCap | None = None) -> str:
    """DuckDB's memory_limit as an opened workspace reports it (in a fresh process, same env, in
    the memory cap when there is one: DuckDB sizes its default from the cgroup's limit)."""
    code = ("import sys; from curation.workspace import open_workspace; "
            "ws = open_workspace(sys.argv[1], create=False, read_only=True); "
            "print(ws.con.execute(\"SELECT current_setting('memory_limit')\").fetchall()[0][0])")
    return subprocess.run([sys.executable, "-c", code, str(ws)], env=env, check=True, capture_output=True, text=True,
                          preexec_fn=cap.enter if cap is not None else None).stdout.strip()


# quality last: at 10M rows it takes most of an hour, and the other stages' numbers come first
STAGES = ("import", "dedup", "review", "export", "quality")


def measure(rows: int, tmp: Path, env: dict[str, str], realistic: Path | None = None, cap: MemoryCap | None = None,
            skip: tuple[str, ...] = ()) -> tuple[list[Stage], str, dict[str, float]]:
    src = tmp / f"alpaca-{rows}.jsonl"
    t = time.perf_counter()
    if realistic is not None:  # benches/dedup_data.py: mostly unique rows, 15% in planted families of 2-30
        from benches.dedup_data import generate as realistic_rows
        from benches.dedup_data import resolve_commit

        shape = realistic_rows(src, rows, realistic, resolve_commit(realistic, "HEAD"))
    else:
        from benches.io_speed import generate

        shape = generate(src, rows)
    shape["generate_s"] = time.perf_counter() - t
    shape["mb"] = src.stat().st_size / 1e6
    ws = tmp / f"ws-{rows}"
    studio = [sys.executable, "-m", "studio"]
    common = ["-w", str(ws), "-q"]
    argv = {
        "dedup": ("studio dedup", studio + ["dedup", *common]),
        "quality": ("studio quality", studio + ["quality", *common]),
        "review": ("review read (keyset pages)", [sys.executable, __file__, "--review", str(ws)]),
        "export": ("studio export", studio + ["export", "v1", "--include", "approved+pending", "-w", str(ws)]),
    }
    stages = [run_stage("studio import", studio + ["import", str(src), *common], ws, env, cap)]
    src.unlink()  # the disk it held is the next stages' (10M rows: ~10 GB)
    _progress(stages[-1])
    limit = memory_limit(ws, env, cap)
    for key in STAGES[1:]:
        if key not in skip:
            stages.append(run_stage(*argv[key], ws, env, cap))
            _progress(stages[-1])
    return stages, limit, shape


def _progress(s: Stage) -> None:
    """A stage's line as it finishes (a 10M run takes most of an hour)."""
    mem = f", anon {s.anon_mb:,.0f} MB in the cap" if s.anon_mb is not None else ""
    print(f"  {s.name}: {s.seconds:.1f} s, largest process {s.max_rss_mb:,.0f} MB{mem}", flush=True)


def _mb(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def table(rows: int, stages: list[Stage]) -> str:
    capped = any(s.anon_mb is not None for s in stages)
    extra = " peak anonymous, in the cap (MB) | peak charge, page cache included (MB) |" if capped else ""
    lines = ["| stage | seconds | rows/s | peak RSS, largest process (MB) | peak RSS, process tree (MB) | workspace after (MB) |"
             + extra,
             "| --- | ---: | ---: | ---: | ---: | ---: |" + (" ---: | ---: |" if capped else "")]
    for s in stages:
        cells = f" {_mb(s.anon_mb)} | {_mb(s.charge_mb)} |" if capped else ""
        lines.append(f"| {s.name} | {s.seconds:.1f} | {rows / s.seconds:,.0f} | {_mb(s.max_rss_mb)} | "
                     f"{_mb(s.tree_rss_mb)} | {s.ws_mb:,.0f} |" + cells)
    total = sum(s.seconds for s in stages)
    cells = f" {_mb(max((s.anon_mb or 0) for s in stages))} | {_mb(max((s.charge_mb or 0) for s in stages))} |" if capped else ""
    lines.append(f"| all stages | {total:.1f} | {rows / total:,.0f} | {_mb(max(s.max_rss_mb for s in stages))} | "
                 f"{_mb(max((s.tree_rss_mb or 0) for s in stages) or None)} | |" + cells)
    return "\n".join(lines)


def extrapolate(small: tuple[int, list[Stage]], big: tuple[int, list[Stage]], target: int) -> str:
    """Each stage's time and memory at `target` rows, from the growth between two measured sizes
    (t ~ rows^k, k from the two points), and time if it grew linearly from the larger size (a k
    below 1 is mostly fixed start-up cost fading: linear is the safer guess). Memory capped by
    DuckDB's memory_limit does not follow the fit. An extrapolation, not a measurement."""
    (n1, a), (n2, b) = small, big
    f = math.log(target / n2)
    g = math.log(n2 / n1)
    lines = [f"Extrapolated to {target:,} rows from {n1:,} and {n2:,} (t ~ rows^k; NOT a run):", "",
             "| stage | k (time) | seconds | seconds if linear (k=1) | k (tree RSS) | peak RSS, process tree (MB) |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for x, y in zip(a, b):
        k = math.log(y.seconds / x.seconds) / g if x.seconds > 0 else 1.0
        mx, my = x.tree_rss_mb or x.max_rss_mb, y.tree_rss_mb or y.max_rss_mb
        km = math.log(my / mx) / g if mx > 0 else 1.0
        lines.append(f"| {y.name} | {k:.2f} | {y.seconds * math.exp(k * f):,.0f} | {y.seconds * target / n2:,.0f} | {km:.2f} | "
                     f"{my * math.exp(km * f):,.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000])
    ap.add_argument("--duckdb-memory", default="4GB", help="STUDIO_DUCKDB_MEMORY for every stage ('' for DuckDB's default)")
    ap.add_argument("--extrapolate", type=int, default=10_000_000, help="rows to extrapolate to (with 2+ sizes)")
    ap.add_argument("--realistic", metavar="GIT_DIR", type=Path,
                    help="rows from benches/dedup_data.py (a LLaMA-Factory git snapshot's demo files: mostly unique "
                         "rows, small planted near-duplicate families) instead of io_speed's giant families")
    ap.add_argument("--memory-cap", metavar="SIZE", help="run every stage in a memory cgroup with this limit (e.g. 8G; "
                    "Linux, root): benches/cgroup_cap.py")
    ap.add_argument("--skip", nargs="*", default=[], choices=STAGES[1:], help="stages to leave out")
    ap.add_argument("--workdir", type=Path, help="keep the data and workspaces here (default: a temporary folder, "
                    "removed at the end); a failed stage can then be run again by hand")
    ap.add_argument("--review", metavar="WS", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.review:
        review_read(args.review)
        return
    import duckdb

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env["STUDIO_DUCKDB_MEMORY"] = args.duckdb_memory
    if not args.duckdb_memory:
        env.pop("STUDIO_DUCKDB_MEMORY")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; DuckDB {duckdb.__version__}; "
          f"STUDIO_DUCKDB_MEMORY={args.duckdb_memory or '(unset)'}")
    cap = None
    if args.memory_cap:
        try:
            cap = MemoryCap.create(parse_size(args.memory_cap))
        except (CapUnavailable, ValueError) as exc:
            raise SystemExit(f"scale_rows: --memory-cap {args.memory_cap}: {exc}") from None
        print(f"every stage runs in the memory cgroup {cap.path} (limit {cap.limit / 2**30:.2f} GiB, no swap)")
    results: list[tuple[int, list[Stage]]] = []
    try:
        with contextlib.nullcontext(str(args.workdir)) if args.workdir else tempfile.TemporaryDirectory() as tmp_name:
            Path(tmp_name).mkdir(parents=True, exist_ok=True)
            for rows in args.rows:
                stages, limit, shape = measure(rows, Path(tmp_name), env, args.realistic, cap, tuple(args.skip))
                results.append((rows, stages))
                print(f"\n## {rows:,} rows ({shape['mb']:,.0f} MB JSONL, {shape['zh_share']:.1%} Chinese, mean answer "
                      f"{shape['mean_answer_chars']:,.0f} chars; generated in {shape['generate_s']:.0f} s); "
                      f"DuckDB memory_limit {limit}; load average {os.getloadavg()[0]:.1f}\n")
                print(table(rows, stages), flush=True)
    finally:
        if cap is not None:
            cap.remove()
    if len(results) >= 2:
        print()
        print(extrapolate(results[-2], results[-1], args.extrapolate))


if __name__ == "__main__":
    main()
