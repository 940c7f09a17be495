"""The loss head's gradient computed in its forward: two passes over the LM head's weight, not three.

TRL 1.16's `ChunkedLogProbFunction` (the fused head every studio SFT run scores with) never holds
the (tokens x vocab) logits: its forward folds vocabulary tiles into online log-sum-exp statistics,
and its backward computes every tile again to turn it into the logits' gradient. That is three
(tokens x hidden x vocab) matmuls a micro-batch: the logits, the same logits again, and the
gradient's. On Qwen2-7B shapes (152,064 columns) the head is ~8% of a fast-preset step's GPU time
(benches/gpu/NOTES.md, run 13's profile), a third of it the recomputation.

The gradient of a token's log-probability with respect to its hidden state does not depend on the
gradient that arrives in backward: d logp_n / d h_n = W[target_n] - sum_v p_nv W_v, and backward only
scales it by that token's incoming gradient. `LogProbsGradInForward` computes it in the forward,
where the logits are at hand: for a block of `ROWS` tokens it fills the whole vocabulary row once
(one matmul, TRL's `ROWS x vocab` buffer in place of its `tokens x 32,768` tile: 156 MB against 134 MB
on those shapes), folds it with TRL's kernel into the log-probability, entropy and top-1 flag, turns
it in place into `onehot - p` with TRL's backward kernel, and multiplies that by the weight (the
second matmul, accumulated in fp32 as TRL does). It keeps that (tokens x hidden) fp32 gradient for
backward instead of the hidden states and the weight. The rounding differs from TRL's in one place:
`onehot - p` is rounded to the compute dtype before the incoming gradient scales it (TRL scales
first); both accumulate the matmul in fp32.

It applies where the gradient can be known in forward: the head's weight and bias frozen (LoRA,
QLoRA), the weight already in the compute dtype, no logit scale or softcap, and the entropy and
top-1 flag used without gradient (they are only logged). `applies()` says so; anything else runs
TRL's function. The kernels are TRL's own (Triton on a GPU, its torch versions elsewhere), imported
from `trl.kernels.chunked_logprob`, whose private names `training.sft.TRL_RANGE` pins.

Off (`GRAD_IN_FORWARD`) until a GPU call measures it; tests/test_logprob_head.py holds it to TRL's
values and gradients.
"""
from __future__ import annotations

from typing import Any

import torch

GRAD_IN_FORWARD = False
"""Use `LogProbsGradInForward` in the studio's loss head (training/sft.py). The GPU bench turns it
on with `+mod.training.logprob_head.GRAD_IN_FORWARD=true`."""

ROWS = 512
"""Tokens a block: the (ROWS x vocab) logits buffer in the compute dtype, 156 MB at 152,064 columns."""

OUTPUTS = ("entropy", "is_top1")
"""The optional statistics computed beside the log-probabilities, as TRL's SFTTrainer asks for."""


def _compute_dtype(hidden: torch.Tensor) -> torch.dtype:
    dev = hidden.device.type
    return torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else hidden.dtype


def applies(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """Whether the gradient can be computed in forward (module docstring), under the current autocast."""
    if not GRAD_IN_FORWARD or weight.requires_grad or (bias is not None and bias.requires_grad):
        return False
    if not (torch.is_grad_enabled() and hidden.requires_grad):
        return False  # nothing needs the gradient: TRL's function does no backward work either
    return weight.dtype == _compute_dtype(hidden)


class LogProbsGradInForward(torch.autograd.Function):
    """Per-token log-probabilities of `hidden @ weight.T + bias` at `targets`, with the entropy and
    the top-1 flag (no gradient), the gradient with respect to `hidden` computed in forward."""

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        from trl.kernels import chunked_logprob as ck

        dtype = _compute_dtype(hidden)
        n_tok, width = hidden.shape
        vocab = weight.shape[0]
        dev = hidden.device
        f32 = torch.float32
        triton = ck._use_triton(dev)
        kernel = {"logit_scale": 1.0, "softcap": 1.0, "inv_t": 1.0, "HAS_SOFTCAP": False}
        flags = {f"HAS_{name.upper()}": name in OUTPUTS for name in ck.OPTIONAL_OUTPUTS}

        running_max = torch.full((n_tok,), float("-inf"), device=dev, dtype=f32)
        sum_exp = torch.zeros((n_tok,), device=dev, dtype=f32)
        x_sum_exp = torch.zeros((n_tok,), device=dev, dtype=f32)
        unused = torch.zeros((n_tok,), device=dev, dtype=f32)  # log(sum p^2) and mean logit: not asked for
        max_before_target = torch.full((n_tok,), float("-inf"), device=dev, dtype=f32)
        target_logit = torch.zeros((n_tok,), device=dev, dtype=f32)
        ones = torch.ones((n_tok,), device=dev, dtype=f32)  # d logp / d logp: the gradient's scale comes in backward
        grad = torch.zeros((n_tok, width), device=dev, dtype=f32)
        buf = torch.empty((min(n_tok, ROWS), vocab), device=dev, dtype=dtype)
        w = weight if weight.dtype == dtype else weight.to(dtype)  # applies() keeps this a no-op on the GPU path

        for start in range(0, n_tok, ROWS):
            end = min(start + ROWS, n_tok)
            rows = slice(start, end)
            n = end - start
            tile = buf[:n]
            torch.mm(hidden[rows].to(dtype), w.t(), out=tile)
            if bias is not None:
                tile.add_(bias.to(dtype))
            fold = ck._forward_kernel[(n,)] if triton else ck._forward_tile
            fold(tile, tile.stride(0), targets[rows], running_max[rows], sum_exp[rows], x_sum_exp[rows],
                 unused[rows], unused[rows], max_before_target[rows], target_logit[rows], 0, vocab,
                 BLOCK_SIZE=ck._BLOCK_SIZE, **flags, **kernel)
            log_z = running_max[rows] + torch.log(sum_exp[rows])
            # the tile becomes onehot(target) - p in place: TRL's backward kernel with a gradient of 1
            unfold = ck._backward_kernel[(n, -(-vocab // ck._BLOCK_SIZE))] if triton else ck._backward_tile
            unfold(tile, tile.stride(0), targets[rows], log_z, log_z, ones[rows], log_z, 0, vocab,
                   HAS_LOGPROB_GRAD=True, HAS_ENTROPY_GRAD=False, BLOCK_SIZE=ck._BLOCK_SIZE, **kernel)
            ck._addmm_fp32(grad[rows], tile, w)

        log_z = running_max + torch.log(sum_exp)
        logprobs = target_logit - log_z
        entropy = log_z - x_sum_exp / sum_exp
        is_top1 = (target_logit >= running_max) & (target_logit > max_before_target)
        ctx.save_for_backward(grad)
        ctx.hidden_dtype = hidden.dtype
        ctx.mark_non_differentiable(entropy, is_top1)
        return logprobs, entropy, is_top1

    @staticmethod
    def backward(ctx: Any, grad_logprobs: torch.Tensor | None, *_: Any) -> tuple[Any, ...]:
        (grad,) = ctx.saved_tensors
        if grad_logprobs is None:
            return None, None, None, None
        return (grad * grad_logprobs.float().unsqueeze(1)).to(ctx.hidden_dtype), None, None, None
