"""Peak GPU memory of a training run, by formula: what `studio train --plan` shows and what
fits a card (training/plan.py uses it; training/long_context.py models the long path on it).

Memory formula (bytes; N = all parameters, N_e = embedding + output head, N_m = N - N_e,
P = LoRA parameters = sum over adapted Linear layers of r*(in+out); t = micro_batch * max_length
tokens; L layers, h hidden, i MLP width; C = layers recomputed by gradient checkpointing
(train.checkpoint_fraction of L, 0 without it)):
  weights      full/lora: 2N (bf16);  qlora: 0.516*N_m (nf4 + double quant) + 2*N_e, or 4*N_e when
               quant.upcast_fp32 (prepare_model_for_kbit_training casts embeddings and head to fp32)
  optimizer    full: 2N grads + 8N AdamW m,v (fp32);  lora/qlora: 16P (fp32 weights, grads, m, v)
  activations  a = 12h + 4h (LoRA dropout's masks) + k*i bytes per token per layer, k = 5.6 with fused
               kernels (liger or compiled layers), 8.5 without; with train.fused_lora 12h - 6h instead
               (PEFT keeps a bf16 copy of each adapted projection's input and a mask; the fused branch
               keeps q/k/v's shared input and o's input, 4h, against 12h by count; 10h less measured,
               fitted on the 7B fast point at fraction 0.55: training/lora_fused.py);
               (L - C)*t*a  for the layers that keep their activations
               + C*t*h*s     the checkpointed layers' inputs (s = 2, or 4 when upcast to fp32;
                             0 with train.offload_checkpoints: they wait in CPU memory)
               + t*a*w       one layer recomputed in backward when C > 0 (w = 1.25 fused, 1.8 not; x1.2 upcast)
               + 2*i*h       qlora: the widest weight dequantised to bf16 for its matmul
               + L*t*(2h + m) train.cuda_graphs (never with checkpointing): each graphed layer's static
                             input, and with the fused branch and dropout its masks, 1 byte per
                             element of each adapted projection's input (m = 4h for q/k/v/o), which
                             the branch keeps inside a graph instead of the generator state. 1.15 GiB
                             for 7B at 2 x 1024 by count; 1.13 GiB measured (benches/gpu/NOTES.md run 11)
  (The loss needs no full logits: TRL 1.16 computes it in chunks.)
  FSDP         with train.devices = D > 1 and train.distributed = fsdp, per GPU: weights / D plus three
               layers gathered whole (the current unit, the prefetched next one and one in flight),
               optimizer / D. Fitted on one run: 14B LoRA, seed preset, 2x H100, 17.26 GB per GPU
               (two layers, the first guess, gave 16.59)
  peak         weights + optimizer + activations: what PyTorch allocates, metrics.jsonl's gpu_mem_gb
  card         peak + 0.75 GB CUDA context + 5% allocator slack: what the card must have free
Calibrated on H100 runs (benches/results/gpu_train.md; Qwen2.5-7B/14B shapes, 1024 tokens a row,
packing): within 1.2% of the measured peak for the seed's LoRA (15.48 GB) and QLoRA (9.19 GB), LoRA
without checkpointing (design.md, 26.3 GB), the fast preset at two checkpoint fractions (23.69,
24.28 GB), the lean preset at micro-batch 2 and 4 (6.23, 7.02 GB) and 14B lean (11.02 GB).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .layers import checkpointed_layers
from .shapes import SHAPES

if TYPE_CHECKING:
    from .config import TrainConfig

GB = 1024**3


@dataclass
class Shape:
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    tie_word_embeddings: bool = False
    source: str = ""

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        h, kv = self.hidden_size, self.num_key_value_heads * self.head_dim
        return {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
                "gate_proj": (h, self.intermediate_size), "up_proj": (h, self.intermediate_size),
                "down_proj": (self.intermediate_size, h)}

    def params(self) -> tuple[int, int]:
        """(layer matmul parameters, embedding + head parameters)."""
        per_layer = sum(a * b for a, b in self.linear_shapes().values()) + 2 * self.hidden_size
        emb = self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)
        return per_layer * self.num_hidden_layers + self.hidden_size, emb


def shape_from_params(billions: float) -> Shape:
    """The built-in shape nearest in size to `billions` parameters (for --params)."""
    best = min(SHAPES, key=lambda k: abs(math.log(sum(Shape(**SHAPES[k]).params()) / 1e9 / billions)))
    return Shape(**SHAPES[best], source=f"nearest built-in shape to {billions}B ({best})")


@dataclass
class MemoryEstimate:
    method: str
    weights_gb: float
    trainable_params: int
    optimizer_gb: float
    activations_gb: float
    peak_gb: float
    overhead_gb: float
    total_gb: float


def estimate_memory(shape: Shape, cfg: TrainConfig, method: str | None = None, *, gradient_checkpointing: bool | None = None,
                    micro_batch: int | None = None, max_length: int | None = None,
                    checkpoint_fraction: float | None = None, offload: bool | None = None) -> MemoryEstimate:
    """Peak GPU memory of a training run by the formula in this module's docstring. The keyword
    arguments stand in for the config's values (what-ifs for `fitting_method`)."""
    method = method or cfg.method
    gc = cfg.train.gradient_checkpointing if gradient_checkpointing is None else gradient_checkpointing
    t = (micro_batch or cfg.train.micro_batch_size) * (max_length or cfg.data.max_length)
    n_m, n_e = shape.params()
    n = n_m + n_e
    h, i, L = shape.hidden_size, shape.intermediate_size, shape.num_hidden_layers
    upcast = method == "qlora" and cfg.quant.upcast_fp32
    if method == "qlora":
        weights = 0.516 * n_m + (4 if upcast else 2) * n_e
    else:
        weights = 2 * n
    lin = shape.linear_shapes()
    targets = cfg.lora.target_modules
    adapted = {name: ab for name, ab in lin.items() if name in targets or targets == ["all-linear"]}
    lora_p = sum(cfg.lora.r * (a + b) for a, b in adapted.values()) * L
    optim: float
    if method == "full":
        trainable, optim = n, 10 * n
    else:
        trainable, optim = lora_p, 16 * lora_p
    fused = cfg.train.liger_kernel != "off" or cfg.train.compile_layers
    per_tok = 12 * h + (5.6 if fused else 8.5) * i
    if method != "full" and cfg.train.fused_lora:
        per_tok -= 6 * h  # one input kept per projection, shared by q/k/v; no mask, no copy
    elif method != "full" and cfg.lora.dropout > 0:
        per_tok += 4 * h
    frac = cfg.train.checkpoint_fraction if checkpoint_fraction is None else checkpoint_fraction
    n_ck = len(checkpointed_layers(L, frac)) if gc else 0
    offload = cfg.train.offload_checkpoints if offload is None else offload
    kept_inputs = 0 if offload else n_ck * t * h * (4 if upcast else 2)
    acts = (L - n_ck) * t * per_tok + kept_inputs
    if n_ck:
        acts += t * per_tok * (1.25 if fused else 1.8) * (1.2 if upcast else 1.0)
    if method == "qlora":
        acts += 2 * i * h
    if cfg.train.cuda_graphs and not gc:
        masks = sum(a for a, _b in adapted.values()) if method != "full" and cfg.train.fused_lora and cfg.lora.dropout > 0 else 0
        acts += L * t * (2 * h + masks)
    if cfg.train.devices > 1 and cfg.train.distributed == "fsdp":
        # sharded weights and optimizer state, plus three layers gathered whole (module docstring)
        layer_w = (n_m / L) * (0.516 if method == "qlora" else 2)
        weights = weights / cfg.train.devices + 3 * layer_w
        optim = optim / cfg.train.devices
    peak = weights + optim + acts
    overhead = 0.75 * GB + 0.05 * peak
    return MemoryEstimate(method, weights / GB, int(trainable), optim / GB, acts / GB, peak / GB, overhead / GB,
                          (peak + overhead) / GB)


def fitting_method(shape: Shape, cfg: TrainConfig, gpu_mem_gb: float) -> dict[str, Any]:
    """Which methods fit `gpu_mem_gb` as configured; which fit once more layers recompute
    (`adjust`: the smallest checkpoint fraction that fits) or, failing that, once the checkpointed
    layers' inputs wait in CPU memory (`offload`: the fraction that fits with
    train.offload_checkpoints); and the recommendation: lora, then qlora, then full, each as
    configured or changed that way (the seed's remedies put gradient checkpointing before QLoRA)."""
    est = {m: estimate_memory(shape, cfg, m) for m in ("full", "lora", "qlora")}
    fits = {m: e.total_gb <= gpu_mem_gb for m, e in est.items()}
    adjust = {m: f for m in fits if not fits[m] and (f := _fraction_that_fits(shape, cfg, m, gpu_mem_gb)) is not None}
    offload = ({} if cfg.train.offload_checkpoints else
               {m: f for m in fits if not fits[m] and m not in adjust
                and (f := _fraction_that_fits(shape, cfg, m, gpu_mem_gb, offload=True)) is not None})
    order = ("lora", "qlora", "full")
    rec = next((m for m in order if fits[m] or m in adjust or m in offload), None)
    hint = None
    if rec in adjust or rec in offload:
        off = rec in offload
        f = offload[rec] if off else adjust[rec]
        need = estimate_memory(shape, cfg, rec, gradient_checkpointing=True, checkpoint_fraction=f, offload=off).total_gb
        sets = "--set train.gradient_checkpointing=true"
        if cfg.train.cuda_graphs:  # graphed layers cannot recompute (training/cuda_graphs.py)
            sets += " --set train.cuda_graphs=false"
        if f != cfg.train.checkpoint_fraction or not cfg.train.gradient_checkpointing:
            sets += f" --set train.checkpoint_fraction={f:g}"
        how = "with more recomputation"
        if off:
            how, sets = "with the checkpointed inputs in CPU memory", sets + " --set train.offload_checkpoints=true"
        hint = f"{rec} fits {gpu_mem_gb:g} GB {how}: {sets} (card needs {need:.1f} GB)"
    elif rec is None:
        alt = estimate_memory(shape, cfg, "qlora", gradient_checkpointing=True, micro_batch=1, checkpoint_fraction=1.0,
                              offload=True)
        hint = (f"nothing fits {gpu_mem_gb:g} GB; qlora with micro-batch 1, gradient checkpointing and offloaded "
                f"checkpoints needs {alt.total_gb:.1f} GB" + ("" if alt.total_gb <= gpu_mem_gb else "; shorten data.max_length too"))
    return {"gpu_mem_gb": gpu_mem_gb, "fits": fits, "adjust": adjust, "offload": offload, "recommended": rec, "hint": hint}


def _fraction_that_fits(shape: Shape, cfg: TrainConfig, method: str, gpu_mem_gb: float, *, offload: bool = False) -> float | None:
    """The smallest checkpoint fraction, in steps of 0.05 above the configured one (from the
    configured one itself with `offload`), at which `method` fits; None if even full
    recomputation does not."""
    current = cfg.train.checkpoint_fraction if cfg.train.gradient_checkpointing else 0.0
    for k in range(1, 21):
        f = k / 20
        above = f >= current - 1e-9 if offload else f > current + 1e-9
        if above and estimate_memory(shape, cfg, method, gradient_checkpointing=True, checkpoint_fraction=f,
                                     offload=offload or None).total_gb <= gpu_mem_gb:
            return f
    return None
