"""The training config: seed defaults, presets, overrides, and errors that name the field and the fix."""
from __future__ import annotations

import pytest

from training.config import ConfigError, load_config, load_run_config, preset_names, with_changes


def test_defaults_are_the_seed_recipe():
    cfg = load_config()
    assert (cfg.method, cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout) == ("lora", 16, 32, 0.05)
    assert cfg.lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert (cfg.train.learning_rate, cfg.train.epochs, cfg.train.micro_batch_size, cfg.train.grad_accum) == (2e-4, 3, 2, 4)
    assert (cfg.data.max_length, cfg.data.packing, cfg.train.logging_steps, cfg.train.seed) == (1024, True, 10, 42)
    assert cfg.data.assistant_only_loss and cfg.train.gradient_checkpointing
    assert (cfg.quant.quant_type, cfg.quant.double_quant) == ("nf4", True)
    seed = load_config(preset="seed")
    assert seed.base == "Qwen/Qwen2.5-7B-Instruct" and seed.lora == cfg.lora
    # the seed preset pins the libraries' defaults the article ran with; the studio's own defaults
    # pick the faster kernels where the machine has them (training/speed.py)
    assert seed.train == cfg.train.model_copy(update={"attn_implementation": "sdpa", "liger_kernel": "off"})
    assert (cfg.train.attn_implementation, cfg.train.liger_kernel) == ("auto", "auto")


def test_every_field_is_documented():
    from training.config import TrainConfig

    def walk(model):
        for name, f in model.model_fields.items():
            ann = f.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                walk(ann)
            else:
                assert f.description, f"{model.__name__}.{name} has no docstring"

    walk(TrainConfig)


def test_preset_file_and_set_layer_in_order(tmp_path):
    assert {"seed", "tiny-demo"} <= set(preset_names())
    f = tmp_path / "my.yaml"
    f.write_text("preset: tiny-demo\nlora:\n  r: 4\ntrain:\n  epochs: 5\n", encoding="utf-8")
    cfg = load_config(f, overrides=["train.epochs=7", "lora.target_modules=[q_proj, v_proj]", "train.learning_rate=1e-4"])
    assert cfg.base == "tiny" and cfg.data.max_length == 128  # from the preset
    assert cfg.lora.r == 4  # the file beats the preset
    assert cfg.train.epochs == 7 and cfg.train.learning_rate == 1e-4  # --set beats the file
    assert cfg.lora.target_modules == ["q_proj", "v_proj"]


def test_invalid_value_names_file_line_and_field(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("base: tiny\nlora:\n  r: -1\n  dropout: 2\nmethod: lorra\n", encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_config(f)
    msg = str(exc.value)
    assert f"{f}:3: lora.r: must be a positive integer, got -1" in msg
    assert f"{f}:4: lora.dropout:" in msg
    assert f"{f}:5: method: must be one of" in msg and "'lorra'" in msg


def test_pasted_seed_snippet_keys_point_to_the_fix(tmp_path):
    f = tmp_path / "pasted.yaml"
    f.write_text("max_seq_length: 2048\ntokenizer: tok\nnum_train_epochs: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_config(f)
    msg = str(exc.value)
    assert "max_seq_length: unknown key (use data.max_length (renamed to max_length in trl>=0.20))" in msg
    assert "processing_class" in msg and "tokenizer" in msg
    assert "num_train_epochs: unknown key (use train.epochs)" in msg


def test_bad_yaml_and_unknown_preset(tmp_path):
    f = tmp_path / "broken.yaml"
    f.write_text("lora:\n  r: [1,\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(f)
    with pytest.raises(ConfigError, match="preset 'nope' does not exist; presets: .*tiny-demo"):
        load_config(preset="nope")
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(overrides=["lora.r"])


def test_saved_run_config_reproduces_and_reloads(tmp_path):
    from training.runs import create_run

    cfg = load_config(preset="tiny-demo", overrides=[f"data.split={tmp_path}"])
    run = create_run(tmp_path / "runs", cfg, name="r", reproduce="studio train v1 --config {config}")
    text = (run / "config.yaml").read_text(encoding="utf-8")
    assert text.splitlines()[0] == f"# reproduce: studio train v1 --config {run / 'config.yaml'}"
    assert "UNTRAINED" in text.splitlines()[1]
    again = load_run_config(run)
    assert again == cfg
    assert with_changes(again, {"lora.r": 2}).lora.r == 2


def test_every_preset_has_a_one_line_summary_for_the_studio():
    from training.config import preset_names, preset_summary

    for name in preset_names():
        assert 0 < len(preset_summary(name)) <= 28, name  # fits the Train form's bottom border
