"""The fast and lean presets (issue: training speed) run everywhere: on a CPU their GPU-only
levers (flex attention, liger kernels, regional compilation) fall back to sdpa and plain kernels,
and the run trains and says what it used."""
from __future__ import annotations

import pytest

from tests.training_fixtures import tiny_config, write_split
from training import recipe, runs, speed
from training.config import load_config
from training.metrics import read_metrics


@pytest.fixture
def split(tmp_path):
    return write_split(tmp_path / "splits" / "v1", n_train=12, n_val=0)


def test_presets_keep_the_seed_recipe_and_turn_the_levers():
    seed, fast, lean = (load_config(preset=p, require_base=False) for p in ("seed", "fast", "lean"))
    for c in (fast, lean):  # the seed's data and adapter semantics are kept
        assert (c.lora.r, c.lora.alpha, c.lora.dropout, c.train.learning_rate) == (16, 32, 0.05, 2e-4)
        # the same 8 sequences of 1024 per optimizer step, split into fewer, larger micro-batches
        assert (c.train.micro_batch_size * c.train.grad_accum, c.data.max_length, c.data.packing) == (8, 1024, True)
        assert c.train.loss_vocab_chunk == 8192
    # fast: the seed's micro-batch without recompute, its layers replayed as CUDA graphs
    assert (fast.train.micro_batch_size, lean.train.micro_batch_size) == (2, 4)
    assert fast.train.cuda_graphs and not lean.train.cuda_graphs and not seed.train.cuda_graphs
    assert (seed.train.micro_batch_size, seed.train.grad_accum) == (2, 4)
    assert (seed.train.attn_implementation, seed.train.liger_kernel, seed.train.gradient_checkpointing) == ("sdpa", "off", True)
    assert seed.train.checkpoint_fraction == 1.0 and seed.train.loss_vocab_chunk is None
    assert (fast.method, fast.train.gradient_checkpointing) == ("lora", False)
    assert fast.train.fused_lora and lean.train.fused_lora and not seed.train.fused_lora
    assert (lean.method, lean.quant.upcast_fp32, lean.train.gradient_checkpointing) == ("qlora", False, True)


def test_gpu_levers_fall_back_on_cpu():
    assert speed.resolve_attention("auto", packing=True) == "sdpa"
    assert speed.resolve_attention("eager", packing=True) == "eager"
    assert speed.resolve_liger("on") is False and speed.resolve_liger("off") is False


@pytest.mark.parametrize("preset", ["fast", "lean"])
def test_preset_trains_the_tiny_model_on_cpu(tmp_path, split, preset):
    tiny = load_config(preset="tiny-demo")
    cfg = load_config(preset=preset, overrides={
        "base": "tiny", "data.split": str(split), "data.max_length": 128, "train.max_steps": 6,
        "train.learning_rate": 1e-2, "train.grad_accum": 1, "train.logging_steps": 1,
        "lora.r": tiny.lora.r, "lora.alpha": tiny.lora.alpha})
    run = runs.create_run(tmp_path / "runs", cfg, name=preset)
    st = runs.execute(run)
    assert st.state == "done", st.error
    header = read_metrics(run)[0][0]
    assert header["speed"] == {"attention": "sdpa", "liger_kernel": False, "compiled_layers": 0,
                               "gradient_checkpointing": cfg.train.gradient_checkpointing,
                               "fused_lora": cfg.train.fused_lora, "checkpoint_fraction": cfg.train.checkpoint_fraction,
                               "offload_checkpoints": False, "mlp_tile_tokens": None,
                               "cuda_graphs": False,  # no CUDA here: the layers run as they are
                               "defer_metrics": True}
    assert header["method"] == cfg.method


def test_fused_lora_trains_and_says_so(tmp_path, split, caplog):
    caplog.set_level("INFO", logger="training.speed")
    tiny = load_config(preset="tiny-demo")
    cfg = load_config(preset="fast", overrides={
        "base": "tiny", "data.split": str(split), "data.max_length": 128, "train.max_steps": 4,
        "train.grad_accum": 1, "train.logging_steps": 1, "train.fused_lora": True,
        "lora.r": tiny.lora.r, "lora.alpha": tiny.lora.alpha})
    run = runs.create_run(tmp_path / "runs", cfg, name="fused")
    st = runs.execute(run)
    assert st.state == "done", st.error
    lines = read_metrics(run)[0]
    assert lines[0]["speed"]["fused_lora"] is True
    assert [r["loss"] for r in lines if "loss" in r], "no loss was logged"
    assert any("LoRA dropout fused into" in m and "into 0 " not in m for m in caplog.messages), caplog.messages


def test_lean_keeps_non_quantised_weights_in_their_dtype():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=4, num_key_value_heads=4)).to(torch.bfloat16)
    out = speed.prepare_quantized(model, upcast_fp32=False, gradient_checkpointing=True)
    assert out.get_input_embeddings().weight.dtype == torch.bfloat16
    assert out.lm_head.weight.dtype == torch.bfloat16
    assert not any(p.requires_grad for p in out.parameters())
    up = speed.prepare_quantized(LlamaForCausalLM(model.config).to(torch.bfloat16), upcast_fp32=True,
                                 gradient_checkpointing=False)
    assert up.lm_head.weight.dtype == torch.float32  # PEFT's prepare_model_for_kbit_training: the seed's path


def test_multi_gpu_config_launches_torchrun_and_shards_with_fsdp(tmp_path, split):
    cfg = tiny_config(split, **{"train.devices": 2, "train.distributed": "fsdp"})
    run = runs.create_run(tmp_path / "runs", cfg, name="multi")
    cmd = runs.launch_command(run)
    assert cmd[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    assert cmd[5:8] == ["-m", "training", "run"]
    args = recipe.sft_args(cfg, run, "fp32", has_eval=False)
    assert args.fsdp and args.fsdp_plugin_args  # transformers 5 turns the legacy "full_shard auto_wrap" into fsdp_config


def test_tiny_architecture_builds_a_real_shape_with_random_weights(tmp_path, split):
    """`tiny.architecture` lets `studio train` measure a 7B-shaped run on a GPU with no download;
    here the smallest Qwen2.5 shape checks the path, and the plan reads the same shape."""
    from training import plan
    from training.config import ConfigError
    from training.tiny import build_model, build_tokenizer

    cfg = tiny_config(split, **{"tiny.architecture": "Qwen2.5-0.5B"})
    assert cfg.tiny.architecture == "qwen2.5-0.5b"
    shape = plan.resolve_shape(cfg)
    assert (shape.hidden_size, shape.num_hidden_layers) == (896, 24)
    tok = build_tokenizer(["hello world", "你好"], 400)
    model = build_model(tok, cfg.tiny)
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert (model.config.hidden_size, model.config.num_hidden_layers, model.config.num_key_value_heads) == (896, 24, 2)
    with pytest.raises(ConfigError, match="unknown architecture"):
        tiny_config(split, **{"tiny.architecture": "gpt-9"})


def test_fsdp_checkpoints_through_fsdp_not_the_training_argument(tmp_path, split):
    """transformers refuses FSDP's activation checkpointing together with the training argument."""
    cfg = tiny_config(split, **{"train.devices": 2, "train.distributed": "fsdp", "train.gradient_checkpointing": True})
    args = recipe.sft_args(cfg, tmp_path, "fp32", has_eval=False)
    assert args.fsdp_config.get("activation_checkpointing") is True
    assert not args.gradient_checkpointing
    ddp = recipe.sft_args(tiny_config(split, **{"train.devices": 2, "train.gradient_checkpointing": True}), tmp_path,
                          "fp32", has_eval=False)
    assert ddp.gradient_checkpointing


def test_under_torchrun_only_rank_0_builds_the_tiny_base(tmp_path, monkeypatch):
    """Other ranks wait for rank 0's finished build rather than racing it into the same folder."""
    import threading

    from training import tiny
    from training.config import TinyShape

    out = tmp_path / "base"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    got = {}
    t = threading.Thread(target=lambda: got.setdefault("path", tiny._wait_for_rank0(out, timeout_s=60, poll_s=0.05)))
    t.start()
    monkeypatch.setenv("RANK", "0")
    tiny.ensure_tiny_base(out, ["hello world", "你好"] * 10, TinyShape())
    t.join(30)
    assert got["path"] == out and (out / "config.json").is_file()
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(Exception, match="did not appear"):
        tiny._wait_for_rank0(tmp_path / "never", timeout_s=0.2, poll_s=0.05)


def test_checkpoint_fraction_spreads_recomputation_over_the_depth():
    assert speed.checkpointed_layers(28, 1.0) == list(range(28))
    half = speed.checkpointed_layers(28, 0.5)
    assert len(half) == 14 and half[:3] == [1, 3, 5]
    assert len(speed.checkpointed_layers(48, 0.25)) == 12
    assert speed.checkpointed_layers(4, 0.01) == []


def test_checkpoint_fraction_leaves_the_other_layers_their_activations(tmp_path, split):
    """After the Trainer switches checkpointing on everywhere, the callback turns it off on the rest;
    a run with the fraction trains to the end."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                                         num_attention_heads=4, num_key_value_heads=4))
    model.gradient_checkpointing_enable()
    assert all(layer.gradient_checkpointing for layer in model.model.layers)
    speed.checkpointing_callback(0.5).on_train_begin(None, None, None, model=model)
    assert [layer.gradient_checkpointing for layer in model.model.layers] == [False, True, False, True]
    model.train()
    out = model(input_ids=torch.randint(0, 300, (1, 16)), labels=torch.randint(0, 300, (1, 16)))
    out.loss.backward()

    cfg = tiny_config(split, **{"train.gradient_checkpointing": True, "train.checkpoint_fraction": 0.5,
                                "train.max_steps": 3})
    run = runs.create_run(tmp_path / "runs", cfg, name="frac")
    assert runs.execute(run).state == "done"


def test_loss_vocab_chunk_sets_trls_tile_and_a_run_trains_with_it(tmp_path, split):
    import trl.trainer.utils as tu

    default = tu._CHUNKED_LOGPROB_CHUNK_SIZE
    cfg = tiny_config(split, **{"train.loss_vocab_chunk": 64, "train.max_steps": 2})
    run = runs.create_run(tmp_path / "runs", cfg, name="chunk")
    assert runs.execute(run).state == "done"
    assert tu._CHUNKED_LOGPROB_CHUNK_SIZE == 64
    assert speed.apply_loss_vocab_chunk(None) is False
    assert tu._CHUNKED_LOGPROB_CHUNK_SIZE == default  # a later run without it gets TRL's own


def test_several_devices_train_through_torchrun_with_one_base_and_one_writer(tmp_path, split):
    """train.devices=2 runs torchrun attached to the terminal (one process per device; a single
    process seeing two GPUs would get nn.DataParallel, which TRL refuses: measured on a two-GPU
    machine). On the CPU the two processes talk over gloo: a real DDP run, with rank 0 building the
    tiny base and writing status and metrics alone."""
    run = runs.create_run(tmp_path / "runs", tiny_config(split, **{"train.devices": 2, "train.max_steps": 4,
                                                                    "train.save_steps": 2}), name="two")
    st = runs.run_foreground(run)
    assert st.state == "done" and st.step == 4, st.error
    recs = read_metrics(run)[0]
    assert [r["step"] for r in recs if "loss" in r] == [1, 2, 3, 4]  # one writer: no step twice
    starts = [r for r in recs if r.get("event") == "start"]
    assert len(starts) == 1 and starts[0]["world_size"] == 2
    assert (run / "adapter" / "adapter_config.json").is_file()


def test_offloaded_checkpoint_inputs_give_the_same_gradients(tmp_path, split):
    """train.offload_checkpoints wraps each checkpointed layer in save_on_cpu: the same gradients
    (the recompute reads the inputs back), and a run with it trains to the end."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    def grads(offload: bool):
        torch.manual_seed(0)
        model = LlamaForCausalLM(LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64,
                                             num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4))
        model.gradient_checkpointing_enable()
        model.train()
        if offload:
            speed.checkpointing_callback(1.0, offload=True).on_train_begin(None, None, None, model=model)
            assert all(getattr(layer._gradient_checkpointing_func, "_studio_offload", False) for layer in model.model.layers)
            assert speed.offload_checkpoint_inputs(model) == 0  # never wrapped twice
        ids = torch.randint(0, 300, (2, 16), generator=torch.Generator().manual_seed(1))
        model(input_ids=ids, labels=ids).loss.backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    plain, offloaded = grads(False), grads(True)
    assert len(plain) == len(offloaded) and all(torch.equal(a, b) for a, b in zip(plain, offloaded))

    cfg = tiny_config(split, **{"train.gradient_checkpointing": True, "train.offload_checkpoints": True,
                                "train.max_steps": 2})
    run = runs.create_run(tmp_path / "runs", cfg, name="offload")
    assert runs.execute(run).state == "done"


def test_a_multi_gpu_run_whose_launcher_dies_early_ends_failed(tmp_path, split, monkeypatch):
    """If torchrun dies before rank 0 writes an end state (a port taken, a rank killed), the run
    must not stay `queued` forever: a launcher that exits 3 at once stands in for it."""
    import sys

    cfg = tiny_config(split, **{"train.devices": 2})
    run = runs.create_run(tmp_path / "runs", cfg, name="dies")
    monkeypatch.setattr(runs, "launch_command", lambda run_dir, resume=False: [sys.executable, "-c", "raise SystemExit(3)"])
    st = runs.run_foreground(run)
    assert st.state == "failed" and "torchrun exited with 3" in st.error
    assert runs.read_status(run).state == "failed"

