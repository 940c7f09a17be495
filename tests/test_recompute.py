"""train.mlp_recompute (training/recompute.py): the MLP's gates recomputed in backward give the same
loss and gradients, keep less for backward, skip layers that checkpoint themselves, and a run
with the switch trains, says so and is planned with less memory."""
from __future__ import annotations

import pytest

from tests.training_fixtures import tiny_config, write_split
from training import recompute, runs, speed


def _lora_llama(seed: int = 0):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=96, num_hidden_layers=3,
                                         num_attention_heads=4, num_key_value_heads=2))
    return get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                            target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))


def _step(model, *, count_saved: bool = False):
    """One forward and backward on a fixed row: the loss, the LoRA gradients, and the bytes autograd
    kept for backward (each saved tensor's storage once)."""
    import torch

    saved: dict[int, int] = {}

    def pack(t):
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    model.train()
    ids = torch.randint(0, 300, (1, 41), generator=torch.Generator().manual_seed(1))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads, sum(saved.values())


def test_recomputed_gates_give_the_same_loss_and_gradients_and_keep_less():
    import torch

    loss0, g0, kept0 = _step(_lora_llama())
    model = _lora_llama()
    assert recompute.recompute_mlp_gates(model) == 3
    assert recompute.recompute_mlp_gates(model) == 0  # already patched: not wrapped twice
    loss1, g1, kept1 = _step(model)
    assert torch.equal(loss0, loss1)
    assert g0.keys() == g1.keys() and len(g0) == 3 * 4 * 2  # A and B of q/k/v/o in 3 layers
    for name in g0:
        assert torch.allclose(g0[name], g1[name], rtol=1e-5, atol=1e-7), name
    # each MLP keeps its input (32 wide) instead of gate and up (2 x 96) for 41 tokens, fp32
    assert kept0 - kept1 >= 3 * 41 * (2 * 96 - 32) * 4 * 0.9


def test_layers_that_checkpoint_themselves_or_are_tiled_are_left_alone():
    from training import long_context

    model = _lora_llama()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    layers = model.base_model.model.model.layers
    assert speed.apply_checkpoint_fraction(model, 0.34) == 1  # one of three layers recomputes whole
    assert recompute.recompute_mlp_gates(model) == 2
    assert [getattr(layer.mlp, "_studio_gates_recomputed", False) for layer in layers].count(True) == 2
    tiled = _lora_llama()
    long_context.tile_mlp(tiled, 8)
    assert recompute.recompute_mlp_gates(tiled) == 0


def test_without_grad_the_patched_mlp_gives_the_same_logits():
    import torch

    model = _lora_llama().eval()
    ids = torch.randint(0, 300, (1, 17), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        before = model(input_ids=ids).logits
        recompute.recompute_mlp_gates(model)
        after = model(input_ids=ids).logits
    assert torch.equal(before, after)


@pytest.fixture
def split(tmp_path):
    return write_split(tmp_path / "splits" / "v1", n_train=12, n_val=4)


def test_a_run_with_mlp_recompute_trains_and_says_so(tmp_path, split, caplog):
    import logging

    from training.metrics import read_metrics, run_summary

    caplog.set_level(logging.INFO, logger="training.recompute")
    cfg = tiny_config(split, **{"train.gradient_checkpointing": False, "train.mlp_recompute": True,
                                "train.max_steps": 2})
    run = runs.create_run(tmp_path / "runs", cfg, name="gates")
    assert runs.execute(run).state == "done"
    assert "MLP gate and up projections recomputed in backward in 2 decoder layers" in caplog.text
    records = read_metrics(run)[0]
    start = next(r for r in records if r.get("event") == "start")
    assert start["speed"]["mlp_recompute"] is True
    assert "MLP gates recomputed" in run_summary(records)


def test_the_plan_counts_recomputed_gates_as_less_memory():
    from training.config import load_config
    from training.plan import estimate_memory, resolve_shape

    def peak(**over):
        cfg = load_config(preset="fast", overrides={"base": "Qwen/Qwen2.5-7B-Instruct", **over})
        return estimate_memory(resolve_shape(cfg), cfg).peak_gb

    whole = peak(**{"train.gradient_checkpointing": False})
    gates = peak(**{"train.gradient_checkpointing": False, "train.mlp_recompute": True})
    fast = peak()  # 75% of the layers recomputed whole
    assert gates < fast < whole
    # full fine-tuning needs the MLP weights' gradients, which keep what the gates would drop
    full = load_config(preset="fast", overrides={"base": "Qwen/Qwen2.5-7B-Instruct", "method": "full",
                                                 "train.gradient_checkpointing": False, "train.mlp_recompute": True})
    plain = load_config(preset="fast", overrides={"base": "Qwen/Qwen2.5-7B-Instruct", "method": "full",
                                                  "train.gradient_checkpointing": False})
    assert estimate_memory(resolve_shape(full), full).peak_gb == estimate_memory(resolve_shape(plain), plain).peak_gb
