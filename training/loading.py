"""One loading stack: the tokenizer, the model, its dtype and device, for training, chat, merge,
serve and eval alike.

Training and inference must see the same tokens and the same chat template: an adapter trained on
ChatML turns and prompted through another template answers worse and nobody notices. So both sides
load tokenizers here, and `tests/test_real_model.py` checks that a trained run's prompt renders to
the same ids in training and in chat.

Rules:
- A tokenizer saved as a plain `PreTrainedTokenizerFast` / `TokenizersBackend`, and the untrained
  tiny model's, load as `PreTrainedTokenizerFast`: AutoTokenizer would follow the model config's
  type (e.g. qwen2) and swap the pre-tokenizer, changing ids (design.md).
- A tokenizer without a chat template gets ChatML (training.data.ensure_chat_template); one without
  a pad token pads with its EOS.
- Precision: bf16 on a GPU that has it, fp16 on older GPUs, fp32 on a CPU (CPU half precision is
  slow and lossy, and trl's bf16 default fails there).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .models import ModelUnavailable

PRECISIONS = {"bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16",
              "fp32": "float32", "float32": "float32"}
SHORT = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}


def pick_device(device: str | None = None) -> str:
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_precision(requested: str | None = "auto", device: str | None = None) -> str:
    """bf16 / fp16 / fp32. `auto` (or None): bf16 on a GPU that has it, fp16 on other GPUs, fp32 on
    a CPU; bf16/fp16 asked for on a CPU become fp32."""
    import torch

    device = pick_device(device)
    on_gpu = device.startswith("cuda") and torch.cuda.is_available()
    if requested not in (None, "auto"):
        if requested not in PRECISIONS:
            raise ModelUnavailable(f"unknown precision {requested!r}; use bf16, fp16 or fp32")
        name = SHORT[PRECISIONS[requested]]
        return name if on_gpu or name == "fp32" else "fp32"
    if on_gpu:
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def torch_dtype(precision: str):
    import torch

    return getattr(torch, PRECISIONS[precision])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_tokenizer(path: str | Path, *, local_only: bool = False):
    """The tokenizer at `path` (folder or hub id), with a chat template and a pad token."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    folder = Path(path)
    cls = None
    config_file = folder / "tokenizer_config.json"
    if config_file.is_file():
        try:
            cls = json.loads(config_file.read_text(encoding="utf-8")).get("tokenizer_class")
        except ValueError:
            cls = None
    try:
        if cls in ("PreTrainedTokenizerFast", "TokenizersBackend") or (folder / "UNTRAINED.txt").is_file():
            tokenizer = PreTrainedTokenizerFast.from_pretrained(str(path))
        else:
            tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=local_only)
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(
            f"cannot load the tokenizer of {str(path)!r} ({_first_line(exc)}). Download the base, or point `base` "
            "at a local folder, a .gguf file or a registry model (`studio models list`), or use 'tiny'") from None
    from .data import ensure_chat_template

    ensure_chat_template(tokenizer)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(path: str | Path, *, precision: str, device: str | None = None, quantize_4bit: Any = None,
               attn_implementation: str | None = None, for_training: bool = False):
    """AutoModelForCausalLM in `precision` on `device`.

    `quantize_4bit`: None for 16/32-bit, else a transformers `BitsAndBytesConfig` (QLoRA's nf4);
    bitsandbytes 0.50 quantises on the CPU too, so CI runs that path. `for_training` leaves the
    model in train mode and on the CPU placement the Trainer moves itself."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    from .quiet import is_verbose

    if not is_verbose():  # "Loading weights" bars would clutter the CLI, logs and the studio (training/quiet.py)
        hf_logging.disable_progress_bar()
    kw: dict[str, Any] = {"dtype": torch_dtype(precision)}
    if attn_implementation:
        kw["attn_implementation"] = attn_implementation
    device = pick_device(device)
    if quantize_4bit is not None:
        kw["quantization_config"] = quantize_4bit
        kw["device_map"] = {"": device}
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), **kw)
    except OSError as exc:
        raise ModelUnavailable(
            f"cannot load the model {str(path)!r} ({_first_line(exc)}). Download the base, or point `base` at a local "
            "folder with config.json and weights, a .gguf file or a registry model (`studio models list`), "
            "or use 'tiny'") from None
    if not for_training:
        if quantize_4bit is None:
            model.to(device)
        model.eval()
    return model


def bnb_4bit(*, quant_type: str = "nf4", double_quant: bool = True, compute_precision: str = "fp32"):
    """QLoRA's 4-bit BitsAndBytesConfig."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=quant_type,
                              bnb_4bit_use_double_quant=double_quant, bnb_4bit_compute_dtype=torch_dtype(compute_precision))
