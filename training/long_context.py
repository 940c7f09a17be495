"""Training on long sequences: nothing whole in the sequence length L but what must be.

At batch 1 and L in the tens or hundreds of thousands of tokens, what fills the GPU is not the
weights but the tensors that grow with L. The long path keeps each of them at O(L) bytes with a
small constant, or in CPU memory:

- attention: sdpa (FlashAttention's kernel for an unmasked causal row at batch 1; transformers
  passes no mask when there is no padding) or flex with a document mask when packing: O(L), never
  an L x L matrix;
- the decoder layers' inputs, kept for the recompute of gradient checkpointing, wait in pinned
  CPU memory (`train.offload_checkpoints`, training/speed.py): L x hidden x 2 bytes per layer
  leave the GPU;
- the MLP runs in tiles of `train.mlp_tile_tokens` rows (`tile_mlp` below), each under its own
  checkpoint, so its three L x intermediate tensors (gate, up, their product: 3.5 x hidden wide for
  Llama) exist for one tile at a time, in forward and in backward;
- the loss: TRL 1.16's fused LM head (training/sft.py) scores tiles of tokens against tiles of the
  vocabulary and recomputes them in backward; the L x vocab logits (fp32 over 128k columns: 512 KB
  a token, what stopped the plain recipe at 8,192 tokens on 80 GB) are never whole;
- the LoRA branches: the fused branch (`train.fused_lora`, training/lora_fused.py) keeps each
  adapted layer's bf16 input once, where PEFT keeps an fp32 copy per projection.

The memory this leaves is modelled in `long_memory` and inverted in `longest_length` (what
`studio train --plan --gpu-mem N` reports); benches/gpu/long_context.py measures both.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import TrainConfig

log = logging.getLogger(__name__)


def tile_mlp(model: Any, tile_tokens: int) -> int:
    """Run every decoder layer's MLP over the sequence in tiles of `tile_tokens` rows.

    With gradients on, each tile runs under a non-reentrant checkpoint of its own: forward keeps
    only the tile's input (a view of the layer's), and backward recomputes one tile's intermediate
    at a time. Under torch.no_grad (eval, generation) the tiles just run one after the other. The
    MLP's result is the same up to the order of float sums: an MLP acts on each token alone.

    Patches each MLP's `forward` on the instance (the module tree, and so the adapter's weight
    names, stay as they are); apply it after anything else that rebinds `forward` (liger's
    kernels, which the Trainer applies in its __init__). Returns the number of MLPs tiled."""
    import torch
    from torch.utils.checkpoint import checkpoint

    from .layers import decoder_layers

    if tile_tokens <= 0:
        raise ValueError(f"tile_tokens must be positive, not {tile_tokens}")
    n = 0
    for layer in decoder_layers(model):
        mlp = getattr(layer, "mlp", None)
        if mlp is None:
            continue
        inner = getattr(mlp, "_studio_untiled_forward", None) or mlp.forward

        def forward(x: torch.Tensor, _inner: Any = inner, _tile: int = tile_tokens) -> torch.Tensor:
            if x.shape[-2] <= _tile:
                return _inner(x)
            tiles = x.split(_tile, dim=-2)
            if torch.is_grad_enabled():
                return torch.cat([checkpoint(_inner, t, use_reentrant=False) for t in tiles], dim=-2)
            return torch.cat([_inner(t) for t in tiles], dim=-2)

        mlp._studio_untiled_forward = inner
        mlp.forward = forward
        n += 1
    return n


def tiling_callback(tile_tokens: int):
    """A TrainerCallback that tiles the MLPs once the Trainer holds the model (after liger has
    rebound their forward in the Trainer's __init__)."""
    from transformers import TrainerCallback

    class TileMlp(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kw):
            if model is not None:
                log.info("MLP in tiles of %d tokens in %d decoder layers", tile_tokens, tile_mlp(model, tile_tokens))

    return TileMlp()


# Bytes per token and hidden unit that the long path keeps on the GPU at its peak (the backward of
# one decoder layer: its recomputed activations and their gradients, the residual stream and the
# loss's inputs outside the layers), with liger's kernels (RMSNorm, SwiGLU, RoPE) and without.
# Measured (H100, Llama-3.1-8B shapes, benches/results/long_context.md): allocated memory at 8,192,
# 25,600, 97,280 and 194,560 tokens within 0.5 GB of what this model gives (7.27 GB + 38 bytes x hidden x L). "plain" is
# an estimate (PEFT's fp32 norms), not measured.
BYTES_PER_TOKEN_H = {"liger": 38.0, "plain": 54.0}
# What the caching allocator reserves beyond what is allocated grows with the length too (free
# pieces between L-sized blocks): 0.94 GB at 25,600 tokens, 2.45 at 97,280, 6.7 at 194,560, about
# 8.7 bytes x hidden per token. The cap (set_per_process_memory_fraction) limits what is reserved.
FRAGMENTATION_PER_TOKEN_H = 8.7


def long_memory_gb(shape: Any, cfg: TrainConfig, length: int, method: str | None = None) -> dict[str, float]:
    """Memory of one optimizer step of the long path (batch 1, `length` tokens), in GB:
    `allocated_gb` (torch.cuda.max_memory_allocated), `peak_gb` (what the caching allocator
    reserves, which a memory cap limits), and `host_gb`, the CPU memory the offloaded layer inputs
    take. The fixed part is the plan's (training/plan.py) weights and optimizer, the dequantised
    widest weight (QLoRA), one MLP tile and one loss tile; the rest grows with the length."""
    from .memory import GB, estimate_memory

    method = method or cfg.method
    base = estimate_memory(shape, cfg, method, gradient_checkpointing=True, micro_batch=1, max_length=1,
                           checkpoint_fraction=1.0, offload=True)
    h, i = shape.hidden_size, shape.intermediate_size
    tile = min(cfg.train.mlp_tile_tokens or length, length)
    liger = cfg.train.liger_kernel != "off"
    mlp_tile = tile * i * 2 * 3  # gate, up and their product for one tile, bf16
    loss_tile = 4096 * (cfg.train.loss_vocab_chunk or 32768) * 4  # TRL's token x vocab tile, fp32
    per_token = BYTES_PER_TOKEN_H["liger" if liger else "plain"] * h
    offloaded = length * shape.num_hidden_layers * h * 2  # every layer's input, bf16
    if not cfg.train.offload_checkpoints:
        per_token += shape.num_hidden_layers * h * 2  # every layer's input waits on the GPU
    fixed = base.weights_gb * GB + base.optimizer_gb * GB + (2 * i * h if method == "qlora" else 0)
    grows = length * per_token + mlp_tile + loss_tile
    frag = length * FRAGMENTATION_PER_TOKEN_H * h
    return {"fixed_gb": fixed / GB, "length_gb": grows / GB, "allocated_gb": (fixed + grows) / GB,
            "peak_gb": (fixed + grows + frag) / GB,
            "host_gb": offloaded / GB if cfg.train.offload_checkpoints else 0.0}


def longest_length(shape: Any, cfg: TrainConfig, gpu_mem_gb: float, method: str | None = None, *, multiple: int = 1024) -> int:
    """The longest sequence (a multiple of `multiple` tokens) whose long-path step fits when
    PyTorch may use `gpu_mem_gb` (`torch.cuda.set_per_process_memory_fraction`, as the benchmark
    caps it; the card needs the CUDA context, ~0.75 GB, on top). 0 when not even `multiple` fits."""
    lo, hi = 0, multiple
    while long_memory_gb(shape, cfg, hi, method)["peak_gb"] <= gpu_mem_gb:
        lo, hi = hi, hi * 2
        if hi > 1 << 26:
            break
    while hi - lo > multiple:
        mid = (lo + hi) // 2 // multiple * multiple
        if long_memory_gb(shape, cfg, mid, method)["peak_gb"] <= gpu_mem_gb:
            lo = mid
        else:
            hi = mid
    return lo
