"""TRL's SFTTrainer without host syncs between micro-batches.

A fast run is bound by the CPU launching kernels (benches/gpu/NOTES.md, run 4), so every time the
CPU waits for the GPU the queue runs dry and the GPU idles while it fills again. TRL 1.16's
`compute_loss` waits 5 times per micro-batch, between forward and backward:
`(entropy_sum / num_valid).item()`, the same for token accuracy, `if num_valid > 0` twice and
`.item()` on the token count. `StudioSFTTrainer` computes the same loss the same way and keeps
those statistics on the GPU, one small tensor per micro-batch; they become numbers, all at once,
when the Trainer logs. The logged values are TRL's: a mean over micro-batches of each one's
entropy and accuracy, and the running token count.

The override covers TRL's plain path, the one every studio run takes: no `compute_loss_func`, no
label smoothing, loss type nll or dft, no MoE aux loss, no sequence parallelism, no outputs
returned. Anything else, or a TRL outside the versions whose `compute_loss` this mirrors
(`TRL_RANGE`), goes to TRL's own method unchanged. tests/test_sft_trainer.py holds it to TRL's
numbers and counts the host syncs.

`recipe.sft_args` also turns off the Trainer's `logging_nan_inf_filter` (`isnan(loss) or
isinf(loss)`, two more syncs per micro-batch) with this trainer. One sync per micro-batch is left,
in transformers: `masking_utils.find_packed_sequence_indices` asks `.all()` of the packed-sequence
mask at the start of every forward with position_ids and no attention mask (the CUDA graphs path
skips that mask: training/cuda_graphs.py).

**The loss head without syncs.** On a GPU, TRL's fused head scores only the positions with a label:
`hidden_states[mask]` and `labels[mask]` (boolean indexing: the host waits for the GPU to count
them), and autograd's `masked_scatter` backward (`masked_select`) waits again: four syncs a
micro-batch, 35 in two fast-preset steps (benches/gpu/NOTES.md, run 12). The count is known before
the batch reaches the GPU: `LabelCount` wraps the collator (it runs in the DataLoader worker) and
adds the number of shifted labels as a Python int. `_sync_free_head` then computes TRL's head with
the same kernel (`ChunkedLogProbFunction`, the same columns per tile) over the same positions,
picked by `nonzero_static` with that size and spread back with `index_copy`: no sync. Where
`training/logprob_head.py` applies (and its switch is on), the head's gradient is computed in its
forward, which saves TRL's backward its recomputation of the logits. It covers
one process and a model whose head is a plain projection (no logit scale or softcap, no MoE router
loss, no pre-shifted labels); anything else, or a micro-batch without labels, takes TRL's head.
On the fast preset it is +3.7% (16,482 against 15,888 tokens/s with a log line every 10 steps,
15,989 against 15,416 with one every step: one H100, benches/gpu/NOTES.md run 13).

Measured (H100, benches/gpu/NOTES.md run 5): fast at micro-batch 4, 12,485 -> 13,015 tokens/s.
"""
from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import torch
from trl import SFTTrainer

from . import logprob_head

TRL_RANGE = ((1, 16), (2, 0))
"""[low, high) of TRL versions whose SFTTrainer.compute_loss (and fused head) the plain path below mirrors."""

SYNC_FREE_HEAD = True
"""The loss head without host syncs (module docstring): +3.7% on the fast preset (one H100,
benches/gpu/NOTES.md run 13). The GPU bench measures TRL's head with
`+mod.training.sft.SYNC_FREE_HEAD=false`."""

LABEL_TOKENS = "studio_label_tokens"
"""The batch key `LabelCount` adds: the micro-batch's shifted label count, a Python int."""

HEAD_OUTPUTS = ("log_probs", "entropy", "is_top1")
"""What TRL 1.16's SFTTrainer asks its fused head for (`add_fused_lm_head(..., outputs=...)`)."""

_SCALED_HEAD = ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling")


class LabelCount:
    """A collator that adds the number of labels the head will score (`labels[:, 1:] != -100`) to
    each batch as a Python int, counted on the CPU where the batch is collated."""

    def __init__(self, collate: Any) -> None:
        self.collate = collate

    def __call__(self, examples: Any) -> Any:
        batch = self.collate(examples)
        labels = batch.get("labels") if hasattr(batch, "get") else None
        if isinstance(labels, torch.Tensor) and labels.dim() == 2 and "shift_labels" not in batch:
            batch[LABEL_TOKENS] = int((labels[:, 1:] != -100).sum())
        return batch


def _sync_free_head(model: Any, inputs: dict[str, Any], label_tokens: int | None) -> Any:
    """TRL's fused head (trl/trainer/utils.py, add_fused_lm_head) over the `label_tokens` labelled
    positions without a host sync, or None where it does not apply (module docstring)."""
    if not SYNC_FREE_HEAD or not label_tokens or "labels" not in inputs or "shift_labels" in inputs or not hasattr(model, "get_base_model"):
        return None
    hf = model.get_base_model()
    if hf.device.type not in ("cuda", "cpu"):  # nonzero_static's kernels (CUDA since torch 2.6)
        return None
    text = hf.config.get_text_config()
    if any(getattr(text, name, None) is not None for name in _SCALED_HEAD) or getattr(text, "output_router_logits", False):
        return None
    lm_head = hf.get_output_embeddings()
    if lm_head is None or type(lm_head.weight) is not torch.nn.Parameter:  # a DTensor under FSDP2: TRL's
        return None
    from trl.trainer import utils as trl_utils

    kwargs = {k: v for k, v in inputs.items() if k not in ("labels", "use_cache")}
    hidden = hf.base_model(**kwargs, use_cache=False).last_hidden_state[:, :-1]
    labels = inputs["labels"][:, 1:].to(lm_head.weight.device)
    mask = labels != -100
    idx = torch.nonzero_static(mask.reshape(-1), size=label_tokens).squeeze(1)
    picked = hidden.to(lm_head.weight.device).reshape(-1, hidden.size(-1)).index_select(0, idx)
    targets = labels.reshape(-1).index_select(0, idx)
    with trl_utils.maybe_gather_lm_head_ctx(lm_head.weight, lm_head.bias):
        if logprob_head.applies(picked, lm_head.weight, lm_head.bias):  # the gradient in forward
            log_probs, entropy, is_top1 = logprob_head.LogProbsGradInForward.apply(
                picked, lm_head.weight, lm_head.bias, targets)
        else:
            log_probs, entropy, _, _, is_top1 = trl_utils._ChunkedLogProbFunction.apply(
                picked, lm_head.weight, lm_head.bias, targets, 1.0, trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE, None,
                1.0, HEAD_OUTPUTS)

    def spread(x: torch.Tensor) -> torch.Tensor:  # zeros where no label, as TRL's masked_scatter
        return x.new_zeros(mask.numel()).index_copy(0, idx, x).view(mask.shape)

    return SimpleNamespace(log_probs=spread(log_probs), entropy=spread(entropy),
                           is_top1=spread(is_top1.to(torch.uint8)).bool(), label_mask=mask)


def _version(text: str) -> tuple[int, int]:
    parts = (text.split("+")[0].split(".") + ["0"])[:2]
    return tuple(int("".join(ch for ch in p if ch.isdigit()) or 0) for p in parts)  # type: ignore[return-value]


def trl_supported() -> bool:
    import trl

    return TRL_RANGE[0] <= _version(trl.__version__) < TRL_RANGE[1]


class StudioSFTTrainer(SFTTrainer):
    """SFTTrainer whose per-micro-batch metrics wait on the GPU until the next log (module docstring)."""

    def __init__(self, *args: Any, defer_metrics: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.defer_metrics = defer_metrics and trl_supported()
        # per mode: one float64 row per micro-batch [label tokens, entropy sum, top-1 hits, tokens seen]
        self._pending: dict[str, list[torch.Tensor]] = defaultdict(list)
        self.deferred_batches = 0  # micro-batches that took the deferred path (tests read it)
        self.sync_free_heads = 0  # of those, micro-batches whose head took no host sync (tests read it)
        self._label_tokens: int | None = None
        if SYNC_FREE_HEAD and self.defer_metrics and self.args.world_size == 1:  # the count only the head reads
            self.data_collator = LabelCount(self.data_collator)  # type: ignore[has-type]

    def _prepare_inputs(self, inputs: Any) -> Any:
        # the label count goes to compute_loss beside the batch, never to the model
        self._label_tokens = inputs.pop(LABEL_TOKENS, None) if hasattr(inputs, "pop") else None
        return super()._prepare_inputs(inputs)

    def _plain_path(self, return_outputs: bool) -> bool:
        if not self.defer_metrics or return_outputs:
            return False
        if self.compute_loss_func is not None or self.label_smoother is not None or self.aux_loss_enabled:
            return False
        if self.args.loss_type not in ("nll", "dft"):
            return False
        pc = getattr(self.accelerator, "parallelism_config", None)
        return not (pc is not None and getattr(pc, "sp_enabled", False))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not self._plain_path(return_outputs):
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        mode = "train" if self.model.training else "eval"
        inputs["use_cache"] = False
        # as TRL 1.16 (trl/trainer/sft_trainer.py, compute_loss): the fused head's log-probs, zero on
        # ignored positions; the loss over the step's label tokens when the Trainer counted them
        label_tokens, self._label_tokens = self._label_tokens, None
        # the backbone is called past the prepared model's forward, where accelerate put its
        # autocast: without this the LoRA branches run in fp32 (the likely cause of run 12's 14,876
        # tokens/s against TRL's head at 16,257, benches/gpu/NOTES.md)
        with self.accelerator.autocast():
            outputs = _sync_free_head(model, inputs, label_tokens)
        if outputs is None:
            outputs = model(**inputs, fused_lm_head=True)
        else:
            self.sync_free_heads += 1
        per_token_loss = -outputs.log_probs
        if self.args.loss_type == "dft":
            per_token_loss = per_token_loss * outputs.log_probs.exp().detach()
        num_tokens = outputs.label_mask.sum() if num_items_in_batch is None else num_items_in_batch
        loss = per_token_loss.sum() / torch.as_tensor(num_tokens).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        with torch.no_grad():
            # torch.full, not torch.tensor(n, device=...): a Python number copied to the GPU is a
            # blocking host-to-device copy, which waits for the queue like any other sync
            dev, f64 = outputs.log_probs.device, torch.float64
            seen = torch.zeros((), dtype=f64, device=dev)
            if mode == "train":
                if "attention_mask" in inputs:
                    seen = inputs["attention_mask"].sum().to(f64)
                elif "position_ids" in inputs:
                    seen = torch.full((), inputs["position_ids"].size(1), dtype=f64, device=dev)
                else:
                    raise ValueError("Expected 'attention_mask' or 'position_ids' in inputs.")
            row = torch.stack([outputs.label_mask.sum().to(f64), outputs.entropy.detach().sum().to(f64),
                               outputs.is_top1.sum().to(f64), seen])
        self._pending[mode].append(row)
        self.deferred_batches += 1
        return loss

    def _flush_metrics(self, mode: str) -> None:
        """The pending rows of `mode` into TRL's metric lists: one gather across ranks and one host
        sync for all of them."""
        rows = self._pending.pop(mode, None)
        if not rows:
            return
        stats = torch.stack(rows)
        if self.accelerator.num_processes > 1:  # every rank logs at the same steps with as many rows
            stats = self.accelerator.gather(stats[None]).sum(0)
        metrics = self._metrics[mode]
        for valid, entropy, correct, seen in stats.tolist():
            metrics["entropy"].append(entropy / valid if valid > 0 else 0.0)
            metrics["mean_token_accuracy"].append(correct / valid if valid > 0 else 0.0)
            if mode == "train":
                self._total_train_tokens += int(seen) // self._tp_size
        metrics["num_tokens"] = [self._total_train_tokens]

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        self._flush_metrics("train" if self.model.training else "eval")
        super().log(logs, start_time)
