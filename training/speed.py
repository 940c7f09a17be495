"""The fast paths of the trainer, each with a clean fallback where its kernel is missing.

Measured on an H100 with Qwen2.5-7B shapes (benches/gpu/NOTES.md): the seed recipe is CPU-bound,
not GPU-bound. Its sdpa attention on packed (padding-free) batches dispatches to cuDNN attention
with a mask, which costs ~1.7 ms of CPU per call; flex attention with a document mask avoids it.
Liger's fused kernels (RMSNorm, SwiGLU, RoPE, linear + cross-entropy without materialising the
fp32 logits) cut memory and elementwise passes. QLoRA's `prepare_model_for_kbit_training` upcasts
the embeddings and output head to fp32 (about 2 GB at 7B); keeping them in bf16 is what lets the
lean preset fit 7B QLoRA under 7 GB.

Every choice here resolves to what the current machine can run: on a CPU (CI, laptops) flex
attention and liger are skipped and sdpa is used, so the same config trains everywhere.
"""
from __future__ import annotations

import importlib.util
import logging
from typing import Any

log = logging.getLogger(__name__)


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def flex_attention_available() -> bool:
    return importlib.util.find_spec("torch.nn.attention.flex_attention") is not None


def liger_available() -> bool:
    return importlib.util.find_spec("liger_kernel") is not None


def resolve_attention(requested: str, *, packing: bool) -> str:
    """`auto`: flex attention on a CUDA GPU (packed samples get a block-diagonal document mask
    without cuDNN's per-call set-up), else sdpa. Any other value is passed to transformers as is."""
    if requested != "auto":
        return requested
    if cuda_available() and flex_attention_available():
        return "flex_attention"
    return "sdpa"


def resolve_liger(requested: str) -> bool:
    """`auto`/`on`: liger's fused kernels on a CUDA GPU when liger-kernel is installed; `off`: never.
    `on` without the package or without a GPU falls back with a log line rather than failing."""
    if requested == "off":
        return False
    ok = cuda_available() and liger_available()
    if requested == "on" and not ok:
        why = "no CUDA GPU" if not cuda_available() else "liger-kernel is not installed (pip install liger-kernel)"
        log.warning("train.liger_kernel=on but %s: training without liger's fused kernels", why)
    return ok


def prepare_quantized(model: Any, *, upcast_fp32: bool, gradient_checkpointing: bool) -> Any:
    """Ready a 4-bit model for adapter training.

    upcast_fp32=True is PEFT's `prepare_model_for_kbit_training` (the seed's path): it casts every
    non-quantised parameter (norms, embeddings, output head) to fp32. False keeps them in the
    compute dtype and only freezes the base: ~2 GB less at 7B, same matmuls. With non-reentrant
    gradient checkpointing (what the trainer uses) the inputs need no requires_grad hook, but it is
    set anyway so reentrant checkpointing works too.
    """
    if upcast_fp32:
        from peft import prepare_model_for_kbit_training

        return prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    for p in model.parameters():
        p.requires_grad_(False)
    if gradient_checkpointing:
        model.enable_input_require_grads()
    return model


def compile_layers(model: Any) -> int:
    """Regional compilation: compile each decoder layer (same code, compiled once, reused 28x)
    instead of the whole model, so start-up stays in seconds and varying packed lengths reuse the
    graph (dynamic shapes). Returns how many layers were compiled; 0 when not on a GPU."""
    if not cuda_available():
        return 0
    layers = _decoder_layers(model)
    for layer in layers:
        layer.compile(dynamic=True)
    return len(layers)


def _decoder_layers(model: Any) -> list[Any]:
    import torch

    for mod in model.modules():
        if isinstance(mod, torch.nn.ModuleList) and len(mod) and type(mod[0]).__name__.endswith("DecoderLayer"):
            return list(mod)
    return []


def describe(attn: str, liger: bool, compiled_layers: int, gradient_checkpointing: bool) -> dict[str, Any]:
    """What the run actually used, for the metrics header and status."""
    return {"attention": attn, "liger_kernel": liger, "compiled_layers": compiled_layers,
            "gradient_checkpointing": gradient_checkpointing}
