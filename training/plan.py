"""`studio train SPLIT --plan`: what a run will need and what will go wrong, before it starts.

- Peak GPU memory per method for the config's length and batch (formula below), the method that
  fits `--gpu-mem`, compared with the seed article's hardware table.
- Token lengths of the split (histogram), how many samples max_length cuts.
- The "model never stops" check: every trained assistant turn must contain the EOS token after
  templating, or the model never learns to end its answer.
- Optimizer steps for the run.

The memory formula and its calibration: training/memory.py.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, DataError
from .memory import GB, MemoryEstimate, Shape, estimate_memory, fitting_method, shape_from_params  # noqa: F401
from .memory import __doc__ as memory_doc
from .shapes import SHAPES, shape_key  # noqa: F401  (SHAPES is re-exported: benches and tests read it here)

if TYPE_CHECKING:
    from .config import TrainConfig


# The seed article's "minimum GPU memory" table (GB), for comparison.
SEED_TABLE = {("7B", "qlora"): 8, ("7B", "lora"): 24, ("7B", "full"): 80, ("13B", "qlora"): 16,
              ("13B", "lora"): 40, ("70B", "qlora"): 48}


def resolve_shape(cfg: TrainConfig, overrides: dict[str, Any] | None = None) -> Shape:
    """Model shape from (in order): overrides, the built-in table, AutoConfig (local folder or cache)."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if cfg.is_tiny and cfg.tiny.architecture:
        return Shape(**SHAPES[cfg.tiny.architecture], source=f"tiny.architecture ({cfg.tiny.architecture}, random weights)")
    if cfg.is_tiny:
        t = cfg.tiny
        return Shape(t.hidden_size, t.intermediate_size, t.num_layers, t.num_heads, t.num_heads, t.vocab_size,
                     False, "tiny (built-in, untrained)")
    key = shape_key(cfg.base)
    if key:
        return Shape(**{**SHAPES[key], **overrides}, source=f"built-in table ({key})")
    try:
        from transformers import AutoConfig

        from .recipe import base_path

        ac = AutoConfig.from_pretrained(base_path("", cfg), local_files_only=True)
        tc = ac.get_text_config() if hasattr(ac, "get_text_config") else ac
        d = dict(hidden_size=tc.hidden_size, intermediate_size=tc.intermediate_size,
                 num_hidden_layers=tc.num_hidden_layers, num_attention_heads=tc.num_attention_heads,
                 num_key_value_heads=getattr(tc, "num_key_value_heads", None) or tc.num_attention_heads,
                 vocab_size=tc.vocab_size, tie_word_embeddings=bool(getattr(tc, "tie_word_embeddings", False)))
        return Shape(**{**d, **overrides}, source=f"AutoConfig({cfg.base})")
    except Exception as exc:  # offline, gated, unknown architecture
        needed = {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size"}
        if needed <= set(overrides):
            overrides.setdefault("num_key_value_heads", overrides["num_attention_heads"])
            return Shape(**overrides, source="--shape overrides")
        raise ConfigError(
            f"base {cfg.base!r}: its config is not available here ({str(exc).splitlines()[0][:120]}); built-in "
            f"shapes: {', '.join(SHAPES)}. Give --params 7 (billions) or --shape hidden_size=...,"
            "intermediate_size=...,num_hidden_layers=...,num_attention_heads=...,vocab_size=...") from None


def length_report(tokenised: list[Any], max_length: int, bins: int = 10) -> dict[str, Any]:
    lengths = [t.full_length for t in tokenised]
    if not lengths:
        return {"count": 0, "histogram": [], "cut": 0}
    top = max(max(lengths), max_length)
    width = max(1, math.ceil(top / bins))
    hist = [0] * bins
    for n in lengths:
        hist[min(bins - 1, (n - 1) // width)] += 1
    s = sorted(lengths)
    return {"count": len(lengths), "min": s[0], "median": s[len(s) // 2], "p95": s[min(len(s) - 1, int(len(s) * 0.95))],
            "max": s[-1], "total_tokens": sum(lengths), "cut": sum(n > max_length for n in lengths),
            "histogram": [{"from": b * width + 1, "to": (b + 1) * width, "count": c} for b, c in enumerate(hist)]}


def eos_report(tokenised: list[Any], stop_ids: set[int], tokenizer: Any) -> dict[str, Any]:
    from .data import turn_stops

    turns = [turn for t in tokenised for turn in t.turn_ends]
    bad = [i for i, turn in enumerate(turns) if not turn_stops(turn, stop_ids)]
    example = tokenizer.decode(turns[bad[0]][-8:]) if bad else None
    return {"turns": len(turns), "without_eos": len(bad), "ok": not bad,
            "eos_tokens": [tokenizer.convert_ids_to_tokens(i) for i in sorted(stop_ids)], "example_end": example}


def packed_count(lengths: list[int], max_length: int) -> int:
    """How many sequences TRL's best-fit-decreasing packing (`packing_strategy="bfd"`, trl
    data_utils._pack_bfd) makes: each sample cut to max_length, longest first, each into the bin
    whose free space fits it most tightly, else a new bin. Total tokens / max_length is only a lower
    bound: on the demo split it said 220 sequences where TRL made 248."""
    import bisect

    spaces: list[int] = []  # free space of the open bins, sorted
    bins = 0
    for n in sorted((min(n, max_length) for n in lengths if n > 0), reverse=True):
        i = bisect.bisect_left(spaces, n)
        if i < len(spaces):
            left = spaces.pop(i) - n
        else:
            bins += 1
            left = max_length - n
        if left > 0:
            bisect.insort(spaces, left)
    return bins


def steps_report(tokenised: list[Any], cfg: TrainConfig) -> dict[str, Any]:
    # as training.data.to_dataset: a sample whose trained tokens were all cut off is dropped
    tokenised = [t for t in tokenised if any(x != -100 for x in t.labels[1:])]
    n = len(tokenised)
    if cfg.data.packing:
        seqs = packed_count([len(t.input_ids) for t in tokenised], cfg.data.max_length)
    else:
        seqs = n
    per_step = cfg.train.micro_batch_size * cfg.train.grad_accum
    per_epoch = max(1, math.ceil(seqs / per_step)) if seqs else 0
    total_steps = cfg.train.max_steps if cfg.train.max_steps > 0 else math.ceil(per_epoch * cfg.train.epochs)
    return {"sequences": seqs, "sequences_per_step": per_step, "steps_per_epoch": per_epoch, "steps": total_steps}


# ---------------------------------------------------------------- what stops a run before it starts

def split_problem(cfg: TrainConfig, split: Any) -> str | None:
    """Why the split cannot train as configured (no rows; a scheduler that needs validation rows), or None."""
    if not split.train:
        rows = "0 rows" if not split.val else f"0 training rows (and {len(split.val)} validation rows)"
        return (f"{split.source}: the split has {rows}: nothing to train on; export it again with rows "
                "(studio export NAME), or pick another split")
    if cfg.train.lr_scheduler == "reduce_lr_on_plateau" and not split.val:
        return (f"train.lr_scheduler=reduce_lr_on_plateau lowers the rate when eval_loss stops improving, but "
                f"{split.source} has no validation rows: choose another scheduler (linear, cosine, ...), or give "
                "the split val rows (data.val_fraction_if_missing for a single file)")
    return None


def fit_problem(tokenised: Iterable[Any], max_length: int) -> str | None:
    """None as soon as one sample fits max_length and keeps a trained token (the trainer drops samples with
    none, training/data.py to_dataset); else why none does. Lazy: a launch tokenises only up to the first
    sample that fits."""
    n = too_long = 0
    shortest: int | None = None
    for t in tokenised:
        n += 1
        if t.full_length <= max_length and any(x != -100 for x in t.labels[1:]):
            return None
        too_long += t.full_length > max_length
        shortest = t.full_length if shortest is None else min(shortest, t.full_length)
    if not n:
        return None  # an empty split is split_problem's
    if too_long == n:
        return (f"all {n} samples are longer than max_length={max_length} tokens (the shortest has {shortest}), so "
                "every one is cut and none teaches the model to stop: raise data.max_length or shorten them")
    return (f"no sample keeps a trained token within max_length={max_length} tokens: raise data.max_length, or "
            "check that the samples have assistant answers")


def _tokenised_one_by_one(tokenizer: Any, samples: list[dict[str, Any]], cfg: TrainConfig) -> Iterator[Any]:
    from .data import tokenise_all

    for s in samples:
        yield from tokenise_all(tokenizer, [s], kind=cfg.data.kind, assistant_only=cfg.data.assistant_only_loss,
                                max_length=cfg.data.max_length)


def preflight(cfg: TrainConfig, *, local: bool = True, split: Any = None, tokenizer: Any = None) -> list[str]:
    """What `studio train` checks before it creates a run and starts a process; raises ConfigError or
    DataError with the reason, as the plan does: lora.target_modules against the base's modules, the
    attention kernel's package (`local`: a run on an SSH host has its own), an empty split, a scheduler
    that needs validation rows, and a split whose every sample is longer than max_length (tokenised lazily:
    usually one sample). Returns notes on what could not be checked here."""
    from .config import attention_problem, validate_against_base
    from .data import ensure_chat_template, load_split

    notes = [n for n in [validate_against_base(cfg)] if n]
    problem = attention_problem(cfg) if local else None
    if problem:
        raise ConfigError(problem)
    split = split or load_split(cfg.data.split, val_fraction=cfg.data.val_fraction_if_missing, seed=cfg.train.seed)
    problem = split_problem(cfg, split)
    if problem:
        raise DataError(problem)
    if tokenizer is None:
        tokenizer = _plan_tokenizer(cfg, split, notes)
    if tokenizer is not None:
        ensure_chat_template(tokenizer)
        problem = fit_problem(_tokenised_one_by_one(tokenizer, split.train, cfg), cfg.data.max_length)
        if problem:
            raise DataError(f"{split.source}: {problem}")
    return notes


def make_plan(cfg: TrainConfig, *, gpu_mem_gb: float | None = None, shape_overrides: dict[str, Any] | None = None,
              params_b: float | None = None, tokenizer: Any = None) -> dict[str, Any]:
    """The whole plan as a dict (the CLI prints it as text or --json). Raises ConfigError / DataError for
    what would stop the run (preflight's checks); `problems` lists what stops it on this machine only
    (a missing attention package), which `studio train --plan` reports with a non-zero exit."""
    from .config import attention_problem, validate_against_base
    from .data import ensure_chat_template, eos_ids, load_split, tokenise_all

    split = load_split(cfg.data.split, val_fraction=cfg.data.val_fraction_if_missing, seed=cfg.train.seed)
    problem = split_problem(cfg, split)
    if problem:
        raise DataError(problem)
    notes: list[str] = [n for n in [validate_against_base(cfg)] if n]
    problems = [p for p in [attention_problem(cfg)] if p]
    if params_b is not None:
        shape = shape_from_params(params_b)
    else:
        shape = resolve_shape(cfg, shape_overrides)
    if tokenizer is None:
        tokenizer = _plan_tokenizer(cfg, split, notes)
    extra_stops: set[int] = set()
    if tokenizer is not None:
        ensure_chat_template(tokenizer)
        for tok in ("<|im_end|>", "<|eot_id|>", "<|endoftext|>"):
            tid = tokenizer.convert_tokens_to_ids(tok) if tok in tokenizer.get_vocab() else None
            if tid is not None and tok != "<|endoftext|>":
                extra_stops.add(tid)
        tk = tokenise_all(tokenizer, split.train, kind=cfg.data.kind, assistant_only=cfg.data.assistant_only_loss,
                          max_length=cfg.data.max_length)
        problem = fit_problem(tk, cfg.data.max_length)
        if problem:
            raise DataError(f"{split.source}: {problem}")
        lengths = length_report(tk, cfg.data.max_length)
        eos = eos_report(tk, eos_ids(tokenizer, extra_stops), tokenizer)
        steps = steps_report(tk, cfg)
    else:
        lengths, eos, steps = {"count": len(split.train), "note": "tokenizer unavailable"}, None, None
    mem = {m: asdict(estimate_memory(shape, cfg, m)) for m in ("full", "lora", "qlora")}
    n_m, n_e = shape.params()
    plan = {
        "base": cfg.base, "untrained": cfg.is_tiny, "method": cfg.method, "split": split.source,
        "samples": {"train": len(split.train), "val": len(split.val)},
        "shape": asdict(shape), "params_b": round((n_m + n_e) / 1e9, 3),
        "max_length": cfg.data.max_length, "micro_batch_size": cfg.train.micro_batch_size,
        "gradient_checkpointing": cfg.train.gradient_checkpointing,
        "checkpoint_fraction": cfg.train.checkpoint_fraction,
        "memory_gb": mem, "memory_formula": memory_doc.split("Memory formula")[1].split("Calibrated")[0].strip(),
        "seed_table_gb": {f"{k[0]} {k[1]}": v for k, v in SEED_TABLE.items()},
        "lengths": lengths, "eos": eos, "steps": steps, "notes": notes, "problems": problems,
    }
    if gpu_mem_gb is not None:
        plan["fit"] = fitting_method(shape, cfg, gpu_mem_gb)
        plan["longest"] = longest_report(shape, cfg, gpu_mem_gb)
    return plan


def longest_report(shape: Shape, cfg: TrainConfig, gpu_mem_gb: float) -> dict[str, Any]:
    """The longest single sequence (batch 1) that trains in `gpu_mem_gb` with this config's method on
    the long path (training/long_context.py; the `long` preset), and whether this config is on it. A
    config whose rows are longer than its own memory allows is pointed there."""
    from .config import with_changes
    from .long_context import long_memory_gb, longest_length

    on_path = bool(cfg.train.mlp_tile_tokens and cfg.train.offload_checkpoints and cfg.train.gradient_checkpointing)
    long_cfg = cfg if on_path else with_changes(cfg, {
        "train.gradient_checkpointing": True, "train.checkpoint_fraction": 1.0, "train.offload_checkpoints": True,
        "train.mlp_tile_tokens": 4096, "train.micro_batch_size": 1, "train.fused_lora": cfg.method != "full",
        "train.cuda_graphs": False})  # the long path recomputes, which a graphed layer cannot
    tokens = longest_length(shape, long_cfg, gpu_mem_gb)
    host = long_memory_gb(shape, long_cfg, tokens)["host_gb"] if tokens else 0.0
    return {"gpu_mem_gb": gpu_mem_gb, "method": cfg.method, "tokens": tokens, "on_long_path": on_path,
            "fits_max_length": tokens >= cfg.data.max_length, "host_gb": round(host, 1)}


def _plan_tokenizer(cfg: TrainConfig, split: Any, notes: list[str]):
    if cfg.is_tiny:
        from .tiny import build_tokenizer

        return build_tokenizer(split.all_texts(), cfg.tiny.vocab_size)
    try:
        from .loading import load_tokenizer
        from .recipe import base_path

        return load_tokenizer(base_path("", cfg), local_only=True)
    except Exception:
        notes.append(f"the tokenizer of {cfg.base} is not downloaded here: no length histogram, EOS check or step "
                     "count; run --plan where the model is downloaded (memory needs only the shape)")
        return None


def _gc_text(plan: dict[str, Any]) -> str:
    if not plan["gradient_checkpointing"]:
        return "off"
    frac = plan.get("checkpoint_fraction", 1.0)
    return "on" if frac >= 1 else f"on for {frac:.0%} of the layers"


def format_plan(plan: dict[str, Any]) -> str:
    """The plan as text for the terminal."""
    out = []
    b = plan["base"] + (" (UNTRAINED tiny model: demo only)" if plan["untrained"] else "")
    out.append(f"base {b}: {plan['params_b']}B parameters, shape from {plan['shape']['source']}")
    out.append(f"split {plan['split']}: {plan['samples']['train']} train, {plan['samples']['val']} val samples")
    out.append(f"\nestimated peak GPU memory (max_length {plan['max_length']}, micro-batch {plan['micro_batch_size']}, "
               f"gradient checkpointing {_gc_text(plan)}):")
    out.append("  method   weights  optimizer  activations     peak  +context  card needs")
    for m, e in plan["memory_gb"].items():
        mark = " <- this run" if m == plan["method"] else ""
        out.append(f"  {m:<7} {e['weights_gb']:8.2f} {e['optimizer_gb']:10.2f} {e['activations_gb']:12.2f} "
                   f"{e['peak_gb']:8.2f} {e['overhead_gb']:9.2f} {e['total_gb']:8.2f} GB{mark}")
    out.append("  (peak: what PyTorch allocates, metrics.jsonl's gpu_mem_gb; card needs: plus the CUDA context "
               "and allocator slack)")
    out.append("  seed article's table: " + ", ".join(f"{k} {v} GB" for k, v in plan["seed_table_gb"].items()))
    if "fit" in plan:
        f = plan["fit"]
        fits = ", ".join(m for m, ok in f["fits"].items() if ok) or "none"
        out.append(f"  fits in {f['gpu_mem_gb']:g} GB: {fits}; recommended: {f['recommended'] or '-'}")
        if f["hint"]:
            out.append(f"  {f['hint']}")
    if "longest" in plan:
        lg = plan["longest"]
        how = "as configured" if lg["on_long_path"] else "on the long path (--preset long, or --set train.mlp_tile_tokens=4096 --set train.offload_checkpoints=true)"
        out.append(f"  longest sequence at batch 1 in {lg['gpu_mem_gb']:g} GB ({lg['method']}, {how}): {lg['tokens']:,} "
                   f"tokens (PyTorch's share of the card, as benches/gpu/long_context.py caps it; the CUDA context "
                   f"comes on top), with {lg['host_gb']:g} GB of CPU memory for the offloaded layer inputs")
    ln = plan["lengths"]
    if ln.get("histogram"):
        out.append(f"\ntoken lengths: min {ln['min']}, median {ln['median']}, p95 {ln['p95']}, max {ln['max']}; "
                   f"{ln['cut']} of {ln['count']} samples longer than max_length {plan['max_length']} get cut")
        peak = max(h["count"] for h in ln["histogram"]) or 1
        for h in ln["histogram"]:
            out.append(f"  {h['from']:>6}-{h['to']:<6} {'#' * round(30 * h['count'] / peak):<30} {h['count']}")
    eos = plan["eos"]
    if eos:
        if eos["ok"]:
            out.append(f"\nEOS check: all {eos['turns']} assistant turns end with {', '.join(eos['eos_tokens'])}: the "
                       "model learns to stop")
        else:
            out.append(f"\nEOS check FAILED: {eos['without_eos']} of {eos['turns']} assistant turns have no EOS "
                       f"({', '.join(eos['eos_tokens'])}) among their trained tokens (one ends {eos['example_end']!r}). "
                       "The model will never learn to stop: fix the chat template so each assistant turn ends with "
                       "the EOS token")
    if plan["steps"]:
        s = plan["steps"]
        out.append(f"\nsteps: {s['sequences']} sequences, {s['sequences_per_step']} per step, "
                   f"{s['steps_per_epoch']} per epoch, {s['steps']} in all")
    for n in plan["notes"]:
        out.append(f"note: {n}")
    for p in plan.get("problems") or []:
        out.append(f"PROBLEM: {p}")
    return "\n".join(out)


# ---------------------------------------------------------------- launching: device, time, refusal
# (added for the launch confirmation, issue 15 item 2: the Train screen's dialog and `studio train`)

CPU_MAX_PARAMS_B = 1.5   # above this, training on a CPU takes days: refused (launch_refusal)
CPU_FLOPS_PER_CORE = 70e9  # fp32 FLOP/s a core sustains in training (time estimate only), fitted on the
                           # smollm2-cpu preset's 260 tokens/s on 2 idle cores (4 x 134.5M FLOPs a token)
GPU_MFU = 0.2             # rough share of the card's bf16 peak a run uses (the seed ~0.1, fast ~0.33 at 7B)
GPU_MEMORY_MARGIN = 1.1   # refuse a run whose card needs more than this times the card's memory


def local_device() -> dict[str, Any]:
    """What a run started here trains on: {"kind": "cuda" | "cpu", "name", "count", "memory_gb"
    (per GPU; None on a CPU), "cores", "ram_gb"}. Imports torch: call it in a worker thread."""
    import os

    import torch

    cores = os.cpu_count() or 1
    try:
        ram_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GB
    except (ValueError, OSError, AttributeError):
        ram_gb = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return {"kind": "cuda", "name": torch.cuda.get_device_name(0), "count": torch.cuda.device_count(),
                "memory_gb": props.total_memory / GB, "cores": cores, "ram_gb": ram_gb}
    return {"kind": "cpu", "name": "cpu", "count": 0, "memory_gb": None, "cores": cores, "ram_gb": ram_gb}


def describe_device(device: dict[str, Any]) -> str:
    """`NVIDIA H100 80GB HBM3 (80 GB)` / `2x ...` / `cpu (2 cores, 23 GB RAM)`."""
    if device["kind"] == "cuda":
        many = f"{device['count']}x " if device.get("count", 1) > 1 else ""
        return f"{many}{device['name']} ({device['memory_gb']:.0f} GB)"
    ram = f", {device['ram_gb']:.0f} GB RAM" if device.get("ram_gb") else ""
    return f"cpu ({device['cores']} cores{ram})"


def memory_plan(cfg: TrainConfig, *, gpu_mem_gb: float | None = None) -> dict[str, Any]:
    """The part of `make_plan` that launch_refusal reads (size and memory), without reading or
    tokenising the split: what `studio train` checks before it starts a run. Raises ConfigError
    when the base's shape is unknown here."""
    shape = resolve_shape(cfg)
    n_m, n_e = shape.params()
    plan = {"base": cfg.base, "untrained": cfg.is_tiny, "method": cfg.method, "params_b": round((n_m + n_e) / 1e9, 3),
            "shape": asdict(shape), "memory_gb": {m: asdict(estimate_memory(shape, cfg, m)) for m in ("full", "lora", "qlora")}}
    if gpu_mem_gb is not None:
        plan["fit"] = fitting_method(shape, cfg, gpu_mem_gb)
        plan["longest"] = longest_report(shape, cfg, gpu_mem_gb)
    return plan


def launch_refusal(plan: dict[str, Any], device: dict[str, Any]) -> str | None:
    """One line saying why a run with this plan (make_plan's or memory_plan's dict) cannot work on
    `device` (local_device's dict), or None. On a CPU: a base above CPU_MAX_PARAMS_B (days of
    training), or more memory than the machine has (a CPU trains in fp32: twice the plan's bf16
    peak). On a GPU: a card that needs more than GPU_MEMORY_MARGIN times its memory."""
    method = plan["method"]
    est = plan["memory_gb"][method]
    params = plan["params_b"]
    if device["kind"] == "cpu":
        instead = "pick the smollm2-cpu preset (SmolLM2-135M), or a GPU host (the host field / --host)"
        if params > CPU_MAX_PARAMS_B:
            return (f"{plan['base']} has {params:.1f}B parameters: {method} on this CPU ({device['cores']} cores) "
                    f"would take days (above {CPU_MAX_PARAMS_B:g}B is refused on a CPU); {instead}")
        need = 2 * est["peak_gb"]
        if device.get("ram_gb") and need > device["ram_gb"]:
            return (f"{plan['base']} {method} needs about {need:.0f} GB in fp32 on a CPU and this machine has "
                    f"{device['ram_gb']:.0f} GB of RAM; {instead}")
        return None
    if device.get("memory_gb") and est["total_gb"] > GPU_MEMORY_MARGIN * device["memory_gb"]:
        fix = (plan.get("fit") or {}).get("hint") or "try qlora, a smaller micro-batch or data.max_length"
        return (f"{plan['base']} {method} needs {est['total_gb']:.1f} GB on the card and {device['name']} has "
                f"{device['memory_gb']:.0f} GB; {fix}")
    return None


def estimate_time(plan: dict[str, Any], device: dict[str, Any]) -> float | None:
    """Rough seconds of training for make_plan's plan on `device`: k*N FLOPs a token (training.metrics'
    MFU formula: k=6 full, 4 lora/qlora; N the matmul parameters) times the tokens of every step,
    over GPU_MFU of the card's bf16 peak, or CPU_FLOPS_PER_CORE a core. None when the steps are
    unknown (the tokenizer is not here)."""
    from .metrics import flops_per_token, peak_flops

    steps, lengths = plan.get("steps"), plan.get("lengths") or {}
    if not steps or not steps.get("sequences") or not lengths.get("total_tokens"):
        return None
    per_seq = min(plan["max_length"], lengths["total_tokens"] / steps["sequences"])
    epochs = steps["steps"] / max(1, steps["steps_per_epoch"])  # max_steps or the epochs, as the run counts them
    tokens = epochs * steps["sequences"] * per_seq
    sh = plan["shape"]
    n_m, _ = Shape(**sh).params()
    matmul = n_m + sh["vocab_size"] * sh["hidden_size"]  # the layers and the output head
    flops = flops_per_token(matmul, plan["method"]) * tokens
    if device["kind"] == "cuda":
        peak = peak_flops(device["name"]) or 100e12
        rate = peak * GPU_MFU * max(1, device.get("count") or 1)
    else:
        rate = CPU_FLOPS_PER_CORE * max(1, device.get("cores") or 1)
    return flops / rate


def format_duration(seconds: float) -> str:
    """`~40 s`, `~12 min`, `~3 h 20 min`, `~4 days`."""
    if seconds < 90:
        return f"~{max(1, round(seconds))} s"
    if seconds < 3600:
        return f"~{round(seconds / 60)} min"
    if seconds < 48 * 3600:
        h, m = divmod(round(seconds / 60), 60)
        return f"~{h} h {m} min" if m else f"~{h} h"
    return f"~{seconds / 86400:.0f} days"
