"""The fast paths of the trainer, each with a clean fallback where its kernel is missing.

Measured on an H100 with Qwen2.5-7B shapes (benches/gpu/NOTES.md): the seed recipe is CPU-bound,
not GPU-bound. Its sdpa attention on packed (padding-free) batches dispatches to cuDNN attention
with a mask, which costs ~1.7 ms of CPU per call; flex attention with a document mask avoids it.
Liger's fused kernels (RMSNorm, SwiGLU, RoPE) cut memory and elementwise passes (TRL 1.16 already
computes the loss in chunks, without the full logits). QLoRA's `prepare_model_for_kbit_training`
upcasts the embeddings and output head to fp32 (about 2 GB at 7B); keeping them in bf16 is what
brings the lean preset's 7B QLoRA from the seed's 9.2 GB to about 7 GB. Since the run is bound by
launching kernels, the presets run the seed's step as fewer, larger micro-batches and recompute
only part of the layers (`checkpoint_fraction`, `speed_callbacks`).

Every choice here resolves to what the current machine can run: on a CPU (CI, laptops) flex
attention and liger are skipped and sdpa is used, so the same config trains everywhere.
"""
from __future__ import annotations

import importlib.util
import logging
from typing import Any

from .layers import checkpointed_layers, decoder_layers  # noqa: F401  (checkpointed_layers: re-exported)

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


def resolve_liger(requested: str, *, compiled: bool = False) -> bool:
    """`auto`/`on`: liger's fused kernels on a CUDA GPU when liger-kernel is installed; `off`: never.
    `on` without the package or without a GPU falls back with a log line rather than failing.
    With compiled layers `auto` means off: inductor fuses the same norms and activations itself,
    and dynamo cannot trace liger's autograd functions under activation checkpointing (torch 2.11,
    H100: AssertionError in higher_order_ops, benches/gpu/NOTES.md)."""
    if requested == "off" or (compiled and requested == "auto"):
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
    graph (dynamic shapes). Returns how many layers were compiled; 0 when not on a GPU.

    Flex attention stays outside the compiled layers (`_flex_outside_compile`): inside a
    dynamic-shape graph, torch 2.11's inductor fails to lower it (LoweringException: unsupported
    operand type(s) for &: 'floor' and 'Add'); transformers compiles it on its own anyway."""
    if not cuda_available():
        return 0
    layers = decoder_layers(model)
    if layers:
        _flex_outside_compile()
    for layer in layers:
        layer.compile(dynamic=True)
    return len(layers)


def _flex_outside_compile() -> None:
    import torch
    from transformers import AttentionInterface
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    current = ALL_ATTENTION_FUNCTIONS["flex_attention"]
    if getattr(current, "_studio_outside_compile", False):
        return
    wrapped = torch.compiler.disable(current, recursive=False)
    wrapped._studio_outside_compile = True
    AttentionInterface.register("flex_attention", wrapped)


def apply_loss_vocab_chunk(columns: int | None) -> bool:
    """Set the vocabulary width of TRL's chunked log-prob tiles (TRL 1.16 reads the module constant
    `trl.trainer.utils._CHUNKED_LOGPROB_CHUNK_SIZE` at each call; it is private, so a TRL without
    it leaves the default and logs why). Returns whether it was applied."""
    try:
        import trl.trainer.utils as tu
    except ImportError:
        return False
    if not hasattr(tu, "_CHUNKED_LOGPROB_CHUNK_SIZE"):
        if columns is not None:
            log.warning("train.loss_vocab_chunk=%d ignored: this TRL has no _CHUNKED_LOGPROB_CHUNK_SIZE", columns)
        return False
    default = _TRL_DEFAULT_CHUNK.setdefault("columns", tu._CHUNKED_LOGPROB_CHUNK_SIZE)
    tu._CHUNKED_LOGPROB_CHUNK_SIZE = int(columns) if columns is not None else default
    return columns is not None


_TRL_DEFAULT_CHUNK: dict[str, int] = {}


def apply_checkpoint_fraction(model: Any, fraction: float) -> int:
    """Turn checkpointing off on the layers outside `checkpointed_layers` (transformers' decoder
    layers read their own `gradient_checkpointing` flag at each call). Returns the count left on."""
    layers = decoder_layers(model)
    keep = set(checkpointed_layers(len(layers), fraction))
    for i, layer in enumerate(layers):
        if hasattr(layer, "gradient_checkpointing") and i not in keep:
            layer.gradient_checkpointing = False
    return sum(1 for layer in layers if getattr(layer, "gradient_checkpointing", False))


def offload_checkpoint_inputs(model: Any) -> int:
    """Wrap each checkpointed layer's checkpoint function in `save_on_cpu`: the inputs that
    non-reentrant checkpointing keeps for the recompute (saved through `save_for_backward`, so the
    hooks see them) go to pinned CPU memory; what the layer saves inside stays under the
    checkpoint's own hooks. transformers 5.24 has this as `offload=True`; 5.17 (the GPU box) has
    not, hence this. Returns the number of layers wrapped.

    Tensors over PINNED_MAX_BYTES go to pageable memory instead of pinned: PyTorch's pinned
    (CachingHost) allocator rounds every block up to a power of two, so at 350,000 tokens each
    layer's 2.87 GB input took a 4 GB block, 128 GB for the 32 layers of an 8B model, and the
    kernel killed the process on a 128 GB host (benches/gpu/NOTES.md, run 6). Pageable copies are
    synchronous, which costs little beside a layer's compute at such lengths."""
    import torch

    pin = torch.cuda.is_available()
    n = 0
    for layer in decoder_layers(model):
        func = getattr(layer, "_gradient_checkpointing_func", None)
        if not getattr(layer, "gradient_checkpointing", False) or func is None or getattr(func, "_studio_offload", False):
            continue

        def run(function, *args, _func=func, **kwargs):
            with _saved_on_cpu(pin):
                return _func(function, *args, **kwargs)

        run._studio_offload = True  # type: ignore[attr-defined]  # marks a wrapper already installed
        layer._gradient_checkpointing_func = run
        n += 1
    return n


PINNED_MAX_BYTES = 1 << 30


def _saved_on_cpu(pin: bool):
    """torch.autograd.graph.save_on_cpu, with tensors over PINNED_MAX_BYTES kept in pageable memory
    (offload_checkpoint_inputs says why)."""
    import torch

    def pack(t: torch.Tensor):
        if t.device.type == "cpu":
            return (None, t)
        pinned = pin and t.numel() * t.element_size() <= PINNED_MAX_BYTES
        cpu = torch.empty(t.size(), dtype=t.dtype, layout=t.layout, pin_memory=pinned)
        cpu.copy_(t, non_blocking=pinned)
        return (t.device, cpu)

    def unpack(packed):
        device, t = packed
        return t if device is None else t.to(device, non_blocking=t.is_pinned())

    return torch.autograd.graph.saved_tensors_hooks(pack, unpack)


def checkpointing_callback(fraction: float = 1.0, offload: bool = False):
    """A TrainerCallback that, once the Trainer has switched checkpointing on for every layer (it
    does so inside `train()`, before `on_train_begin`), leaves it on for `fraction` of them
    (`apply_checkpoint_fraction`) and offloads their inputs to the CPU when asked."""
    from transformers import TrainerCallback

    class Checkpointing(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kw):
            if model is None:
                return
            if fraction < 1.0:
                n = apply_checkpoint_fraction(model, fraction)
                log.info("gradient checkpointing on %d of %d decoder layers", n, len(decoder_layers(model)))
            if offload:
                log.info("checkpointed inputs of %d layers kept in CPU memory", offload_checkpoint_inputs(model))

    return Checkpointing()


def lora_fusing_callback():
    """A TrainerCallback that swaps PEFT's LoRA branches to `lora_fused.DropoutLinear` once the
    Trainer holds the PEFT model (SFTTrainer wraps the base in `__init__`)."""
    from transformers import TrainerCallback

    class FuseLora(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kw):
            if model is not None:
                from .lora_fused import fuse_lora_dropout

                log.info("LoRA dropout fused into %d adapter projections", fuse_lora_dropout(model))

    return FuseLora()


def speed_callbacks(train_cfg: Any, method: str = "lora", max_length: int = 1024) -> list[Any]:
    """The Trainer callbacks a config's speed and memory choices need (none for the seed's recipe):
    partial or offloaded checkpointing, the fused LoRA branch (before the CUDA graphs, which
    capture it), the graphed layers."""
    cbs = []
    if train_cfg.fused_lora and method != "full":
        cbs.append(lora_fusing_callback())
    if getattr(train_cfg, "cuda_graphs", False):
        from .cuda_graphs import graphs_callback

        cbs.append(graphs_callback(train_cfg.micro_batch_size * max_length))
    if train_cfg.mlp_tile_tokens:
        from .long_context import tiling_callback

        cbs.append(tiling_callback(train_cfg.mlp_tile_tokens))
    if not train_cfg.gradient_checkpointing or (train_cfg.checkpoint_fraction >= 1 and not train_cfg.offload_checkpoints):
        return cbs
    if train_cfg.devices > 1 and train_cfg.distributed == "fsdp":
        log.warning("train.checkpoint_fraction and train.offload_checkpoints are not applied under FSDP, which "
                    "checkpoints every wrapped layer itself")
        return cbs
    return cbs + [checkpointing_callback(train_cfg.checkpoint_fraction, train_cfg.offload_checkpoints)]


def describe(attn: str, liger: bool, compiled_layers: int, gradient_checkpointing: bool) -> dict[str, Any]:
    """What the run actually used, for the metrics header and status."""
    return {"attention": attn, "liger_kernel": liger, "compiled_layers": compiled_layers,
            "gradient_checkpointing": gradient_checkpointing}
