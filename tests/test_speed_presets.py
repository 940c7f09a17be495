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
    seed, fast, lean = (load_config(preset=p) for p in ("seed", "fast", "lean"))
    for c in (fast, lean):  # the seed's data and adapter semantics are kept
        assert (c.lora.r, c.lora.alpha, c.lora.dropout, c.train.learning_rate) == (16, 32, 0.05, 2e-4)
        assert (c.train.micro_batch_size, c.train.grad_accum, c.data.max_length, c.data.packing) == (2, 4, 1024, True)
    assert (seed.train.attn_implementation, seed.train.liger_kernel, seed.train.gradient_checkpointing) == ("sdpa", "off", True)
    assert (fast.method, fast.train.gradient_checkpointing, fast.train.liger_kernel) == ("lora", False, "on")
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
    assert st["state"] == "done", st.get("error")
    header = read_metrics(run)[0][0]
    assert header["speed"] == {"attention": "sdpa", "liger_kernel": False, "compiled_layers": 0,
                               "gradient_checkpointing": cfg.train.gradient_checkpointing}
    assert header["method"] == cfg.method


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
