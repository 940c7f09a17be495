"""How fast the studio feels: start-up to first paint, opening Review at a million samples, and key
press to next sample rendered (idle, and while a CPU-bound worker runs).

    .venv/bin/python benches/studio_bench.py            # writes nothing; prints a markdown table
    .venv/bin/python benches/studio_bench.py --rows 1000000 > benches/results/studio.md

Start-up runs `studio` in a fresh process on a pseudo-terminal (120x40) with
STUDIO_EXIT_AFTER_PAINT, which makes the app exit right after its first frame and report the
seconds since its process started and which heavy ML modules got loaded (none may be).
The million-sample workspace is generated directly with SQL (minutes through the importer).
The in-app timings run the real app headless (`run_test`; the headless driver still composes
and "displays" every frame): a key event goes straight to the driver (Pilot's `press` waits for
the process to look idle, which a busy worker never does), and the time runs until the first
frame painted after the list cursor is on the next sample AND the detail pane shows it.
"Opening Review" is key `2` on Home until the list has its count, first page and the first
sample's detail painted. The CPU-bound worker is a
pure-Python loop in a thread worker (it holds the GIL: the worst case for the UI thread; the real
dedup computes in worker processes).
"""
from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import os
import pty
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_big_workspace(path: Path, rows: int) -> None:
    from curation.workspace import open_workspace

    with open_workspace(path) as ws:
        ws.con.execute(
            """INSERT INTO samples (id, kind, messages, instruction, answer, status, lang, source_file, content_hash, search_text)
               SELECT i, 'chat',
                      json_array(json_object('role', 'user', 'content', 'Question number ' || i || ': explain topic ' || (i % 977)),
                                 json_object('role', 'assistant', 'content', 'Answer ' || i || ' with some words about topic ' || (i % 977))),
                      'Question number ' || i || ': explain topic ' || (i % 977),
                      'Answer ' || i || ' with some words about topic ' || (i % 977),
                      CASE WHEN i % 10 = 0 THEN 'approved' WHEN i % 17 = 0 THEN 'rejected' ELSE 'pending' END,
                      CASE WHEN i % 3 = 0 THEN 'zh' ELSE 'en' END,
                      'gen/part-' || (i % 8) || '.jsonl', md5(i::VARCHAR),
                      lower('question number ' || i)
               FROM range(1, ? + 1) t(i)""",
            [rows],
        )
        ws.con.execute("CHECKPOINT")


def startup_once(workspace: Path, screen_args: list[str]) -> dict:
    out = Path(tempfile.mktemp(suffix=".json"))
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = dict(os.environ, STUDIO_EXIT_AFTER_PAINT=str(out), TERM="xterm-256color", COLORTERM="")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "studio.cli", "--workspace", str(workspace), *screen_args],
                            stdin=slave, stdout=slave, stderr=slave, env=env, cwd=ROOT, close_fds=True)
    os.close(slave)
    # drain the terminal output so the app never blocks on a full pty
    while proc.poll() is None:
        try:
            os.read(master, 65536)
        except OSError:
            break
    proc.wait()
    wall = time.perf_counter() - t0
    os.close(master)
    data = json.loads(out.read_text())
    out.unlink()
    data["wall_to_exit"] = wall
    return data


async def in_app(workspace: Path, presses: int) -> dict:
    from textual import events

    from studio.app import StudioApp
    from studio.widgets.sample_list import SampleList

    results: dict = {}
    app = StudioApp(workspace)
    paints: list[float] = [0.0]
    real_display = app._display

    def display(screen, renderable):  # record when each frame reaches the (headless) terminal
        real_display(screen, renderable)
        paints.append(time.perf_counter())

    app._display = display

    def press(key: str) -> None:
        app._driver.send_message(events.Key(key, key if len(key) == 1 else None))

    async def painted_after(cond) -> None:
        while not cond():
            await asyncio.sleep(0.0005)
        ready = time.perf_counter()
        while paints[-1] < ready:
            await asyncio.sleep(0.0005)

    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.5)
        await app.workers.wait_for_complete()

        def shown_id():
            d = app.screen.query_one("#sample-view").shown
            return None if d is None else d.id

        def review_ready() -> bool:
            lst = app.screen.query(SampleList)
            return bool(lst) and lst.first().loaded and lst.first().current is not None and shown_id() == lst.first().current.id

        t0 = time.perf_counter()
        press("2")
        await painted_after(review_ready)
        results["open_review_s"] = time.perf_counter() - t0
        lst = app.screen.query_one(SampleList)
        results["total"] = lst.total

        async def walk(n: int) -> list[float]:
            times = []
            for _ in range(n):
                target = lst.cursor + 1
                t = time.perf_counter()
                press("j")
                await painted_after(lambda target=target: lst.current is not None and lst.cursor == target and shown_id() == lst.current.id)
                times.append(time.perf_counter() - t)
                await asyncio.sleep(0.05)  # a person's key repeat is slower than the loop
            return times

        results["idle"] = await walk(presses)

        stop = False

        def burn() -> None:  # pure Python: holds the GIL between switches
            x = 0
            while not stop:
                for i in range(10_000):
                    x += i * i

        app.run_worker(burn, thread=True, group="bench-burn")
        await asyncio.sleep(0.2)
        results["busy"] = await walk(presses)
        stop = True
        # jump far: End, then measure a press there (page_at with a large OFFSET)
        t = time.perf_counter()
        press("G")
        await painted_after(lambda: lst.current is not None and shown_id() == lst.current.id and lst.cursor == lst.total - 1)
        results["jump_end_s"] = time.perf_counter() - t
    return results


def p95(xs: list[float]) -> float:
    return sorted(xs)[int(0.95 * (len(xs) - 1))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--presses", type=int, default=100)
    ap.add_argument("--starts", type=int, default=5)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="studio-bench-"))
    small, big = tmp / "small", tmp / "big"
    sys.path.insert(0, str(ROOT / "tests"))
    from tests._studio_ws import make_workspace

    make_workspace(small)
    t = time.perf_counter()
    make_big_workspace(big, args.rows)
    gen_s = time.perf_counter() - t

    starts = {name: [startup_once(ws, extra) for _ in range(args.starts)]
              for name, ws, extra in [("small, Home", small, []), (f"{args.rows:,}, Home", big, [])]}
    app_results = asyncio.run(in_app(big, args.presses))

    print(f"# Studio responsiveness\n\nMachine: 2-core CPU, no GPU (shared with other work). Command: "
          f"`.venv/bin/python benches/studio_bench.py --rows {args.rows}`. Workspace of {args.rows:,} samples "
          f"generated by SQL in {gen_s:.1f} s.\n")
    print("## Start-up to first painted screen (fresh process, 120x40 pty)\n")
    print("| workspace | median s since process start | max | wall to exit | target | heavy ML modules loaded |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for name, runs in starts.items():
        secs = [r["seconds"] for r in runs]
        heavy = sorted({m for r in runs for m in r["heavy_modules"]}) or ["none"]
        print(f"| {name} | {statistics.median(secs):.2f} | {max(secs):.2f} | "
              f"{statistics.median(r['wall_to_exit'] for r in runs):.2f} | 0.60 | {', '.join(heavy)} |")
    idle, busy = app_results["idle"], app_results["busy"]
    print(f"\n## At {app_results['total']:,} samples (Pilot, 120x40)\n")
    print("| measure | value | target | ratio to target |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| open Review (key `2` to count + first page + first sample shown) | {app_results['open_review_s'] * 1000:.0f} ms | 1000 ms | {app_results['open_review_s']:.2f} |")
    for label, xs in (("idle", idle), ("CPU-bound Python thread worker running", busy)):
        print(f"| `j` to next sample rendered, p50, {label} | {statistics.median(xs) * 1000:.1f} ms | | |")
        print(f"| `j` to next sample rendered, p95, {label} | {p95(xs) * 1000:.1f} ms | 50 ms | {p95(xs) / 0.05:.2f} |")
    print(f"| busy p95 / idle p95 | {p95(busy) / p95(idle):.2f}x | | |")
    print(f"| `G` (jump to the last of {app_results['total']:,}) to that sample shown | {app_results['jump_end_s'] * 1000:.0f} ms | | |")
    print(f"\n{len(idle)} presses each. Load average at the end (2 cores): {open('/proc/loadavg').read().split()[0]}.")


if __name__ == "__main__":
    main()
