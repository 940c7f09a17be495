"""training.metrics.run_summary: the one line the Train screen shows on what a run used."""
from __future__ import annotations

from training.metrics import run_summary


def test_summary_names_the_levers_the_run_resolved():
    start = {"event": "start", "method": "lora", "precision": "bf16", "world_size": 2, "fsdp": False,
             "speed": {"attention": "flex_attention", "liger_kernel": True, "compiled_layers": 0,
                       "gradient_checkpointing": True, "fused_lora": True, "checkpoint_fraction": 0.4,
                       "offload_checkpoints": False}}
    assert run_summary([start, {"step": 1, "loss": 2.0}]) == \
        "lora · bf16 · 2 GPUs, DDP · flex_attention · liger · fused LoRA · 40% of layers recomputed"
    start["speed"].update(liger_kernel=False, fused_lora=False, checkpoint_fraction=1.0, offload_checkpoints=True)
    start.update(method="qlora", world_size=1)
    assert run_summary([start]) == "qlora · bf16 · flex_attention · every layer recomputed · checkpoints in CPU memory"


def test_runs_without_the_information_get_no_summary():
    assert run_summary([{"event": "start", "base": "tiny"}, {"step": 1, "loss": 1.0}]) is None
    assert run_summary([]) is None
    old = {"event": "start", "method": "lora", "precision": "fp32",
           "speed": {"attention": "sdpa", "gradient_checkpointing": True}}  # before checkpoint_fraction was recorded
    assert run_summary([old]) == "lora · fp32 · sdpa · every layer recomputed"
