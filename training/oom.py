"""What to do when a run dies of CUDA out-of-memory: the seed article's remedies, in its order.

Q1 of the seed: (1) lower per_device_train_batch_size (e.g. 4 -> 2 or 1), (2) shorten
max_seq_length (e.g. 2048 -> 1024), (3) turn on gradient checkpointing, (4) for LoRA, use QLoRA.
Only remedies that still change something are offered: a batch of 1 cannot shrink, a length of 256
is as short as we go, checkpointing already on every layer is skipped (on only some, the
remedy turns it on for all: train.checkpoint_fraction; with CUDA graphs, it turns them off, since
a graphed layer cannot recompute), a qlora run has no step 4.
Halving the micro-batch doubles grad_accum, so the effective batch (and the recipe) stays the same.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import TrainConfig

MIN_LENGTH = 256


@dataclass(frozen=True)
class Remedy:
    name: str              # "smaller batch", "shorter length", "gradient checkpointing", "qlora"
    changes: dict[str, Any]  # dotted config keys -> new values
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "set": self.changes, "why": self.why}


def remedies(cfg: TrainConfig) -> list[Remedy]:
    """The applicable remedies for `cfg` (a TrainConfig), in the seed's order."""
    out: list[Remedy] = []
    mb, ga = cfg.train.micro_batch_size, cfg.train.grad_accum
    if mb > 1:
        new = max(1, mb // 2)
        out.append(Remedy("smaller batch", {"train.micro_batch_size": new, "train.grad_accum": ga * mb // new},
                          f"micro-batch {mb} -> {new}, grad-accum {ga} -> {ga * mb // new}: same effective batch, "
                          "activations shrink with the batch"))
    n = cfg.data.max_length
    if n > MIN_LENGTH:
        new_len = max(MIN_LENGTH, n // 2)
        out.append(Remedy("shorter length", {"data.max_length": new_len},
                          f"max_length {n} -> {new_len}: activations and logits shrink; check with --plan how many "
                          "samples get cut"))
    if not cfg.train.gradient_checkpointing:
        # a graphed layer cannot recompute (training/cuda_graphs.py): the graphs go with it
        graphs = {"train.cuda_graphs": False} if cfg.train.cuda_graphs else {}
        out.append(Remedy("gradient checkpointing",
                          {"train.gradient_checkpointing": True, "train.checkpoint_fraction": 1.0, **graphs},
                          "recompute activations in backward: much less memory, about 30% slower"
                          + (" (and without CUDA graphs)" if graphs else "")))
    elif cfg.train.checkpoint_fraction < 1.0:
        out.append(Remedy("gradient checkpointing", {"train.checkpoint_fraction": 1.0},
                          f"recompute every layer, not {cfg.train.checkpoint_fraction:.0%} of them: the others' "
                          "activations are freed too, a little slower"))
    if cfg.method == "lora":
        out.append(Remedy("qlora", {"method": "qlora"}, "load the base in 4-bit nf4: weights take about a quarter"))
    elif cfg.method == "full":
        out.append(Remedy("lora", {"method": "lora"}, "train a LoRA adapter instead of all weights: no optimizer "
                                                       "states for the frozen base"))
    return out
