"""Merge an adapter into its base: the saved folder answers like base + adapter, without PEFT."""
from __future__ import annotations

import json

import pytest

from tests._tiny_lora import build_base, make_run

pytest.importorskip("peft")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("merge")
    return make_run(root / "runs", "run-a", build_base(root / "base"), seed=1)


def _logits(model, ids):
    import torch

    with torch.no_grad():
        return model(input_ids=ids).logits


def test_merged_folder_matches_base_plus_adapter(run, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from training.inference import load_tokenizer
    from training.merge import merge_run

    result = merge_run(run, tmp_path / "merged", dtype="fp32", device="cpu")
    assert result.ok and result.max_abs_diff < 1e-4
    assert result.adapter_effect > 1e-2  # the probe really sees the adapter, so the check means something

    # Reload both from disk, as a user would, and compare on a different input than the probe.
    tok = load_tokenizer(result.out_dir)
    ids = tok(tok.apply_chat_template([{"role": "user", "content": "the quick brown fox"}], tokenize=False,
                                      add_generation_prompt=True), return_tensors="pt")["input_ids"]
    merged = AutoModelForCausalLM.from_pretrained(result.out_dir, dtype=torch.float32).eval()
    base = AutoModelForCausalLM.from_pretrained(json.loads((run / "adapter" / "adapter_config.json").read_text())
                                                ["base_model_name_or_path"], dtype=torch.float32)
    adapted = PeftModel.from_pretrained(base, str(run / "adapter")).eval()
    assert (_logits(merged, ids) - _logits(adapted, ids)).abs().max().item() < 1e-4
    assert not any("lora" in name for name, _ in merged.named_parameters())
    info = json.loads((result.out_dir / "merged.json").read_text())
    assert info["run"] == "run-a" and info["dtype"] == "fp32" and info["max_abs_diff"] == result.max_abs_diff
    assert tok.chat_template  # the chat template travels with the merged model


def test_bf16_merge_is_checked_against_a_looser_tolerance(run, tmp_path):
    from training.merge import merge_run

    result = merge_run(run, tmp_path / "m16", dtype="bf16", device="cpu")
    assert result.dtype == "bf16" and result.ok
    assert result.tolerance > 1e-4


def test_merge_refuses_to_overwrite_and_full_runs(run, tmp_path):
    from training.inference import RunUnusable
    from training.merge import merge_run

    out = tmp_path / "taken"
    out.mkdir()
    (out / "x").write_text("keep me")
    with pytest.raises(RunUnusable, match="already exists"):
        merge_run(run, out, dtype="fp32", device="cpu")
    assert (out / "x").read_text() == "keep me"


def test_training_merge_module_prints_the_check(run, tmp_path):
    from training.merge import main

    assert main([str(run), "--out", str(tmp_path / "cli-merged"), "--dtype", "fp32", "--device", "cpu"]) == 0
    assert (tmp_path / "cli-merged" / "merged.json").is_file()
