"""The long-context path (training/long_context.py): the MLP in tiles gives the trainer the same
gradients, a run with the `long` preset's switches trains, and the plan states the longest sequence."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.training_fixtures import tiny_config, write_split
from training import long_context, runs, speed


@pytest.fixture
def split(tmp_path):
    return write_split(tmp_path / "splits" / "v1", n_train=12, n_val=4)


def _llama(seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=96, num_hidden_layers=3,
                                        num_attention_heads=4, num_key_value_heads=2))


def test_tiled_mlp_under_offloaded_checkpoints_gives_the_same_loss_and_gradients():
    """Tiles of 5 tokens over a 37-token row (a ragged last tile), inside each layer's
    non-reentrant checkpoint with its input offloaded: the loss and every gradient match the whole
    MLP's to float rounding, and no layer's MLP ever sees more than one tile while grads are on."""
    import torch

    def run(tile: int | None):
        model = _llama()
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.train()
        speed.offload_checkpoint_inputs(model)
        widest = []
        if tile:
            assert long_context.tile_mlp(model, tile) == 3
            assert long_context.tile_mlp(model, tile) == 3  # again: wraps the untiled forward, not itself
            for layer in model.model.layers:
                layer.mlp.gate_proj.register_forward_hook(lambda m, i, o: widest.append(i[0].shape[-2]))
        ids = torch.randint(0, 300, (1, 37), generator=torch.Generator().manual_seed(1))
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, widest

    loss0, g0, _ = run(None)
    loss1, g1, widest = run(5)
    assert torch.allclose(loss0, loss1, rtol=1e-6, atol=0)
    assert g0.keys() == g1.keys() and len(g0) > 10
    for name in g0:
        assert torch.allclose(g0[name], g1[name], rtol=1e-4, atol=1e-6), name
    assert widest and max(widest) == 5  # forward, recompute and backward: one tile at a time


def test_tiled_mlp_without_grad_gives_the_same_logits():
    import torch

    model = _llama().eval()
    ids = torch.randint(0, 300, (1, 23), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        whole = model(input_ids=ids).logits
        long_context.tile_mlp(model, 4)
        tiled = model(input_ids=ids).logits
    assert torch.allclose(whole, tiled, atol=1e-5)


def test_a_run_on_the_long_path_trains_and_says_so(tmp_path, split, caplog):
    import logging

    from training.metrics import read_metrics

    caplog.set_level(logging.INFO, logger="training.long_context")
    cfg = tiny_config(split, **{"train.gradient_checkpointing": True, "train.offload_checkpoints": True,
                                "train.mlp_tile_tokens": 16, "train.micro_batch_size": 1, "train.max_steps": 2})
    run = runs.create_run(tmp_path / "runs", cfg, name="long")
    assert runs.execute(run).state == "done"
    assert "MLP in tiles of 16 tokens in 2 decoder layers" in caplog.text
    start = next(r for r in read_metrics(run)[0] if r.get("event") == "start")
    assert start["speed"]["mlp_tile_tokens"] == 16 and start["speed"]["offload_checkpoints"] is True


def test_the_long_preset_loads_and_the_plan_states_the_longest_sequence(split):
    from training.config import load_config
    from training.plan import SHAPES, Shape, longest_report

    cfg = load_config(preset="long", overrides=["lora.r=32", "lora.target_modules=[all-linear]"], require_base=False)
    assert cfg.train.mlp_tile_tokens and cfg.train.offload_checkpoints and cfg.train.micro_batch_size == 1
    shape = Shape(**SHAPES["llama-3-8b"])
    lengths = [long_context.longest_length(shape, cfg, gb) for gb in (12, 24, 48, 80)]
    assert lengths == sorted(lengths) and lengths[0] > 0 and all(n % 1024 == 0 for n in lengths)
    for gb, n in zip((12, 24, 48, 80), lengths):  # the longest fits, 1024 more does not
        assert long_context.long_memory_gb(shape, cfg, n)["peak_gb"] <= gb
        assert long_context.long_memory_gb(shape, cfg, n + 1024)["peak_gb"] > gb
    # the seed's config is not on the long path: the plan gives the long path's number and says how
    seed = load_config(preset="seed", overrides=["method=qlora"], require_base=False)
    rep = longest_report(shape, seed, 24)
    assert rep["on_long_path"] is False and rep["tokens"] > 8192


def test_studio_train_plan_prints_the_longest_sequence(split, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "studio.cli", "train", str(split), "--base", "tiny", "--preset", "long",
                           "--plan", "--gpu-mem", "24", "--params", "8"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-1500:] + proc.stderr[-1500:]
    assert "longest sequence at batch 1 in 24 GB (qlora, as configured):" in proc.stdout


def test_the_long_context_bench_runs_both_sides_at_tiny_size(tmp_path):
    """benches/gpu/long_context.py on the CPU at tiny shapes: both sides step on the same tokens
    with the same loss, the search runs, and the table is written (a broken bench is found here,
    not in a device call)."""
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "benches/gpu/long_context.py", "--tiny", "--out", str(out), "--caps", "12",
                           "--probes", "128,256", "--seed-probes", "128,256", "--same", "64", "--tries", "2",
                           "--quantum", "128", "--max-length", "512"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = [json.loads(x) for x in (out / "steps.jsonl").read_text().splitlines()]
    same = {(r["side"], r["k"]): r["loss"] for r in rows if r["event"] == "same"}
    assert abs(same[("studio", 0)] - same[("seed", 0)]) / same[("seed", 0)] < 0.01
    assert {r["side"] for r in rows if r["event"] == "longest" and r["length"] > 0} == {"seed", "studio"}
    loaded = next(r for r in rows if r["event"] == "loaded" and r["side"] == "studio")
    assert loaded["used"]["tiled"] == 2 and loaded["used"]["offloaded"] == 2 and loaded["used"]["fused"] > 0
    assert "| 12 |" in (out / "table.md").read_text()
