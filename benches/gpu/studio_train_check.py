"""The trainer's GPU check (issue 5): a Qwen2.5-7B-shaped model (random weights) trained through
`studio train` itself, LoRA and QLoRA, and the plan's memory estimate set beside the measured peak.

For each variant it runs, in a fresh workspace:
  studio -w WS train SPLIT --base tiny --set tiny.architecture=qwen2.5-7b --set train.max_steps=N
         [--preset P] [--method M] --plan --json        (the estimate)
  studio -w WS train SPLIT ... --foreground --json      (the run: metrics.jsonl, status.json)
then reads the run's metrics.jsonl (gpu_mem_gb = peak allocated, gpu_reserved_gb, tokens_per_s, mfu)
and prints one table. The 15 GB random base each run builds in RUN_DIR/base is deleted afterwards.

    python benches/gpu/studio_train_check.py --split SPLIT_DIR --steps 10 --out DIR \
        --variants seed:lora,seed:qlora,fast:lora,lean:qlora

Runs on a GPU box that has the trainer's packages (no duckdb or textual needed: `studio train` on a
split directory never opens the workspace database).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def studio(ws: Path, *args: str, log: Path | None = None, timeout: float | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "studio.cli", "-w", str(ws), *args]
    if log is None:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    with open(log, "w") as f:
        return subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, text=True, timeout=timeout)


def check(variant: str, split: str, steps: int, arch: str, out: Path, timeout: float | None,
          sets: list[str] = ()) -> dict:
    preset, method = variant.split(":")
    ws = out / f"ws-{preset}-{method}"
    ws.mkdir(parents=True, exist_ok=True)
    common = [split, "--base", "tiny", "--preset", preset, "--method", method,
              *(["--set", f"tiny.architecture={arch}"] if arch else []), "--set", f"train.max_steps={steps}",
              "--set", "train.eval_steps=1000", "--set", "train.save_steps=1000",
              "--set", "train.logging_steps=1"]
    for kv in sets:
        common += ["--set", kv]
    plan_p = studio(ws, "train", *common, "--plan", "--json")
    if plan_p.returncode not in (0, 1):
        return {"variant": variant, "error": f"plan exit {plan_p.returncode}: {plan_p.stderr[-400:]}"}
    plan = json.loads(plan_p.stdout)
    name = f"check-{preset}-{method}"
    t = time.time()
    try:
        p = studio(ws, "train", *common, "--foreground", "--name", name, log=out / f"{name}.log", timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        rc = "timeout"
    wall = time.time() - t
    run = ws / "runs" / name
    shutil.rmtree(run / "base", ignore_errors=True)
    status = json.loads((run / "status.json").read_text()) if (run / "status.json").is_file() else {}
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()] if (run / "metrics.jsonl").is_file() else []
    for f in ("metrics.jsonl", "status.json", "config.yaml"):
        if (run / f).is_file():
            shutil.copy(run / f, out / f"{name}.{f}")
    pts = [r for r in lines if "loss" in r and "step" in r]
    later = [r for r in pts if r["step"] > 2]
    est = plan["memory_gb"][method]
    res = {"variant": variant, "rc": rc, "state": status.get("state"), "steps": status.get("step"), "wall_s": round(wall, 1),
           "plan_gb": round(est["total_gb"], 2), "plan": est,
           "peak_alloc_gb": max((r.get("gpu_mem_gb") or 0) for r in pts) if pts else None,
           "peak_reserved_gb": max((r.get("gpu_reserved_gb") or 0) for r in pts) if pts else None,
           "tokens_per_s": statistics.median(r["tokens_per_s"] for r in later if r.get("tokens_per_s")) if later else None,
           "mfu": statistics.median(r["mfu"] for r in later if r.get("mfu")) if later and any(r.get("mfu") for r in later) else None,
           "losses": [r["loss"] for r in pts], "start": next((r for r in lines if r.get("event") == "start"), None)}
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", required=True, help="split directory (docs/contracts.md)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--arch", default="qwen2.5-7b", help="a name in training.plan.SHAPES, or '' for the built-in "
                    "tiny model (a CPU smoke run of this script)")
    ap.add_argument("--variants", default="seed:lora,seed:qlora")
    ap.add_argument("--timeout", type=float, default=None)
    ap.add_argument("--out", default="check-out")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="extra config KEY=VALUE for every run")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for v in a.variants.split(","):
        r = check(v, str(Path(a.split).resolve()), a.steps, a.arch, out, a.timeout, a.sets)
        results.append(r)
        print(json.dumps({k: v for k, v in r.items() if k not in ("losses", "plan", "start")}), flush=True)
        (out / "check.json").write_text(json.dumps(results, indent=1))
    import torch

    card = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(f"\n{a.arch or 'tiny'} (random weights) through `studio train`, {a.steps} steps, card {card}\n")
    print("| preset:method | state | plan GB | peak allocated GB | plan / measured | peak reserved GB | tokens/s | MFU |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        if "error" in r:
            print(f"| {r['variant']} | {r['error'][:80]} | | | | | | |")
            continue
        ratio = f"{r['plan_gb'] / r['peak_alloc_gb']:.3f}" if r.get("peak_alloc_gb") else ""
        tps = f"{r['tokens_per_s']:,.0f}" if r.get("tokens_per_s") else ""
        mfu = f"{r['mfu']:.1%}" if r.get("mfu") else ""
        print(f"| {r['variant']} | {r['state']} ({r['steps']}) | {r['plan_gb']:.2f} | {r.get('peak_alloc_gb')} | {ratio} | "
              f"{r.get('peak_reserved_gb')} | {tps} | {mfu} |")


if __name__ == "__main__":
    main()
