"""The few device calls the GPU benches make, with CPU stand-ins, so the benches also run at tiny
size on a machine without a GPU (tests/test_gpu_bench_cpu.py runs them in CI: a bench that breaks
is found before a device call is spent on it). On the CPU, memory reads 0 and the card is "cpu"."""
from __future__ import annotations

import torch

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
# on the CPU: fp32 (bf16 autocast there is slow and not what is measured)
DTYPE = torch.bfloat16 if CUDA else torch.float32
PRECISION = "bf16" if CUDA else "fp32"

# a shape small enough to train on any CPU in seconds (vocab > 500: rows hold ids 100..499)
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=1024, tie_word_embeddings=False)


def sync() -> None:
    if CUDA:
        torch.cuda.synchronize()


def reset_peak() -> None:
    if CUDA:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def allocated_gb() -> float:
    return torch.cuda.memory_allocated() / 2**30 if CUDA else 0.0


def peak_allocated_gb() -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if CUDA else 0.0


def peak_reserved_gb() -> float:
    return torch.cuda.max_memory_reserved() / 2**30 if CUDA else 0.0


def name() -> str:
    return torch.cuda.get_device_name() if CUDA else "cpu"


def device_map() -> dict:
    return {"": 0} if CUDA else {"": "cpu"}
