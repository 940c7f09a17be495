"""The decoder layers of a model, and which of them gradient checkpointing recomputes: shared by
the speed levers (training/speed.py), the long path (training/long_context.py) and the memory
formula (training/memory.py)."""
from __future__ import annotations

from typing import Any


def checkpointed_layers(n_layers: int, fraction: float) -> list[int]:
    """Indices of the round(fraction * n) layers to checkpoint, spread evenly over the depth."""
    k = max(0, min(n_layers, round(fraction * n_layers)))
    return [i for i in range(n_layers) if (i + 1) * k // n_layers > i * k // n_layers]


def decoder_layers(model: Any) -> list[Any]:
    import torch

    for mod in model.modules():
        if isinstance(mod, torch.nn.ModuleList) and len(mod) and type(mod[0]).__name__.endswith("DecoderLayer"):
            return list(mod)
    return []
