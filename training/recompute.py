"""Recompute only the MLP's gate and up projections, in the layers that keep their activations.

Whole-layer gradient checkpointing (`train.checkpoint_fraction`) trades the most memory for the
most compute: a checkpointed layer keeps its input (h a token) and runs its whole forward again in
backward. In a LoRA run on the attention projections the MLP is frozen, and what it keeps for
backward is the SwiGLU's two inputs, gate(x) and up(x): 2 x intermediate values a token, about
four fifths of a layer's activations (Qwen2.5-7B: 76 of ~100 KB a token). Its backward needs no
weight gradient, so `down_proj` keeps nothing of its input.

`recompute_mlp_gates` puts only `act(gate(x)) * up(x)` of each such layer under a non-reentrant
checkpoint: the layer keeps x (h a token) instead, and backward runs the two projections again,
about 57% of a Qwen2.5-7B layer's forward FLOPs where a whole-layer recompute runs 100%. Per byte
saved that is about a third cheaper, so the same memory budget buys a faster step: the fast preset
can recompute every MLP's gates instead of three quarters of its layers whole
(benches/gpu/NOTES.md has the prediction and the measurement). The result is the same up to
nothing: the recompute runs the same kernels on the same input (checked in
tests/test_recompute.py).

With liger's kernels the gated product is liger's fused SiLU-mul (which keeps its two inputs and
recomputes the SiLU in backward), else the model's own `act_fn(gate) * up`. MLPs of another shape
(no gate/up/down projections) are left as they are, and so are layers that checkpoint themselves
or MLPs already tiled by `long_context.tile_mlp` (which checkpoints the whole MLP per tile).
"""
from __future__ import annotations

import logging
from typing import Any, Callable

log = logging.getLogger(__name__)


def _gated_product(mlp: Any) -> Callable[[Any], Any] | None:
    """`x -> act(gate_proj(x)) * up_proj(x)` as this MLP computes it, or None for another shape."""
    if not all(hasattr(mlp, n) for n in ("gate_proj", "up_proj", "down_proj")):
        return None
    if mlp._get_name() == "LigerSwiGLUMLP":  # liger binds its forward (and _get_name) on the instance
        from liger_kernel.ops import LigerSiLUMulFunction

        try:  # liger 0.8 passes its multipliers through the Function; older releases take two inputs
            from liger_kernel.transformers.swiglu import _swiglu_dispatch as dispatch
        except ImportError:
            dispatch = LigerSiLUMulFunction.apply
        return lambda x: dispatch(mlp.gate_proj(x), mlp.up_proj(x))
    act = getattr(mlp, "act_fn", None)
    if act is None:
        return None
    return lambda x: act(mlp.gate_proj(x)) * mlp.up_proj(x)


def recompute_mlp_gates(model: Any) -> int:
    """Patch the MLP of every decoder layer that does not checkpoint itself so that backward
    recomputes its gated product instead of keeping it (module docstring). Patches `forward` on
    the instance (the module tree and the adapter's weight names stay as they are); apply it after
    liger has rebound the MLPs' forward and after `apply_checkpoint_fraction`. Returns the number
    of MLPs patched."""
    import torch
    from torch.utils.checkpoint import checkpoint

    from .layers import decoder_layers

    n = 0
    for layer in decoder_layers(model):
        mlp = getattr(layer, "mlp", None)
        if (mlp is None or getattr(layer, "gradient_checkpointing", False)
                or getattr(mlp, "_studio_untiled_forward", None) is not None
                or getattr(mlp, "_studio_gates_recomputed", False)):
            continue
        gated = _gated_product(mlp)
        if gated is None:
            continue

        def forward(x: torch.Tensor, _mlp: Any = mlp, _gated: Callable[[Any], Any] = gated) -> torch.Tensor:
            if torch.is_grad_enabled() and x.requires_grad:
                return _mlp.down_proj(checkpoint(_gated, x, use_reentrant=False))
            return _mlp.down_proj(_gated(x))

        mlp.forward = forward
        mlp._studio_gates_recomputed = True
        n += 1
    return n


def recompute_callback():
    """A TrainerCallback that patches the MLPs once the Trainer holds the model, after liger's
    kernels (the Trainer's __init__) and after the checkpointing callback has chosen the layers."""
    from transformers import TrainerCallback

    class RecomputeMlpGates(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kw):
            if model is not None:
                log.info("MLP gate and up projections recomputed in backward in %d decoder layers",
                         recompute_mlp_gates(model))

    return RecomputeMlpGates()
