"""Augmentation throughput and client overhead against a real HTTP server (tests/llm_server.py,
run in its own process so it does not share the client's GIL).

1,000 requests at concurrency 32 with 200 ms of server latency: the bound is 32 / 0.2 = 160 req/s.
Two clients: the bare `ProviderClient` (retry/rate-limit wrapper around openai.AsyncOpenAI) and a
full augment job (`curation.augment.jobs.run`, judge over 1,000 samples: cache lookups, one DuckDB
transaction per answer, progress). With 0 latency the same runs measure the client's CPU cost per
request (process CPU time / requests; the server's CPU is in the other process).

    .venv/bin/python benches/augment_bench.py [--requests 1000] [--concurrency 32] [--latency 0.2]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.llm_server", "--latency", str(latency)], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    url = proc.stdout.readline().strip()
    return proc, url


def bench_client(url: str, n: int, concurrency: int) -> tuple[float, float]:
    from curation.augment.client import ProviderClient
    from curation.augment.providers import Provider

    p = Provider(name="bench", base_url=url, model="m", api_key_env=None, concurrency=concurrency)

    async def main() -> None:
        client = ProviderClient(p)
        try:
            await asyncio.gather(*(client.complete([{"role": "user", "content": f"question {i}"}], {"max_tokens": 16})
                                   for i in range(n)))
        finally:
            await client.aclose()

    asyncio.run(_warm(url))
    c0, t0 = time.process_time(), time.perf_counter()
    asyncio.run(main())
    return time.perf_counter() - t0, time.process_time() - c0


async def _warm(url: str) -> None:
    import openai  # import cost stays out of the timings

    c = openai.AsyncOpenAI(base_url=url, api_key="x", max_retries=0)
    await c.chat.completions.with_raw_response.create(model="m", messages=[{"role": "user", "content": "warm"}])
    await c.close()


def bench_job(url: str, n: int, concurrency: int) -> tuple[float, float]:
    from curation import samples, store
    from curation.augment.jobs import Spec, run
    from curation.augment.providers import Provider, add_provider
    from curation.workspace import open_workspace

    with tempfile.TemporaryDirectory() as d:
        ws = open_workspace(Path(d) / "ws")
        with ws.transaction():
            store.insert_samples(ws.con, [samples.chat(f"Question {i}: explain item {i}", f"Answer {i}.") for i in range(n)])
        add_provider(ws, Provider(name="bench", base_url=url, model="m", api_key_env=None, concurrency=concurrency))
        asyncio.run(_warm(url))
        c0, t0 = time.process_time(), time.perf_counter()
        result = run(ws, Spec(op="judge", checks=False))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        assert result.judged == n, result
        ws.close()
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--latency", type=float, default=0.2)
    a = ap.parse_args()
    bound = a.concurrency / a.latency
    rows = []
    for latency in (a.latency, 0.0):
        proc, url = start_server(latency)
        try:
            for name, fn in (("ProviderClient (openai + retries + limits)", bench_client),
                             ("augment job (judge: cache, DuckDB writer thread)", bench_job)):
                wall, cpu = fn(url, a.requests, a.concurrency)
                rows.append((latency, name, wall, a.requests / wall, cpu / a.requests * 1000))
        finally:
            proc.stdin.close()
            proc.wait(10)
    print(f"# augment throughput: {a.requests:,} requests, concurrency {a.concurrency}\n")
    print(f"machine: {os.cpu_count()}-core CPU, no GPU, Python {platform.python_version()}; server in its own process")
    print(f"command: .venv/bin/python benches/augment_bench.py --requests {a.requests} --concurrency {a.concurrency} "
          f"--latency {a.latency}\n")
    print("| server latency | client | wall s | req/s | vs bound 32/latency | client CPU ms/request |")
    print("| --- | --- | --- | --- | --- | --- |")
    for latency, name, wall, rps, cpu_ms in rows:
        vs = f"{rps / bound:.1%} of {bound:.0f}" if latency else "n/a"
        print(f"| {latency * 1000:.0f} ms | {name} | {wall:.2f} | {rps:.1f} | {vs} | {cpu_ms:.2f} |")
    client = {lat: r for lat, n, *r in [(x[0], x[1], x[3], x[4]) for x in rows] if n.startswith("Provider")}
    job0 = [x for x in rows if x[0] == 0.0 and x[1].startswith("augment")][0]
    cl0 = [x for x in rows if x[0] == 0.0 and x[1].startswith("Provider")][0]
    print(f"\nAt 0 ms latency the full job costs {job0[4] / cl0[4]:.2f}x the bare client's CPU per request "
          f"({job0[4] - cl0[4]:.2f} ms more: cache rows, judge scores, usage, batched by the writer thread).")
    del client


if __name__ == "__main__":
    main()
