"""A tiny Llama-style base and LoRA adapters, built in about a second with no hub access.

Used by the inference, merge and serve tests before (and besides) the trainer: the base is a
random model from a config with a BPE tokenizer trained on a few lines; an adapter is a PEFT LoRA
whose B matrices are perturbed with a fixed seed, so it changes the outputs (a freshly initialised
LoRA has B = 0 and would be a no-op). `make_run` wraps an adapter in a run directory shaped like
docs/contracts.md (config.yaml, status.json, adapter/).
"""
from __future__ import annotations

import json
from pathlib import Path

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

CORPUS = [
    "hello world, this is a tiny model for tests.",
    "the quick brown fox jumps over the lazy dog.",
    "用Python实现快速排序。先选一个基准，再分区。",
    "LoRA adds low-rank matrices to the attention projections.",
    "system user assistant: answer the question briefly.",
] * 4


def build_base(folder: Path, *, seed: int = 0, with_template: bool = True) -> Path:
    """Save a tiny random Llama model and its tokenizer into `folder`; return it."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=400, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token=None)
    if with_template:
        fast.chat_template = CHATML
    fast.save_pretrained(folder)

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id, bos_token_id=None,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    return folder


def build_adapter(base: Path, folder: Path, *, seed: int = 1, r: int = 8, scale: float = 0.1) -> Path:
    """Save a LoRA adapter for `base` into `folder` whose weights move the outputs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(
        r=r, lora_alpha=2 * r, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        task_type="CAUSAL_LM"))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * scale)
    peft_model.save_pretrained(folder)
    return folder


def make_run(runs_dir: Path, name: str, base: Path, *, seed: int = 1, method: str = "lora") -> Path:
    """A finished run directory holding a perturbed adapter for `base`."""
    run = runs_dir / name
    run.mkdir(parents=True, exist_ok=True)
    build_adapter(base, run / "adapter", seed=seed)
    (run / "config.yaml").write_text(
        f"# reproduce: studio train fixture\nbase: {base}\nmethod: {method}\n", encoding="utf-8")
    (run / "status.json").write_text(json.dumps({"state": "done"}), encoding="utf-8")
    return run
