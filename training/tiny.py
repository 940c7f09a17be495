"""The built-in `tiny` base model: a small Llama-style model with random weights and a BPE
tokenizer trained on the split's own text in well under a second.

No hub download is possible on CI or in demos, yet the whole path (templating, packing, LoRA,
QLoRA, checkpoints, adapters, chat, merge) must run for real. The model is UNTRAINED: it is
labelled so in the run's config, status and metrics header; its answers mean nothing.

It is built once per run into `RUN_DIR/base/` (tokenizer + weights, seeded), so the adapter in
`RUN_DIR/adapter/` always reloads onto the very weights it was trained on.
Design note (measured): load the tokenizer with PreTrainedTokenizerFast, not AutoTokenizer with a
model_type, which can swap in another pre-tokenizer and change the ids.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Iterable

from .data import chatml_template

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_WORDS = ["system", "user", "assistant", "\n"]


def build_tokenizer(texts: Iterable[str], vocab_size: int = 512):
    """A byte-level BPE tokenizer trained on `texts`, with ChatML special tokens and template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(texts) + CHAT_WORDS, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   additional_special_tokens=["<|im_start|>"])
    fast.chat_template = chatml_template("<|im_end|>")
    return fast


def build_model(tokenizer: Any, shape: Any, *, seed: int = 42, max_positions: int = 4096):
    """A randomly initialised LlamaForCausalLM sized by `shape` (config.TinyShape), seeded; with
    `shape.architecture`, that architecture's real shape instead (built on the GPU when there is one,
    in bf16, since a 7B model in fp32 on the CPU would take 30 GB and minutes)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if getattr(shape, "architecture", None):
        return _build_architecture(tokenizer, shape.architecture, seed=seed, max_positions=max_positions)

    cfg = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=shape.hidden_size, intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_layers, num_attention_heads=shape.num_heads,
        num_key_value_heads=shape.num_heads, max_position_embeddings=max_positions,
        bos_token_id=None, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def _build_architecture(tokenizer: Any, name: str, *, seed: int, max_positions: int):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from .shapes import SHAPES

    dims = dict(SHAPES[name])
    # the trained tokenizer is smaller than the architecture's vocabulary: the extra rows are unused
    dims["vocab_size"] = max(dims["vocab_size"], len(tokenizer))
    cfg = AutoConfig.for_model("llama" if name.startswith("llama") else "qwen2", **dims,
                               max_position_embeddings=max(max_positions, 4096),
                               eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                               bos_token_id=None)
    torch.manual_seed(seed)
    on_gpu = torch.cuda.is_available()
    with torch.device("cuda" if on_gpu else "cpu"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16 if on_gpu else torch.float32)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def ensure_tiny_base(out_dir: str | Path, texts: Iterable[str], shape: Any, *, seed: int = 42,
                     max_positions: int = 4096) -> Path:
    """Build the tiny tokenizer + model into `out_dir` unless it is already there; return the path."""
    out = Path(out_dir)
    if (out / "config.json").is_file() and (out / "tokenizer.json").is_file():
        return out
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and int(os.environ.get("RANK", "0")) != 0:
        return _wait_for_rank0(out)  # under torchrun only rank 0 builds; the rename below publishes it
    tmp = out.with_name(out.name + ".building")
    tmp.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(texts, shape.vocab_size)
    model = build_model(tok, shape, seed=seed, max_positions=max_positions)
    tok.save_pretrained(tmp)
    model.save_pretrained(tmp)
    (tmp / "UNTRAINED.txt").write_text("This base model has random weights: it was built by training/tiny.py for "
                                       "demos and tests. Its answers mean nothing.\n", encoding="utf-8")
    tmp.rename(out)
    return out


def _wait_for_rank0(out: Path, timeout_s: float = 3600.0, poll_s: float = 1.0) -> Path:
    """Other ranks wait until rank 0 has renamed its finished build into place."""
    from .errors import TrainingError

    deadline = time.monotonic() + timeout_s
    while not ((out / "config.json").is_file() and (out / "tokenizer.json").is_file()):
        if time.monotonic() > deadline:
            raise TrainingError(f"rank {os.environ.get('RANK')}: the tiny base {out} did not appear within "
                                f"{timeout_s:.0f} s; see rank 0's error in train.log")
        time.sleep(poll_s)
    return out
