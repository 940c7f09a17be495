"""The metrics stream of a run: `RUN_DIR/metrics.jsonl`, one JSON object a line, append-only.

The studio's live chart and the SSH helper tail this file, so the writer flushes every line and the
reader is offset-based (`read_metrics(run_dir, offset)` returns the new offset to pass next time).

Lines:
- the first line is a header event, `{"event": "start", ...}` (base, method, `untrained` for the
  tiny model, trainable parameters, the MFU formula, the speed levers used, `world_size` and
  whether FSDP sharded the model: accelerate drops FSDP on CPU-only runs); resumes add `{"event": "resume", "step": S}`.
  Lines with an `event` key have no metrics; chart code keeps only lines with `step`.
- metric lines: `step`, `epoch`, `loss`, `learning_rate`, `grad_norm`, `tokens_per_s`,
  `tokens_seen`, `gpu_mem_gb` (peak allocated by PyTorch's caching allocator since the model
  load, GiB), `gpu_reserved_gb` (peak reserved by it: what the process holds, less the ~0.5 GB
  CUDA context), `mfu`, `time` (train logs) or `step`, `epoch`, `eval_loss`, `time`.
  Absent key: not measured at that step.
- on resume from checkpoint-S the lines with step > S are cut before training continues, so every
  step appears once (status.json's `metrics_generation` goes up by one: a tailer that sees it change,
  or the file shrink below its offset, re-reads from 0).

MFU (model FLOPs utilisation, GPU only) = model FLOPs per token * tokens/s / peak bf16 FLOP/s.
Model FLOPs per token: 2N forward + 4N backward = 6N for full fine-tuning; with a frozen base (LoRA,
QLoRA) the backward needs activation gradients (2N) but no weight gradients, so 4N. N = matmul
parameters (every Linear, including the output head; not the embedding lookup). Recomputation by
gradient checkpointing and attention-score FLOPs are not counted (the usual MFU convention).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable

METRICS_FILE = "metrics.jsonl"

# Dense bf16 tensor-core peaks from vendor data sheets (FLOP/s); override with FINETUNE_STUDIO_PEAK_TFLOPS.
PEAK_BF16 = {
    "H200": 989e12, "H100 SXM": 989e12, "H100 NVL": 835e12, "H100 PCIe": 756e12, "H100": 989e12,
    "A100": 312e12, "L40S": 362e12, "L40": 181e12, "A10G": 70e12, "A10": 125e12, "L4": 121e12,
    "RTX 4090": 165e12, "RTX 3090": 71e12, "RTX 3060": 51e12, "V100": 125e12, "T4": 65e12,
}

MFU_FORMULA = ("mfu = k*N*tokens_per_s / peak_flops; k=6 (full) or 4 (lora/qlora: frozen base, no weight "
               "gradients); N = Linear (matmul) parameters incl. output head")


def is_main_process() -> bool:
    """False in the non-zero ranks of a multi-GPU (torchrun) run."""
    return os.environ.get("RANK", "0") == "0"


def flops_per_token(matmul_params: int, method: str) -> float:
    return (6 if method == "full" else 4) * matmul_params


def peak_flops(device_name: str) -> float | None:
    env = os.environ.get("FINETUNE_STUDIO_PEAK_TFLOPS")
    if env:
        return float(env) * 1e12
    for key in sorted(PEAK_BF16, key=len, reverse=True):
        if key.lower() in device_name.lower():
            return PEAK_BF16[key]
    return None


def count_matmul_params(model: Any) -> int:
    """Parameters of every Linear layer (4-bit Linear4bit included, by its logical shape)."""
    import torch

    n = 0
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) and "lora_" not in name:
            n += mod.in_features * mod.out_features
    return n


class MetricsWriter:
    """Appends JSON lines, flushed and fsync-free (a crash loses at most the line being written)."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / METRICS_FILE

    def append(self, record: dict[str, Any]) -> None:
        if not is_main_process():
            return  # under torchrun every GPU runs the callbacks; one writer keeps each step once
        record = {k: v for k, v in record.items() if v is not None}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def read_metrics(run_dir: str | Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Complete lines after byte `offset`, and the offset to continue from.

    A half-written last line is left for the next call. If the file is shorter than `offset` (it was
    cut on resume), reading restarts at 0.
    """
    path = Path(run_dir) / METRICS_FILE
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return [], 0
    if size < offset:
        offset = 0
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read()
    end = data.rfind(b"\n") + 1
    records = []
    for line in data[:end].splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records, offset + end


def run_summary(records: list[dict[str, Any]]) -> str | None:
    """One line on what a run actually used, from its start line (metrics.jsonl): method, precision,
    GPUs, and the speed levers as resolved on that machine (a lever asked for but missing there,
    e.g. liger without its package, does not appear). None when the records hold no start line
    with that information (runs written before it was recorded)."""
    start = next((r for r in records if r.get("event") == "start" and "speed" in r), None)
    if start is None:
        return None
    sp = start["speed"] or {}
    parts = [str(start.get("method", "")), str(start.get("precision", ""))]
    world = int(start.get("world_size") or 1)
    if world > 1:
        parts.append(f"{world} GPUs, {'FSDP' if start.get('fsdp') else 'DDP'}")
    if sp.get("attention"):
        parts.append(str(sp["attention"]))
    if sp.get("liger_kernel"):
        parts.append("liger")
    if sp.get("fused_lora"):
        parts.append("fused LoRA")
    if sp.get("compiled_layers"):
        parts.append(f"{sp['compiled_layers']} layers compiled")
    if sp.get("gradient_checkpointing"):
        frac = sp.get("checkpoint_fraction", 1.0)
        parts.append("every layer recomputed" if frac is None or frac >= 1 else f"{frac:.0%} of layers recomputed")
        if sp.get("offload_checkpoints"):
            parts.append("checkpoints in CPU memory")
    else:
        parts.append("no recomputation")
    return " · ".join(p for p in parts if p)


def metric_points(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Only the metric lines (those with a step), for charts."""
    return [r for r in records if "step" in r and "event" not in r]


def truncate_after(run_dir: str | Path, step: int) -> int:
    """Drop metric lines with step > `step` (resume from checkpoint-`step`); return lines dropped."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            dropped += 1
            continue
        if "step" in rec and "event" not in rec and rec["step"] > step:
            dropped += 1
        else:
            kept.append(line)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(k + "\n" for k in kept), encoding="utf-8")
    os.replace(tmp, path)
    return dropped


def last_value(run_dir: str | Path, key: str, *, at_or_before: int | None = None) -> Any:
    recs, _ = read_metrics(run_dir)
    val = None
    for r in metric_points(recs):
        if key in r and (at_or_before is None or r["step"] <= at_or_before):
            val = r[key]
    return val


def make_callback(run_dir: str | Path, *, method: str, matmul_params: int, on_status: Callable[..., None],
                  tokens_offset: int = 0, step_hook: Callable[[int], None] | None = None):
    """A transformers TrainerCallback that writes metrics.jsonl lines and status updates.

    `on_status(**fields)` updates status.json; `step_hook(step)` runs after every optimizer step
    (debug hooks, cancel checks).
    """
    import torch
    from transformers import TrainerCallback

    writer = MetricsWriter(run_dir)
    on_gpu = torch.cuda.is_available()
    peak = peak_flops(torch.cuda.get_device_name()) if on_gpu else None
    fpt = flops_per_token(matmul_params, method)

    class RunCallback(TrainerCallback):
        def __init__(self) -> None:
            self.last_t: float | None = None
            self.last_tokens: float | None = None

        def on_train_begin(self, args, state, control, **kw):
            self.last_t = time.time()
            self.last_tokens = None
            on_status(state="running", step=state.global_step, max_steps=state.max_steps)

        def on_step_end(self, args, state, control, **kw):
            on_status(step=state.global_step, max_steps=state.max_steps, epoch=round(state.epoch or 0, 4),
                      throttle=True)
            if step_hook:
                step_hook(state.global_step)

        def on_log(self, args, state, control, logs=None, **kw):
            logs = logs or {}
            if "loss" not in logs:
                return  # eval logs arrive through on_evaluate, the final summary has train_loss
            now = time.time()
            tokens = logs.get("num_tokens")
            seen = tokens + tokens_offset if tokens is not None else None
            tps = None
            if tokens is not None and self.last_t is not None:
                prev = self.last_tokens if self.last_tokens is not None else 0
                if now > self.last_t:
                    tps = (tokens - prev) / (now - self.last_t)
            self.last_t, self.last_tokens = now, tokens
            rec = {"step": state.global_step, "epoch": round(state.epoch or 0, 4), "loss": logs.get("loss"),
                   "learning_rate": logs.get("learning_rate"), "grad_norm": _num(logs.get("grad_norm")),
                   "tokens_per_s": round(tps, 1) if tps is not None else None,
                   "tokens_seen": int(seen) if seen is not None else None, "time": round(now, 3)}
            if on_gpu:
                rec["gpu_mem_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
                rec["gpu_reserved_gb"] = round(torch.cuda.max_memory_reserved() / 2**30, 3)
                if peak and tps:
                    rec["mfu"] = round(fpt * tps / peak, 4)
            writer.append(rec)

        def on_evaluate(self, args, state, control, metrics=None, **kw):
            if metrics and "eval_loss" in metrics:
                writer.append({"step": state.global_step, "epoch": round(state.epoch or 0, 4),
                               "eval_loss": metrics["eval_loss"], "time": round(time.time(), 3)})
                on_status(eval_loss=metrics["eval_loss"])

        def on_save(self, args, state, control, **kw):
            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            on_status(last_checkpoint=str(ckpt.relative_to(Path(run_dir))) if ckpt.is_dir() else None,
                      step=state.global_step)

    return RunCallback()


def _num(v: Any) -> Any:
    try:
        return float(v) if v is not None else None
    except (TypeError, ValueError):
        return None
