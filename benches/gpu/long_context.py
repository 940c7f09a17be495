"""The longest sequence that trains under a memory cap: the studio's long path against the plain
HF + PEFT QLoRA recipe, in Unsloth's published setup.

Setup (Unsloth's long-context table): Llama-3.1-8B shapes with random weights (memory and speed do
not depend on the values), 4-bit nf4 QLoRA with LoRA r=32 on every linear layer of the decoder,
batch 1, one sequence of L tokens, a full optimizer step (forward, backward, AdamW). The cap is
`torch.cuda.set_per_process_memory_fraction`: what PyTorch may allocate, as Unsloth measured.

- `seed`: the plain recipe: `prepare_model_for_kbit_training` (fp32 norms, embeddings and head),
  PEFT's LoRA, gradient checkpointing (non-reentrant), sdpa, the model's own loss over full logits.
- `studio`: the `long` preset through the trainer's own functions (training.recipe.load_model and
  prepare_model, training.speed's offloaded checkpoints, training.lora_fused, training.long_context's
  tiled MLP, liger's kernels as the Trainer applies them, TRL's fused LM head).

Each side runs in its own process (clean peak memory). It first steps at two probe lengths with no
cap and fits memory = a + b * L; then, for each cap, it starts at the fitted length (and the plan's,
`training.long_context.longest_length`, is printed beside it) and moves by --step-frac until the
longest length that trains is bracketed or --tries runs out. Every step is appended to
OUT/steps.jsonl as it ends, and table.md is rewritten, so a call cut by its time limit returns
what finished.

    python benches/gpu/long_context.py --out DIR --sides seed,studio --caps 12,24 [--full]
    python benches/gpu/long_context.py --out DIR --tiny      # CPU smoke run of the bench itself
"""
from __future__ import annotations

import argparse
import gc
import json
import math
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
sys.path.insert(0, str(HERE))

LLAMA_31_8B = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                   num_key_value_heads=8, vocab_size=128256, rope_theta=500000.0, rms_norm_eps=1e-5,
                   tie_word_embeddings=False)
TINY = dict(hidden_size=64, intermediate_size=224, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=1024, tie_word_embeddings=False)
UNSLOTH = {8: (2972, None), 12: (21848, 932), 16: (40724, 2551), 24: (78475, 5789), 40: (153977, 12264),
           48: (191728, 15502), 80: (342733, 28454)}  # GB: (Unsloth, HF+FA2), from Unsloth's table
LORA_SETS = ["lora.r=32", "lora.alpha=32", "lora.dropout=0", "lora.target_modules=[all-linear]"]


def build_model(dims: dict, directory: Path) -> None:
    """Random Llama weights in bf16 (fp32 on the CPU), saved for a 4-bit load."""
    import _dev
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    cfg = LlamaConfig(**dims, max_position_embeddings=1 << 20)
    with torch.device(_dev.DEVICE):
        model = AutoModelForCausalLM.from_config(cfg, dtype=_dev.DTYPE)
    model.save_pretrained(directory)


def load_side(side: str, model_dir: str, studio_sets: tuple[str, ...] = ()):
    """(model, optimizer, config) of one side, ready to step; `studio_sets` are --set overrides
    for the studio side's config (e.g. quant.upcast_fp32=true for the loss check)."""
    import _dev
    import torch
    from peft import get_peft_model

    from training import recipe, speed
    from training.config import load_config

    if side == "seed":
        cfg = load_config(preset="seed", overrides=["method=qlora", "quant.upcast_fp32=true", "train.liger_kernel=off",
                                                     "train.attn_implementation=sdpa", *LORA_SETS], require_base=False)
    else:
        cfg = load_config(preset="long", overrides=[*LORA_SETS, *studio_sets], require_base=False)
    model = recipe.load_model(model_dir, cfg, _dev.PRECISION)
    model.config.use_cache = False
    model, used = recipe.prepare_model(model, cfg)
    if side == "studio":
        from trl.trainer.utils import add_fused_lm_head

        add_fused_lm_head(model)  # as SFTTrainer does, before PEFT wraps the model
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    torch.manual_seed(0)  # the same LoRA A matrices on both sides: their second losses compare
    model = get_peft_model(model, recipe.lora_config(cfg))
    if side == "studio":
        from training.long_context import tile_mlp
        from training.lora_fused import fuse_lora_dropout

        if speed.resolve_liger(cfg.train.liger_kernel):  # as transformers' Trainer applies it to a PEFT model
            from liger_kernel.transformers import _apply_liger_kernel_to_instance

            # RMSNorm, SwiGLU, RoPE; not its fused linear cross-entropy, which would rebind the
            # model's forward over TRL's fused head (the loss here is TRL's, as in the trainer)
            _apply_liger_kernel_to_instance(model=model.get_base_model(), fused_linear_cross_entropy=False)
        used["fused"] = fuse_lora_dropout(model)
        used["offloaded"] = speed.offload_checkpoint_inputs(model)
        used["tiled"] = tile_mlp(model, cfg.train.mlp_tile_tokens)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, fused=_dev.CUDA)
    return model, opt, cfg, used, sum(p.numel() for p in params)


def one_step(model, opt, side: str, length: int, vocab: int, grads_to: Path | None = None) -> dict:
    """One optimizer step on one sequence of `length` random tokens (seeded by the length, so both
    sides see the same tokens)."""
    import _dev
    import torch

    g = torch.Generator().manual_seed(length)
    ids = torch.randint(100, vocab, (1, length), generator=g).to(_dev.DEVICE)
    _dev.reset_peak()
    _dev.sync()
    t0 = time.perf_counter()
    if side == "studio":
        out = model(input_ids=ids, labels=ids, fused_lm_head=True)
    else:
        out = model(input_ids=ids, labels=ids)
    loss = out.loss
    loss.backward()
    if grads_to is not None:  # the first step's LoRA B gradients, by name: both sides' should agree
        norms = {n.replace(".default", ""): [float(p.grad.float().norm())] + p.grad.float().flatten()[:64].tolist()
                 for n, p in model.named_parameters() if p.grad is not None and "lora_B" in n}
        grads_to.write_text(json.dumps(norms))
    opt.step()
    opt.zero_grad(set_to_none=True)
    _dev.sync()
    dt = time.perf_counter() - t0
    return {"loss": float(loss.detach()), "seconds": round(dt, 3), "tokens_per_s": round(length / dt, 1),
            "peak_alloc_gb": round(_dev.peak_allocated_gb(), 3), "peak_reserved_gb": round(_dev.peak_reserved_gb(), 3)}


def try_step(model, opt, side: str, length: int, vocab: int, grads_to: Path | None = None) -> dict:
    import torch

    try:
        return {"ok": True, **one_step(model, opt, side, length, vocab, grads_to)}
    except torch.OutOfMemoryError as exc:
        opt.zero_grad(set_to_none=True)
        msg = str(exc).splitlines()[0][:160]
        del exc
        gc.collect()
        torch.cuda.empty_cache()
        return {"ok": False, "error": "OOM: " + msg}
    except RuntimeError as exc:  # pinned host memory or a kernel's own limit
        opt.zero_grad(set_to_none=True)
        msg = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return {"ok": False, "error": msg}


def set_cap(cap_gb: float | None) -> None:
    import torch

    if torch.cuda.is_available():
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(1.0 if cap_gb is None else min(1.0, cap_gb * 2**30 / total))


def run_side(a: argparse.Namespace) -> None:
    """One side in this process: probes, then the search under each cap; a line per step to steps.jsonl."""
    import _dev
    import torch

    from training.long_context import longest_length
    from training.plan import Shape

    dims = TINY if a.tiny else LLAMA_31_8B
    model, opt, cfg, used, n_train = load_side(a.side, a.model_dir, tuple(x for x in a.studio_set.split(",") if x))
    if a.drop_model:  # the last side: the saved model's 16 GB of /dev/shm are host memory the offload needs
        shutil.rmtree(a.model_dir, ignore_errors=True)
    shape = Shape(**{k: dims[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers",
                                         "num_attention_heads", "num_key_value_heads", "vocab_size")})
    out = Path(a.out)
    log = open(out / "steps.jsonl", "a", encoding="utf-8")

    def record(**row) -> dict:
        row = {"side": a.side, "gpu": _dev.name(), **row}
        log.write(json.dumps(row) + "\n")
        log.flush()
        print(json.dumps(row), flush=True)
        return row

    record(event="loaded", used=used, trainable=n_train, weights_gb=round(_dev.allocated_gb(), 3))
    vocab = dims["vocab_size"]
    for length in [int(x) for x in a.same.split(",") if x]:  # both sides at the same length: the loss check
        set_cap(None)
        for k in range(2):
            grads = out / f"grads-{a.side}-{length}.json" if k == 0 else None
            record(event="same", length=length, k=k, **try_step(model, opt, a.side, length, vocab, grads))
    probes = [int(x) for x in a.probes.split(",") if x]
    points = []
    set_cap(None)
    for length in probes:
        r = record(event="probe", length=length, **try_step(model, opt, a.side, length, vocab))
        if r["ok"]:
            points.append((length, r["peak_reserved_gb"]))
    slope = intercept = None
    if len(points) >= 2:
        (l1, m1), (l2, m2) = points[0], points[-1]
        slope = (m2 - m1) / (l2 - l1)
        intercept = m1 - slope * l1
        record(event="fit", gb_per_1k_tokens=round(slope * 1000, 5), intercept_gb=round(intercept, 3),
               bytes_per_token_per_h=round(slope * 2**30 / dims["hidden_size"], 2))
    deadline = time.monotonic() + a.budget_s
    for cap in [float(x) for x in a.caps.split(",") if x]:
        start = a.start.get(cap)
        if cap <= 0:  # 0: the whole card
            cap = torch.cuda.get_device_properties(0).total_memory / 2**30 if _dev.CUDA else 80.0
            set_cap(None)
        else:
            set_cap(cap)
        planned = longest_length(shape, cfg, cap) if a.side == "studio" else None
        guess = int((cap - intercept) / slope) if slope and slope > 0 else (planned or 4096)
        if start:
            guess = start
        guess = min(guess, a.max_length)
        length = max(a.quantum, guess // a.quantum * a.quantum)
        best, worst = 0, math.inf
        for _ in range(a.tries):
            if time.monotonic() > deadline:
                record(event="stopped", cap_gb=cap, why="--budget-s reached")
                break
            r = record(event="cap", cap_gb=cap, length=length, planned=planned, fitted=guess,
                       **try_step(model, opt, a.side, length, vocab))
            if r["ok"]:
                best = max(best, length)
            else:
                worst = min(worst, length)
            if worst - best <= max(a.quantum, int(best * a.step_frac / 2)):
                break
            if worst == math.inf:
                nxt = int(length * (1 + a.step_frac))
            elif best == 0:
                nxt = int(length * (1 - a.step_frac))
            else:
                nxt = (best + worst) // 2
            length = max(a.quantum, nxt // a.quantum * a.quantum)
            if length in (best, worst):
                break
        record(event="longest", cap_gb=cap, length=best, failed_at=None if worst == math.inf else worst,
               planned=planned, fitted=guess)
    log.close()


def table(out: Path) -> str:
    rows = [json.loads(x) for x in (out / "steps.jsonl").read_text().splitlines() if x.strip()] \
        if (out / "steps.jsonl").exists() else []
    gpu = next((r["gpu"] for r in rows), "?")
    lines = [f"Card: {gpu}. Llama-3.1-8B shapes, random weights, nf4 QLoRA r=32 on all linear layers, batch 1, "
             "one optimizer step per length.", "",
             "| cap GB | studio longest | plan | studio tok/s there | seed longest | Unsloth | HF+FA2 (Unsloth's) |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    caps = sorted({r["cap_gb"] for r in rows if r.get("event") == "longest"})
    for cap in caps:
        def longest(side, cap=cap):
            return next((r for r in rows if r.get("event") == "longest" and r["side"] == side and r["cap_gb"] == cap), None)

        st, sd = longest("studio"), longest("seed")
        tps = next((r["tokens_per_s"] for r in rows if r.get("event") == "cap" and r["side"] == "studio"
                    and r["cap_gb"] == cap and r.get("ok") and st and r["length"] == st["length"]), None)
        un = UNSLOTH.get(int(round(cap)), (None, None))
        fmt = lambda v: "-" if v in (None, 0) else f"{v:,}"  # noqa: E731
        lines.append(f"| {cap:g} | {fmt(st and st['length'])}{'' if not st or not st.get('failed_at') else ' (OOM at ' + format(st['failed_at'], ',') + ')'} "
                     f"| {fmt(st and st['planned'])} | {fmt(tps and round(tps))} | {fmt(sd and sd['length'])} "
                     f"| {fmt(un[0])} | {fmt(un[1])} |")
    same = [r for r in rows if r.get("event") == "same" and r.get("ok")]
    if same:
        lines += ["", "Same tokens, both sides (loss of step 1 and 2):", ""]
        for length in sorted({r["length"] for r in same}):
            by = {(r["side"], r["k"]): r["loss"] for r in same if r["length"] == length}
            for k in (0, 1):
                if ("seed", k) in by and ("studio", k) in by:
                    d = (by[("studio", k)] - by[("seed", k)]) / by[("seed", k)]
                    lines.append(f"- L={length:,} step {k + 1}: seed {by[('seed', k)]:.5f}, studio "
                                 f"{by[('studio', k)]:.5f} ({d:+.4%})")
    for f in sorted(out.glob("grads-seed-*.json")):
        other = out / f.name.replace("grads-seed-", "grads-studio-")
        if other.exists():
            a, b = json.loads(f.read_text()), json.loads(other.read_text())
            ratios = sorted(b[k][0] / a[k][0] for k in a if k in b and a[k][0] > 0)
            cos = []
            for k in a:
                if k in b:
                    x, y = a[k][1:], b[k][1:]
                    nx, ny = math.sqrt(sum(v * v for v in x)), math.sqrt(sum(v * v for v in y))
                    if nx > 0 and ny > 0:
                        cos.append(sum(p * q for p, q in zip(x, y)) / nx / ny)
            if cos:
                cos.sort()
                lines.append(f"- first-step LoRA B gradients, cosine studio vs seed over each matrix's first 64 values: "
                             f"min {cos[0]:.4f}, median {cos[len(cos) // 2]:.4f} ({len(cos)} matrices)")
            if ratios:
                q = lambda x, ratios=ratios: ratios[min(len(ratios) - 1, int(x * len(ratios)))]  # noqa: E731
                lines.append(f"- first-step LoRA B gradient norms, studio / seed, {len(ratios)} matrices "
                             f"({f.stem.split('-')[-1]} tokens): min {ratios[0]:.3f}, median {q(0.5):.3f}, max {ratios[-1]:.3f}")
    fits = [r for r in rows if r.get("event") == "fit"]
    for r in fits:
        lines.append(f"- {r['side']}: {r['gb_per_1k_tokens']} GB per 1k tokens (= {r['bytes_per_token_per_h']} bytes "
                     f"per token and hidden unit), {r['intercept_gb']} GB at L=0")
    text = "\n".join(lines) + "\n"
    (out / "table.md").write_text(text)
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="long-out")
    ap.add_argument("--sides", default="seed,studio")
    ap.add_argument("--caps", default="12,24", help="GB, comma-separated; 0 = the whole card")
    ap.add_argument("--seed-caps", default=None, help="the seed side's caps (default: --caps)")
    ap.add_argument("--probes", default="8192,16384", help="lengths stepped with no cap to fit memory = a + b*L")
    ap.add_argument("--seed-probes", default="2048,4096", help="the seed side's probe lengths")
    ap.add_argument("--same", default="4096", help="lengths both sides step on the same tokens (loss check)")
    ap.add_argument("--tries", type=int, default=3, help="steps per cap")
    ap.add_argument("--step-frac", type=float, default=0.05)
    ap.add_argument("--quantum", type=int, default=1024)
    ap.add_argument("--start", default="", help="CAP:LENGTH,... first length to try under a cap")
    ap.add_argument("--max-length", type=int, default=None, help="never step longer (default 2^20; 1024 with --tiny)")
    ap.add_argument("--budget-s", type=float, default=1e9, help="no new step after this many seconds in a side")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per side before it is stopped")
    ap.add_argument("--tiny", action="store_true", help="tiny shapes on the CPU: a smoke run of the bench")
    ap.add_argument("--studio-set", default="", help="KEY=VALUE,... config overrides for the studio side")
    ap.add_argument("--side", help=argparse.SUPPRESS)
    ap.add_argument("--drop-model", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--build", help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", help=argparse.SUPPRESS)
    a = ap.parse_args()
    a.start = {float(k): int(v) for k, v in (x.split(":") for x in a.start.split(",") if x)}
    a.max_length = a.max_length or (1024 if a.tiny else 1 << 20)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.side:
        run_side(a)
        return
    if a.build:  # in a child, so that the parent holds no GPU memory while the sides run
        build_model(TINY if a.tiny else LLAMA_31_8B, Path(a.build))
        return
    import _dev

    roomy_shm = os.path.isdir("/dev/shm") and shutil.disk_usage("/dev/shm").free > 24 * 2**30
    tmp = Path(tempfile.mkdtemp(dir="/dev/shm" if roomy_shm else None))
    try:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--build", str(tmp), "--out", str(out)] + (["--tiny"] if a.tiny else []),
                       check=True)
        print(f"model built and saved in {time.perf_counter() - t0:.0f} s ({_dev.name()})", flush=True)
        sides = a.sides.split(",")
        for side in sides:
            caps = a.seed_caps if side == "seed" and a.seed_caps is not None else a.caps
            cmd = [sys.executable, __file__, "--side", side, "--model-dir", str(tmp), "--out", str(out),
                   "--caps", caps, "--probes", a.seed_probes if side == "seed" else a.probes, "--same", a.same, "--tries", str(a.tries),
                   "--step-frac", str(a.step_frac), "--quantum", str(a.quantum), "--budget-s", str(a.budget_s),
                   "--max-length", str(a.max_length), "--studio-set", a.studio_set,
                   "--start", ",".join(f"{k:g}:{v}" for k, v in a.start.items())] + (["--tiny"] if a.tiny else []) + (["--drop-model"] if side == sides[-1] else [])
            try:
                rc = subprocess.run(cmd, timeout=a.timeout).returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
            print(f"side {side}: rc {rc}", flush=True)
            print(table(out), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
