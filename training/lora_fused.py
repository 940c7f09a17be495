"""LoRA's input branch, dropout and A in one autograd function that keeps no dropout copy.

PEFT 0.21 computes a LoRA branch as `lora_B(lora_A(dropout(x.to(fp32))))`: the layer's bf16
input is copied to fp32 (LoRA weights are fp32), dropped out in fp32, cast back to bf16 by
autocast for the matmul, and autograd keeps the dropped-out bf16 copy and the mask for backward.
That is 3 bytes per element kept and about 21 bytes of memory traffic per element in forward, for
each of q/k/v/o in every layer, although q, k and v read the same input.

`DropoutLinear` (swapped in as the class of each `lora_A` Linear, so parameters, state-dict keys,
merging and saving are untouched) keeps only the input itself for backward (q, k and v share it:
autograd keeps one tensor, not three copies) and the RNG state of its dropout. Backward restores
that state and draws the same mask again, the way activation checkpointing replays dropout. The
matmul runs in the autocast dtype, as PEFT's does under autocast, else in the adapter's dtype. Without dropout (p = 0) it is a
plain linear in the compute dtype, still without the fp32 copy.

Inside a CUDA graph capture (train.cuda_graphs, training/cuda_graphs.py) the generator's state
cannot be read or set, so there the function keeps the mask itself (1 byte an element) instead;
PyTorch's dropout inside a graph draws a new mask at each replay.

The adapted layer's output is fused too (`FUSE_OUTPUT`): PEFT adds the branch as
`result + lora_B(a) * scaling`, two elementwise passes over the layer's (tokens x out) output in
forward and one more in backward, for every adapted projection. The fused layer computes
`addmm(result, a, B.T, alpha=scaling)` instead: cuBLAS scales and adds in the matmul's epilogue,
and addmm's backward passes the gradient of `result` through without a kernel. It rounds once where
PEFT rounds the branch to bf16 before adding it. Only for a plain `peft...lora.Linear` with one
active adapter, no variant, no bias in B and a fused A; anything else (merged, disabled, several
adapters, extra arguments) runs PEFT's own forward. On the fast preset: 16,234 against 16,144
tokens/s with PEFT's output, +0.6% (one H100, benches/gpu/NOTES.md run 12).

Measured effect: benches/gpu/NOTES.md. Equal gradients to the unfused branch for the same mask:
tests/test_lora_fused.py.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def _compute_dtype(x: torch.Tensor, w: torch.Tensor) -> torch.dtype:
    """Under autocast its dtype, as PEFT's branch gets; without, the adapter's own dtype (PEFT casts
    the input to lora_A's dtype then, so lora_B receives what it holds)."""
    dev = x.device.type
    if torch.is_autocast_enabled(dev):
        return torch.get_autocast_dtype(dev)
    return w.dtype


def _generator(device: torch.device) -> torch.Generator:
    if device.type == "cuda":
        return torch.cuda.default_generators[device.index if device.index is not None else torch.cuda.current_device()]
    return torch.default_generator


FUSE_OUTPUT = True
"""Fuse the adapted layer's `result + B(a) * scaling` into one addmm (module docstring); the GPU
bench turns it off to measure it (`+mod.training.lora_fused.FUSE_OUTPUT=false`)."""

FUSE_INPUT_GRAD = False
"""The whole adapted layer as one autograd function (`_LoraLinearFn`), whose backward adds the
branch's input gradient in the base matmul's epilogue (`addmm(branch, grad, W)`) instead of autograd
adding two (tokens x in) tensors: one elementwise pass fewer per adapted projection. Off until a
GPU call measures it (`+mod.training.lora_fused.FUSE_INPUT_GRAD=true`)."""

KEEP_MASK = False
"""Keep the dropout mask instead of the generator state even outside a CUDA graph capture (tests)."""


def _keeps_mask(device: torch.device) -> bool:
    return KEEP_MASK or (device.type == "cuda" and torch.cuda.is_current_stream_capturing())


def _dropped_again(x: torch.Tensor, p: float, state: Any, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The forward's dropout of `x` (in the compute dtype) and its mask, in backward: from the kept
    mask, else drawn again from the generator state the forward saved (same state, same tensor, same
    kernel, same mask)."""
    if mask is not None:
        return torch.ops.aten.native_dropout_backward(x, mask, 1.0 / (1.0 - p)), mask
    gen = _generator(x.device)
    now = gen.get_state()
    gen.set_state(state)
    try:
        return torch.native_dropout(x, p, True)
    finally:
        gen.set_state(now)


class _DropoutLinearFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, p: float, dtype: torch.dtype) -> torch.Tensor:
        ctx.p, ctx.dtype = p, dtype
        keep = _keeps_mask(x.device)  # a graph capture: no generator state to read (module docstring)
        ctx.state = None if keep else _generator(x.device).get_state()
        xd, mask = torch.native_dropout(x.to(dtype), p, True)
        ctx.save_for_backward(*((x, weight, mask) if keep else (x, weight)))
        return F.linear(xd, weight.to(dtype))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight, *kept = ctx.saved_tensors
        xd, mask = _dropped_again(x.to(ctx.dtype), ctx.p, ctx.state, kept[0] if kept else None)
        grad = grad.to(ctx.dtype)
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            gx = grad @ weight.to(ctx.dtype)
            grad_x = torch.ops.aten.native_dropout_backward(gx, mask, 1.0 / (1.0 - ctx.p)).to(x.dtype)
        if ctx.needs_input_grad[1]:
            grad_w = (grad.reshape(-1, grad.shape[-1]).t() @ xd.reshape(-1, xd.shape[-1])).to(weight.dtype)
        return grad_x, grad_w, None, None


class _LoraLinearFn(torch.autograd.Function):
    """`x @ W.T + b + scaling * (dropout(x) @ A.T) @ B.T` for a frozen base W (and b), the branch's
    dropout kept as `_DropoutLinearFn` keeps it. Backward: the gradients of A and B, and x's as one
    `addmm(branch's input gradient, grad, W)`."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, a_w: torch.Tensor,
                b_w: torch.Tensor, p: float, scaling: float, dtype: torch.dtype) -> torch.Tensor:
        ctx.p, ctx.scaling, ctx.dtype = p, scaling, dtype
        xc = x.to(dtype)
        lead = x.shape[:-1]
        x2 = xc.reshape(-1, x.shape[-1])
        result = F.linear(x2, weight.to(dtype), None if bias is None else bias.to(dtype))
        mask = None
        ctx.state = None
        if p > 0:
            keep = _keeps_mask(x.device)
            ctx.state = None if keep else _generator(x.device).get_state()
            xd, mask = torch.native_dropout(x2, p, True)
            if not keep:
                mask = None
        else:
            xd = x2
        a = F.linear(xd, a_w.to(dtype))
        out = torch.addmm(result, a, b_w.t().to(dtype), alpha=scaling)
        ctx.save_for_backward(x, weight, a_w, b_w, a, *(() if mask is None else (mask,)))
        return out.view(*lead, out.shape[-1])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight, a_w, b_w, a, *kept = ctx.saved_tensors
        dtype, p = ctx.dtype, ctx.p
        x2 = x.reshape(-1, x.shape[-1]).to(dtype)
        g = grad.reshape(-1, grad.shape[-1]).to(dtype)
        xd, mask = _dropped_again(x2, p, ctx.state, kept[0] if kept else None) if p > 0 else (x2, None)
        grad_x = grad_a = grad_b = None
        ga = (g @ b_w.to(dtype)) * ctx.scaling  # the gradient of the branch's A output
        if ctx.needs_input_grad[4]:
            grad_b = (g.t() @ a).mul_(ctx.scaling).to(b_w.dtype)
        if ctx.needs_input_grad[3]:
            grad_a = (ga.t() @ xd).to(a_w.dtype)
        if ctx.needs_input_grad[0]:
            gx = ga @ a_w.to(dtype)
            if p > 0:
                gx = torch.ops.aten.native_dropout_backward(gx, mask, 1.0 / (1.0 - p))
            grad_x = torch.addmm(gx, g, weight.to(dtype)).view(x.shape).to(x.dtype)
        return grad_x, None, None, grad_a, grad_b, None, None, None


class DropoutLinear(torch.nn.Linear):
    """A LoRA `A` projection with the branch's dropout folded in (see the module docstring)."""

    dropout_p: float = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = _compute_dtype(x, self.weight)
        if self.bias is not None:  # LoRA's A has none; keep any other use correct
            return F.linear(F.dropout(x, self.dropout_p, self.training).to(dtype), self.weight.to(dtype),
                            self.bias.to(dtype))
        if self.training and self.dropout_p > 0:
            return _DropoutLinearFn.apply(x, self.weight, self.dropout_p, dtype)
        return F.linear(x.to(dtype), self.weight.to(dtype))


def _fused_forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """A plain LoRA Linear's forward with the branch added by addmm's epilogue (module docstring)."""
    plain = self._plain_forward  # PEFT's own, bound
    if args or kwargs or self.disable_adapters or self.merged or len(self.active_adapters) != 1:
        return plain(x, *args, **kwargs)
    name = self.active_adapters[0]
    if name not in self.lora_A or name in self.lora_variant:
        return plain(x, *args, **kwargs)
    lora_a, lora_b = self.lora_A[name], self.lora_B[name]
    if type(lora_a) is not DropoutLinear or lora_b.bias is not None \
            or not isinstance(self.lora_dropout[name], torch.nn.Identity):
        return plain(x, *args, **kwargs)
    base = self.base_layer
    if FUSE_INPUT_GRAD and type(base) is torch.nn.Linear and not base.weight.requires_grad \
            and (base.bias is None or not base.bias.requires_grad):
        dtype = _compute_dtype(x, base.weight)
        p = lora_a.dropout_p if lora_a.training else 0.0
        return _LoraLinearFn.apply(x, base.weight, base.bias, lora_a.weight, lora_b.weight, p,
                                   self.scaling[name], dtype)
    result = self.base_layer(x)
    a = lora_a(x)  # dropout and A, in the compute dtype
    dtype = result.dtype
    out = torch.addmm(result.reshape(-1, result.shape[-1]), a.reshape(-1, a.shape[-1]).to(dtype),
                      lora_b.weight.t().to(dtype), alpha=self.scaling[name])
    return out.view(result.shape)


_FUSED_CLASSES: dict[Any, type] = {}


def _fused_class(cls: Any) -> type:
    """A subclass of PEFT's LoRA Linear with the fused forward (same name: PEFT's repr and
    isinstance checks see the class they know)."""
    if cls not in _FUSED_CLASSES:
        _FUSED_CLASSES[cls] = type(cls.__name__, (cls,), {"forward": _fused_forward, "_plain_forward": cls.forward,
                                                       "__module__": cls.__module__})
    return _FUSED_CLASSES[cls]


def fuse_lora_dropout(model: Any) -> int:
    """Swap every plain LoRA branch of `model` (a PEFT model) to `DropoutLinear`: its dropout
    becomes Identity, its input is no longer cast to the adapter's fp32, and `lora_A` drops the
    input itself with the same probability. A plain LoRA Linear also gets the addmm output
    (`FUSE_OUTPUT`). Branches with a variant (DoRA, ...) are left as they
    are. Returns the number of branches fused; 0 when PEFT is missing."""
    try:
        from peft.tuners.lora import LoraLayer
        from peft.tuners.lora.layer import Linear as LoraLinear
    except ImportError:
        return 0
    n = 0
    for mod in model.modules():
        if not isinstance(mod, LoraLayer):
            continue
        variants = getattr(mod, "lora_variant", {}) or {}
        fused_here = 0
        for name, lin in getattr(mod, "lora_A", {}).items():
            if name in variants or type(lin) not in (torch.nn.Linear, DropoutLinear):
                continue
            drop = mod.lora_dropout[name]
            if type(lin) is torch.nn.Linear:
                lin.__class__ = DropoutLinear
                lin.dropout_p = float(drop.p) if isinstance(drop, torch.nn.Dropout) else 0.0
                mod.lora_dropout[name] = torch.nn.Identity()
            fused_here += 1
        if fused_here:
            mod.cast_input_dtype_enabled = False  # read by PEFT's _cast_input_dtype: no fp32 copy of x
            if FUSE_OUTPUT and type(mod) is LoraLinear:
                mod.__class__ = _fused_class(LoraLinear)
        n += fused_here
    return n
