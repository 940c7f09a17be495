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
mask at the start of every forward with position_ids and no attention mask.

Measured (H100, benches/gpu/NOTES.md run 5): fast at micro-batch 4, 12,485 -> 13,015 tokens/s.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
from trl import SFTTrainer

TRL_RANGE = ((1, 16), (2, 0))
"""[low, high) of TRL versions whose SFTTrainer.compute_loss the plain path below mirrors."""


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
        outputs = model(**inputs, fused_lm_head=True)
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
