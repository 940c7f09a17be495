"""The seed's recipe beside the studio's trainer presets: same shapes, same data, one run, one card.

Shapes: Qwen2.5-7B (or 14B) with random weights (speed and memory do not depend on the values),
sequence 1024, micro-batch 2, grad-accum 4, LoRA r=16 on q/k/v/o as the seed. Data: the seed
baseline script's rows of 100-500 random token ids, packed to 1024.

The seed side runs `probe_variants.py` (shared/bench/seed_recipe_baseline.py plus knobs left at
their defaults, seeded weights and full loss lists);
the studio side builds its trainer from a named preset through the same functions `studio train`
uses (training.recipe + training.speed), in a fresh process per variant so peak memory is clean.

    python benches/gpu/train_bench.py --seed-script PATH --variants seed-lora,fast --steps 50 --out DIR

Prints a markdown table (tokens/s, peak GB, MFU, first losses, ratios vs the seed) and writes
DIR/bench.json. Tokens/s counts packed tokens: steps x micro-batch x grad-accum x 1024.
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
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

# variant -> (runner, preset or seed mode, arch). Any other name is a studio variant spelled
# PRESET[-14b][+KEY=VALUE...], e.g. fast+train.compile_layers=true+train.liger_kernel=off; a KEY
# of args.NAME sets a Trainer argument (fast+args.dataloader_prefetch_factor=2), one of
# mod.MODULE.NAME a module's switch (fast+mod.training.lora_fused.FUSE_OUTPUT=false).
VARIANTS = {
    "seed-lora": ("seed", "lora", "7b"),
    "seed-qlora": ("seed", "qlora", "7b"),
    "seed-qlora-14b": ("seed", "qlora", "14b"),
    "fast-1gpu": ("studio", "fast", "7b"),
    "fast-2gpu": ("torchrun2", "fast", "7b"),
}
SEED_LOSSES = ROOT / "benches" / "results" / "gpu_seed_losses.json"


def parse_variant(name: str) -> tuple[str, str, str]:
    """(runner, preset spec, arch) of a variant name."""
    if name in VARIANTS:
        return VARIANTS[name]
    head, *sets = name.split("+")
    arch = "7b"
    if head.endswith("-14b"):
        head, arch = head[:-4], "14b"
    runner = "studio"
    if head.endswith("-2gpu"):
        head, runner = head[:-5], "torchrun2"
    return runner, "+".join([head, *sets]), arch


def file_stem(name: str) -> str:
    """A file name for a variant; a long one is cut and keeps a hash of the whole, so two variants
    that differ only past the cut do not overwrite each other's files."""
    import hashlib

    stem = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
    return stem if len(stem) <= 100 else stem[:91] + "-" + hashlib.sha1(name.encode()).hexdigest()[:8]


def run_seed(mode: str, arch: str, steps: int, warmup: int, seed_script: str, out: Path,
             timeout: float | None = None, log_every: int = 1) -> dict:
    res = out / f"seed-{mode}-{arch}.json"
    cmd = [sys.executable, seed_script, "--arch", arch, "--mode", mode, "--steps", str(steps),
           "--warmup", str(warmup), "--out", str(res)] + (["--log-every", str(log_every)] if log_every != 1 else [])
    subprocess.run(cmd, check=True, stdout=open(out / f"seed-{mode}-{arch}.log", "w"), stderr=subprocess.STDOUT,
                   timeout=timeout)
    d = json.loads(res.read_text())
    return {"tokens_per_s": d["tokens_per_s"], "peak_gb": d["peak_alloc_gb"], "losses": d.get("all_losses") or d["losses"],
            "model_tflops": d["model_tflops"], "gpu": d["gpu"], "arch": arch, "method": mode}


def run_studio_child(preset: str, arch: str, steps: int, warmup: int, out_json: str, log_every: int = 1) -> None:
    """In a fresh process: the studio's trainer from `preset` on the random model and rows."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    sys.path.insert(0, str(HERE))
    import _dev  # device calls with CPU stand-ins (benches/gpu/_dev.py)
    from probe_variants import (  # the seed script's tokenizer, FLOP count, clock
        ARCHS_param_count,
        Timer,
        make_tokenizer,
    )

    from training import recipe, speed
    from training.config import load_config

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and _dev.CUDA:  # under torchrun: one process per GPU, DDP through the Trainer
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    name, *sets = preset.split("+")
    sets = ["train.compile_layers=true" if x == "compile" else x for x in sets]
    # args.KEY=VALUE: a Trainer argument over what the recipe chose (e.g. args.dataloader_prefetch_factor=2)
    import yaml

    trainer_args = {k.removeprefix("args."): yaml.safe_load(v) for k, v in
                    (x.split("=", 1) for x in sets if x.startswith("args."))}
    # mod.PACKAGE.MODULE.NAME=VALUE: a module switch set in this child before the trainer is built
    # (e.g. mod.training.lora_fused.FUSE_OUTPUT=false), to measure one lever against the preset
    import importlib

    for x in sets:
        if x.startswith("mod."):
            key, value = x.removeprefix("mod.").split("=", 1)
            module, attr = key.rsplit(".", 1)
            setattr(importlib.import_module(module), attr, yaml.safe_load(value))
    sets = [x for x in sets if not x.startswith(("args.", "mod."))]
    cfg = load_config(preset=name, overrides=sets, require_base=False)  # the bench builds its own random-weight model
    precision = _dev.PRECISION
    attn = speed.resolve_attention(cfg.train.attn_implementation, packing=cfg.data.packing)
    from training.plan import SHAPES  # the studio's shape table (equal to the seed script's ARCHS)

    dims = _dev.TINY if arch == "tiny" else SHAPES[f"qwen2.5-{arch}"]
    shape = AutoConfig.for_model("qwen2", **dims, max_position_embeddings=32768)
    tok = make_tokenizer(shape.vocab_size)
    tmp = None
    torch.manual_seed(0)
    if cfg.method == "qlora":
        roomy_shm = os.path.isdir("/dev/shm") and shutil.disk_usage("/dev/shm").free > 64 * 2**30
        tmp = tempfile.mkdtemp(dir="/dev/shm" if roomy_shm else "/tmp")  # 30 GB at 14B: RAM when there is room
        with torch.device(_dev.DEVICE):
            m = AutoModelForCausalLM.from_config(shape, dtype=_dev.DTYPE)
        m.save_pretrained(tmp)
        del m
        _dev.reset_peak()
        cfg.train.attn_implementation = attn
        model = recipe.load_model(tmp, cfg, precision)
        shutil.rmtree(tmp)
    else:
        with torch.device(_dev.DEVICE):
            model = AutoModelForCausalLM.from_config(shape, dtype=_dev.DTYPE, attn_implementation=attn)
    model.config.use_cache = False
    _dev.reset_peak()
    model, used = recipe.prepare_model(model, cfg)

    n_rows = (steps + warmup + 2) * cfg.train.micro_batch_size * cfg.train.grad_accum
    g = torch.Generator().manual_seed(0)
    rows = [{"input_ids": torch.randint(100, shape.vocab_size, (int(torch.randint(100, 500, (1,), generator=g)),), generator=g).tolist()}
            for _ in range(n_rows * 4)]
    from datasets import Dataset

    ds = Dataset.from_list(rows)
    run_dir = Path(tempfile.mkdtemp(dir="/tmp"))
    args = recipe.sft_args(cfg, run_dir, precision, has_eval=False, overrides=dict(
        max_steps=steps + warmup, logging_steps=log_every, save_strategy="no", **trainer_args))

    timer = Timer(warmup, every_step=log_every == 1)  # the seed side's own clock (probe_variants.Timer)
    callbacks = [timer] + speed.speed_callbacks(cfg.train, cfg.method, cfg.data.max_length)
    if os.environ.get("BENCH_PROFILE"):  # NAME~prof: profile two steps after warm-up (timings then include it)
        from _profile import ProfileSteps

        callbacks.append(ProfileSteps(warmup, 2, os.environ["BENCH_PROFILE"],
                                      stacks=bool(os.environ.get("BENCH_PROFILE_STACKS"))))
    trainer = recipe.make_trainer(cfg, model=model, args=args, train_dataset=ds, processing_class=tok,
                                  peft_config=recipe.lora_config(cfg), callbacks=callbacks)
    trainer.train()
    _dev.sync()
    dt = (timer.t1 or time.perf_counter()) - timer.t0
    tps = world * timer.n * cfg.train.micro_batch_size * cfg.train.grad_accum * cfg.data.max_length / dt
    if os.environ.get("RANK", "0") != "0":
        return
    n = sum(ARCHS_param_count(shape))
    from torch._dynamo.utils import counters

    breaks = dict(counters["graph_break"])
    res = {"graph_breaks": {k[:160]: v for k, v in breaks.items()}, "unique_graphs": counters["stats"]["unique_graphs"],
           "tokens_per_s": tps, "peak_gb": _dev.peak_allocated_gb(), "losses": timer.losses,
           "model_tflops": 4 * n * tps / 1e12, "gpu": _dev.name(), "used": used, "arch": arch, "method": cfg.method,
           "trainer_args": {k: getattr(args, k) for k in trainer_args},
           "config": {"gradient_checkpointing": cfg.train.gradient_checkpointing,
                      "checkpoint_fraction": cfg.train.checkpoint_fraction, "micro_batch": cfg.train.micro_batch_size,
                      "grad_accum": cfg.train.grad_accum, "method": cfg.method,
                      "lora_dropout": cfg.lora.dropout, "upcast_fp32": cfg.quant.upcast_fp32}}
    Path(out_json).write_text(json.dumps(res))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", default="seed-lora,fast")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--seed-script", default=str(HERE / "probe_variants.py"),
                    help="the seed recipe; probe_variants.py is shared/bench/seed_recipe_baseline.py with "
                         "seeded weights, full loss lists and extra knobs left at the seed's defaults")
    ap.add_argument("--out", default="bench-out")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per variant before it is stopped")
    ap.add_argument("--arch", choices=("7b", "14b", "tiny"), default=None,
                    help="every variant on this shape; tiny: a CPU smoke run of the bench itself (no GPU needed)")
    ap.add_argument("--log-every", type=int, default=1,
                    help="logging_steps of every variant, the seed's included. 1 (runs 1-11): a loss a step to "
                         "compare with the seed's, and the clock waits for the GPU at every step end; 10: as the "
                         "seed article and the presets log, the clock waiting only where it starts and stops")
    ap.add_argument("--child", nargs=4, metavar=("PRESET", "ARCH", "STEPS", "OUT"))
    a = ap.parse_args()
    if a.child:
        preset, arch, steps, out_json = a.child
        run_studio_child(preset, arch, int(steps), a.warmup, out_json, a.log_every)
        return
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in a.variants.split(","):
        name, _, n_steps = name.partition("@")  # NAME@STEPS: this variant's own step count
        # NAME~prof: a profile summary in NAME~prof.profile.txt; NAME~stack: the same with Python
        # stacks, which names each host sync's caller but slows the host (run 12: 4,292 tokens/s)
        profiled = name.endswith(("~prof", "~stack"))
        runner, what, arch = parse_variant(_plain_name(name))
        arch = a.arch or arch
        steps = int(n_steps) if n_steps else a.steps if arch != "14b" else max(8, a.steps // 3)
        stem = file_stem(name)
        t = time.time()
        try:
            if runner == "torchrun2":
                js = out / f"{stem}.json"
                subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                                __file__, "--warmup", str(a.warmup), "--log-every", str(a.log_every), "--child", what, arch, str(steps), str(js)],
                               check=True, stdout=open(out / f"{stem}.log", "w"), stderr=subprocess.STDOUT, timeout=a.timeout)
                results[name] = json.loads(js.read_text())
            elif runner == "seed":
                results[name] = run_seed(what, arch, steps, a.warmup, a.seed_script, out, a.timeout, a.log_every)
            else:
                js = out / f"{stem}.json"
                # one process seeing several GPUs gets nn.DataParallel, which TRL refuses: show it one
                env = dict(os.environ, CUDA_VISIBLE_DEVICES=os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0])
                if profiled:
                    env["BENCH_PROFILE"] = str(out / f"{stem}.profile.txt")
                    env["BENCH_PROFILE_STACKS"] = "1" if name.endswith("~stack") else ""
                subprocess.run([sys.executable, __file__, "--warmup", str(a.warmup), "--log-every", str(a.log_every), "--child", what, arch, str(steps), str(js)], env=env,
                               check=True, stdout=open(out / f"{stem}.log", "w"), stderr=subprocess.STDOUT, timeout=a.timeout)
                results[name] = json.loads(js.read_text())
        except subprocess.CalledProcessError as exc:
            results[name] = {"error": f"exit {exc.returncode}; see {stem}.log"}
        except subprocess.TimeoutExpired:
            results[name] = {"error": f"over --timeout {a.timeout}s; see {stem}.log"}
        results[name]["wall_s"] = round(time.time() - t, 1)
        print(name, json.dumps({k: v for k, v in results[name].items() if k not in ("losses", "all_losses")}), flush=True)
        (out / "bench.json").write_text(json.dumps(results, indent=1))
        (out / "table.md").write_text(format_table(results) + "\n")  # survives a call cut off later
    print("\n" + format_table(results))


def _plain_name(name: str) -> str:
    """A variant's name without its profiling suffix."""
    return name.removesuffix("~prof").removesuffix("~stack")


def baseline_key(name: str, r: dict) -> str:
    """Which seed run a variant compares with: ARCH-METHOD, e.g. 7b-lora, 7b-qlora, 14b-qlora."""
    runner, what, arch = parse_variant(_plain_name(name))
    method = r.get("method") or r.get("config", {}).get("method") or ("qlora" if "qlora" in what or what.startswith("lean") else "lora")
    return f"{r.get('arch') or arch}-{method}"


def format_table(results: dict) -> str:
    lines: list[str] = []
    out = lines.append
    base = {baseline_key(n, r): r for n, r in results.items() if n.startswith("seed") and "error" not in r}
    stored = json.loads(SEED_LOSSES.read_text()) if SEED_LOSSES.is_file() else {}
    ref_losses = {"7b-lora": stored.get("seed-lora"), "7b-qlora": stored.get("seed-qlora")}
    if "fast-1gpu" in results and "fast-2gpu" in results and "tokens_per_s" in results["fast-2gpu"]:
        eff = results["fast-2gpu"]["tokens_per_s"] / (2 * results["fast-1gpu"]["tokens_per_s"])
        out(f"two-GPU scaling efficiency (2-GPU tokens/s over twice one GPU's): {eff:.3f}")
    out("")
    out("loss vs seed: mean over the common steps, and the largest per-step difference; against the seed run above "
          f"when it ran as long, else against {SEED_LOSSES.name} (same seeded weights and rows)")
    out("")
    out("| variant | card | tokens/s | x seed | peak GB | model TFLOP/s | steps | mean loss | loss vs seed | max step diff |")
    out("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, r in results.items():
        if "error" in r:
            out(f"| {name} | | {r['error']} | | | | | | | |")
            continue
        key = baseline_key(name, r)
        b = base.get(key)
        ratio = f"{r['tokens_per_s'] / b['tokens_per_s']:.2f}" if b and "tokens_per_s" in b and not name.startswith("seed") else ""
        losses = r["losses"]
        mean = sum(losses) / max(1, len(losses))
        ref = (b or {}).get("losses") or []
        if len(ref) < len(losses) and ref_losses.get(key):
            ref = ref_losses[key]
        dl = mx = ""
        if ref and not name.startswith("seed"):
            k = min(len(ref), len(losses))
            bm = sum(ref[:k]) / k
            dl = f"{100 * (sum(losses[:k]) / k - bm) / bm:+.3f}%"
            mx = f"{100 * max(abs(x - y) / y for x, y in zip(losses[:k], ref[:k])):.3f}%"
        out(f"| {name} | {r.get('gpu', '')} | {r['tokens_per_s']:,.0f} | {ratio} | {r['peak_gb']:.2f} | "
              f"{r['model_tflops']:.0f} | {len(losses)} | {mean:.3f} | {dl} | {mx} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
