"""Models out: a finished run as a GGUF file (llama.cpp, Ollama), an Ollama Modelfile, a vLLM command.

`export_run(RUN_DIR, gguf=True, quant="q8_0")` merges the run's adapter into its base (training/merge.py,
into RUN_DIR/merged, or reuses that folder when it is there and newer than the adapter), then writes
RUN_DIR/export/RUN-QUANT.gguf with the `gguf` package's writer, a `Modelfile` beside it, and checks
the file: transformers loads it back (`from_pretrained(folder, gguf_file=NAME)`) and its logits are
compared with the merged model's on a few chat prompts. `vllm=True` writes RUN_DIR/export/vllm.sh, a
`vllm serve BASE --enable-lora --lora-modules RUN=ADAPTER --max-lora-rank R` line (no merge needed).

What the GGUF holds, as llama.cpp's convert_hf_to_gguf.py writes it, for the architectures the studio
trains (`llama`: SmolLM2, the tiny base; `qwen2`):
- hyperparameters: context length, embedding length, block count, feed-forward length, head counts,
  rope dimension count and freq base, RMS-norm epsilon, vocabulary size; file type and quantisation
  version; `general.name`.
- tensors renamed with gguf's `TensorNameMap` for the architecture (`model.layers.3.self_attn.q_proj`
  -> `blk.3.attn_q`); a tied output head is not written (llama.cpp reuses `token_embd`). Llama's q and
  k projections are permuted as llama.cpp's converter does (its rotary embedding pairs dimension i
  with i+1, Hugging Face's with i+d/2); transformers' GGUF loader undoes exactly this permutation
  (`LlamaTensorProcessor._reverse_permute_weights`). Qwen2 is not permuted (neither side does).
- 2-D weights in f16 or q8_0 (`gguf.quants.quantize`; a row length that is not a multiple of q8_0's
  32-value block falls back to f16, as llama.cpp does); norms and biases stay f32.
- the tokenizer: byte-level BPE (`tokenizer.ggml.model = gpt2`) with the tokens, their types
  (special added tokens CONTROL, other added tokens USER_DEFINED, padding rows UNUSED), the merges,
  the pre-tokenizer name llama.cpp knows (read off tokenizer.json: `gpt-2`, `smollm`, `qwen2`,
  `llama-bpe`), bos/eos/pad/unk ids, add_bos/add_eos, and the chat template as
  `tokenizer.chat_template`.

Tensors are written one at a time (header and tensor table first, from the shapes), so memory holds
one tensor, not the model.

Versions (measured here): gguf 0.19.0 writes; transformers 5.25 reads GGUF with gguf >= 0.10.0
(`transformers.utils.import_utils.GGUF_MIN_VERSION`); `gguf_versions()` reports both.
"""
from __future__ import annotations

import json
import math
import os
import shlex
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import TrainingError

EXPORT_DIR = "export"  # RUN_DIR/export: the GGUF, the Modelfile, vllm.sh, export.json
QUANTS = ("q8_0", "f16")
ARCHES = ("llama", "qwen2")
# vLLM accepts these --max-lora-rank values (vllm.config.lora; 320 and 512 since 0.6.x).
VLLM_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
# Prompts of the GGUF check: chat-templated, so the special tokens and the template are exercised.
CHECK_PROMPTS = [
    [{"role": "user", "content": "What colour is the sky?"}],
    [{"role": "system", "content": "You are a helpful assistant."},
     {"role": "user", "content": "用Python实现快速排序。Explain it in one sentence."}],
    [{"role": "user", "content": "Count to three: one, two,"}],
]
# Largest acceptable |GGUF - merged| logit difference, relative to the largest |logit| of the merged
# model. f16 rounds each weight once (2^-11 relative); q8_0 keeps 8 bits per weight with one scale per
# 32 values, about 10x coarser. Measured: docs/contracts.md (export/) and the tests.
REL_TOLERANCE = {"f16": 1e-2, "q8_0": 6e-2}
GREEDY_TOKENS = 8


class ExportUnusable(TrainingError):
    """A run cannot be exported as asked; the message says why and what to do."""


def gguf_versions() -> dict[str, str]:
    """The gguf package's version and the lowest one transformers reads GGUF files with."""
    import importlib.metadata as md

    out = {}
    for pkg in ("gguf", "transformers"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "missing"
    try:
        from transformers.utils.import_utils import GGUF_MIN_VERSION

        out["transformers_gguf_min"] = str(GGUF_MIN_VERSION)
    except ImportError:
        out["transformers_gguf_min"] = "unknown"
    return out


def _require_gguf():
    try:
        import gguf
    except ImportError:
        raise ExportUnusable("writing a GGUF file needs the gguf package: pip install 'gguf>=0.10'") from None
    return gguf


# --------------------------------------------------------------------------- weights

def _weight_files(model_dir: Path) -> dict[str, Path]:
    """Tensor name -> the safetensors file that holds it (one file or an index of shards)."""
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        return {name: model_dir / f for name, f in weight_map.items()}
    single = model_dir / "model.safetensors"
    if not single.is_file():
        raise ExportUnusable(f"{model_dir}: no model.safetensors (or index); a GGUF is written from safetensors weights")
    from safetensors import safe_open

    with safe_open(str(single), framework="pt") as f:
        return dict.fromkeys(f.keys(), single)


def _tensor_shapes(files: dict[str, Path]) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    for path in sorted(set(files.values())):
        with safe_open(str(path), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118  (safe_open is not a mapping)
                if name in files:
                    shapes[name] = tuple(f.get_slice(name).get_shape())
    return shapes


def _read_tensor(path: Path, name: str):
    """One tensor as float32 numpy (bf16 has no numpy dtype, so through torch)."""
    import torch
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return f.get_tensor(name).to(torch.float32).numpy()


def llama_permute(weights, n_head: int, n_head_kv: int | None = None):
    """llama.cpp's q/k permutation (convert_hf_to_gguf.py LlamaModel.permute): inside each head,
    rows (0..d/2, d/2..d) interleave as (0, d/2, 1, d/2+1, ...)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    shape = weights.shape
    return weights.reshape(n_head, 2, shape[0] // n_head // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


# --------------------------------------------------------------------------- tokenizer

def _pre_tokenizer_name(tok_json: dict) -> str | None:
    """The name llama.cpp (and transformers' GGUF reader) give this tokenizer.json's pre-tokenizer."""
    pre = tok_json.get("pre_tokenizer") or {}

    def byte_level(p: dict, regex: bool) -> bool:
        return p.get("type") == "ByteLevel" and bool(p.get("use_regex", True)) == regex

    if byte_level(pre, True):
        return "gpt-2"
    parts = pre.get("pretokenizers") if pre.get("type") == "Sequence" else None
    if not parts or len(parts) != 2:
        return None
    first, second = parts
    if first.get("type") == "Digits" and first.get("individual_digits") and byte_level(second, True):
        return "smollm"
    if first.get("type") == "Split" and byte_level(second, False):
        pattern = (first.get("pattern") or {}).get("Regex")
        for name, regex in _known_splits().items():
            if pattern == regex:
                return name
    return None


def _known_splits() -> dict[str, str]:
    """Pre-tokenizer name -> split regex, as transformers' GGUF reader maps them back."""
    try:
        from transformers.integrations.gguf.gguf_tokenizer_mapping import (
            GGUF_PRE_TOKENIZER_SPLITS,
        )

        return dict(GGUF_PRE_TOKENIZER_SPLITS)
    except ImportError:  # older transformers: the Qwen2 pattern is the one the studio meets
        from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

        return {"qwen2": PRETOKENIZE_REGEX}


@dataclass
class TokenizerData:
    tokens: list[str]
    types: list[int]
    merges: list[str]
    pre: str
    special: dict[str, int]  # bos, eos, pad, unk -> id (only those the tokenizer has)
    add_bos: bool
    add_eos: bool
    chat_template: str | None
    notes: list[str] = field(default_factory=list)


def tokenizer_data(model_dir: Path, vocab_size: int) -> TokenizerData:
    """What the GGUF's tokenizer.* keys hold, read from the folder's tokenizer.json and tokenizer."""
    gguf = _require_gguf()
    from .inference import load_tokenizer

    path = model_dir / "tokenizer.json"
    if not path.is_file():
        raise ExportUnusable(f"{model_dir}: no tokenizer.json; only fast (tokenizers) BPE tokenizers are exported")
    tok_json = json.loads(path.read_text(encoding="utf-8"))
    model = tok_json.get("model") or {}
    if model.get("type") != "BPE":
        raise ExportUnusable(f"{model_dir}: a {model.get('type')} tokenizer; the GGUF export handles byte-level BPE "
                             "(llama.cpp's gpt2 type), as SmolLM2, Qwen2 and the tiny base use")
    tokenizer = load_tokenizer(model_dir)
    notes: list[str] = []
    vocab = tokenizer.get_vocab()  # the model's vocabulary and the added tokens
    by_id = {i: t for t, i in vocab.items()}
    if max(by_id) >= vocab_size:
        raise ExportUnusable(f"{model_dir}: the tokenizer has id {max(by_id)} but the model's vocabulary is {vocab_size}")
    added_tokens = {int(a["id"]): a for a in tok_json.get("added_tokens") or []}
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(int(gguf.TokenType.UNUSED))
        elif i in added_tokens:
            tokens.append(added_tokens[i]["content"])
            types.append(int(gguf.TokenType.CONTROL if added_tokens[i].get("special") else gguf.TokenType.USER_DEFINED))
        else:
            tokens.append(by_id[i])
            types.append(int(gguf.TokenType.NORMAL))
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
    pre = _pre_tokenizer_name(tok_json)
    if pre is None:
        notes.append("the tokenizer's pre-tokenizer is not one llama.cpp names; wrote `default` (check its "
                     "tokenisation in llama.cpp)")
        pre = "default"
    special = {}
    for role in ("bos", "eos", "pad", "unk"):
        value = getattr(tokenizer, f"{role}_token_id", None)
        if isinstance(value, int) and 0 <= value < vocab_size:
            special[role] = value
    probe = tokenizer("a", add_special_tokens=True)["input_ids"]
    add_bos = "bos" in special and bool(probe) and probe[0] == special["bos"]
    add_eos = "eos" in special and bool(probe) and probe[-1] == special["eos"] and len(probe) > 1
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None
    return TokenizerData(tokens=tokens, types=types, merges=merges, pre=pre, special=special, add_bos=add_bos,
                         add_eos=add_eos, chat_template=template, notes=notes)


# --------------------------------------------------------------------------- writing

@dataclass(frozen=True)
class _Planned:
    hf_name: str
    gguf_name: str
    file: Path
    shape: tuple[int, ...]
    qtype: Any  # gguf.GGMLQuantizationType
    permute: tuple[int, int] | None  # (n_head, n_head_kv) for llama q/k


@dataclass
class GGUFFile:
    path: Path
    arch: str
    quant: str
    tensors: int
    size_bytes: int
    tensor_types: dict[str, int]  # ggml type name -> how many tensors
    seconds: float
    notes: list[str] = field(default_factory=list)


def _hparams(config: Any) -> dict[str, Any]:
    """The GGUF hyperparameters of a transformers config (llama or qwen2)."""
    n_head = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_head
    rope = getattr(config, "rope_parameters", None) or {}
    if isinstance(rope, dict) and "full_attention" in rope and isinstance(rope["full_attention"], dict):
        rope = rope["full_attention"]
    rope_type = (rope.get("rope_type") or rope.get("type") or "default") if isinstance(rope, dict) else "default"
    legacy = getattr(config, "rope_scaling", None)
    if isinstance(legacy, dict) and (legacy.get("rope_type") or legacy.get("type")) not in (None, "default"):
        rope_type = legacy.get("rope_type") or legacy.get("type")
    if rope_type != "default":
        raise ExportUnusable(f"rope scaling {rope_type!r} is not written by this exporter; convert the merged folder "
                             "with llama.cpp's convert_hf_to_gguf.py instead")
    theta = (rope.get("rope_theta") if isinstance(rope, dict) else None) or getattr(config, "rope_theta", None) or 10000.0
    return {
        "context_length": int(config.max_position_embeddings),
        "embedding_length": int(config.hidden_size),
        "block_count": int(config.num_hidden_layers),
        "feed_forward_length": int(config.intermediate_size),
        "head_count": int(n_head),
        "head_count_kv": int(getattr(config, "num_key_value_heads", None) or n_head),
        "head_dim": int(head_dim),
        "rope_freq_base": float(theta),
        "rms_eps": float(config.rms_norm_eps),
        "vocab_size": int(config.vocab_size),
        "tied": bool(getattr(config, "tie_word_embeddings", False)),
    }


def write_gguf(model_dir: str | Path, out_path: str | Path, *, quant: str = "q8_0", name: str | None = None,
               progress: Callable[[str], None] | None = None) -> GGUFFile:
    """Write the Hugging Face model folder `model_dir` (llama or qwen2, safetensors, fast BPE tokenizer)
    as one GGUF file, f16 or q8_0. Written to OUT.partial and renamed: no half file under the name."""
    gguf = _require_gguf()
    from transformers import AutoConfig

    if quant not in QUANTS:
        raise ExportUnusable(f"unknown quantisation {quant!r}; use one of {', '.join(QUANTS)}")
    say = progress or (lambda _m: None)
    started = time.monotonic()
    model_dir, out_path = Path(model_dir), Path(out_path)
    config = AutoConfig.from_pretrained(str(model_dir))
    arch_name = config.model_type
    if arch_name not in ARCHES:
        raise ExportUnusable(f"{model_dir}: architecture {arch_name!r}; the GGUF export writes {', '.join(ARCHES)} "
                             "(for others, convert the merged folder with llama.cpp's convert_hf_to_gguf.py)")
    arch = {"llama": gguf.MODEL_ARCH.LLAMA, "qwen2": gguf.MODEL_ARCH.QWEN2}[arch_name]
    hp = _hparams(config)
    tok = tokenizer_data(model_dir, hp["vocab_size"])
    notes = list(tok.notes)

    files = _weight_files(model_dir)
    shapes = _tensor_shapes(files)
    name_map = gguf.get_tensor_name_map(arch, hp["block_count"])
    qtarget = {"f16": gguf.GGMLQuantizationType.F16, "q8_0": gguf.GGMLQuantizationType.Q8_0}[quant]
    block = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0]
    plan: list[_Planned] = []
    fallback = 0
    for hf_name in files:
        if hf_name.endswith("rotary_emb.inv_freq"):
            continue
        if hf_name == "lm_head.weight" and hp["tied"]:
            continue  # llama.cpp reuses token_embd for a tied head
        found = name_map.get_type_and_name(hf_name, try_suffixes=(".weight", ".bias"))
        if found is None:
            raise ExportUnusable(f"{model_dir}: tensor {hf_name} has no GGUF name for {arch_name}")
        shape = shapes[hf_name]
        if len(shape) == 1:
            qtype = gguf.GGMLQuantizationType.F32  # norms and biases, as llama.cpp keeps them
        elif qtarget == gguf.GGMLQuantizationType.Q8_0 and shape[-1] % block:
            qtype, fallback = gguf.GGMLQuantizationType.F16, fallback + 1
        else:
            qtype = qtarget
        permute = None
        if arch_name == "llama" and found[0] in (gguf.MODEL_TENSOR.ATTN_Q, gguf.MODEL_TENSOR.ATTN_K):
            permute = (hp["head_count"], hp["head_count"] if found[0] == gguf.MODEL_TENSOR.ATTN_Q else hp["head_count_kv"])
        plan.append(_Planned(hf_name, found[1], files[hf_name], shape, qtype, permute))
    if fallback:
        notes.append(f"{fallback} tensors kept in f16: their rows are not a multiple of q8_0's {block}-value block")

    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".partial")
    writer = gguf.GGUFWriter(str(tmp), gguf.MODEL_ARCH_NAMES[arch])
    try:
        writer.add_name(name or model_dir.name)
        writer.add_file_type(int({"f16": gguf.LlamaFileType.MOSTLY_F16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[quant]))
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        writer.add_context_length(hp["context_length"])
        writer.add_embedding_length(hp["embedding_length"])
        writer.add_block_count(hp["block_count"])
        writer.add_feed_forward_length(hp["feed_forward_length"])
        writer.add_head_count(hp["head_count"])
        writer.add_head_count_kv(hp["head_count_kv"])
        writer.add_rope_dimension_count(hp["head_dim"])
        writer.add_rope_freq_base(hp["rope_freq_base"])
        writer.add_layer_norm_rms_eps(hp["rms_eps"])
        writer.add_vocab_size(hp["vocab_size"])
        if hp["head_dim"] != hp["embedding_length"] // hp["head_count"]:
            writer.add_key_length(hp["head_dim"])
            writer.add_value_length(hp["head_dim"])
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(tok.pre)
        writer.add_token_list(tok.tokens)
        writer.add_token_types(tok.types)
        writer.add_token_merges(tok.merges)
        for role, value in tok.special.items():
            getattr(writer, f"add_{role}_token_id")(value)
        writer.add_add_bos_token(tok.add_bos)
        writer.add_add_eos_token(tok.add_eos)
        if tok.chat_template:
            writer.add_chat_template(tok.chat_template)

        import numpy as np

        for p in plan:  # the tensor table first, from the shapes: data follows one tensor at a time
            n = int(np.prod(p.shape))
            if p.qtype == gguf.GGMLQuantizationType.Q8_0:
                byte_shape = gguf.quant_shape_to_byte_shape(p.shape, p.qtype)
                writer.add_tensor_info(p.gguf_name, byte_shape, np.dtype(np.uint8), int(np.prod(byte_shape)), raw_dtype=p.qtype)
            elif p.qtype == gguf.GGMLQuantizationType.F16:
                writer.add_tensor_info(p.gguf_name, p.shape, np.dtype(np.float16), n * 2)
            else:
                writer.add_tensor_info(p.gguf_name, p.shape, np.dtype(np.float32), n * 4)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for i, p in enumerate(plan):
            data = _read_tensor(p.file, p.hf_name)
            if p.permute:
                data = llama_permute(data, *p.permute)
            data = np.ascontiguousarray(gguf.quants.quantize(data, p.qtype))
            writer.write_tensor_data(data)
            if (i + 1) % 50 == 0:
                say(f"wrote {i + 1}/{len(plan)} tensors")
        writer.close()
        tmp.replace(out_path)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    counts: dict[str, int] = {}
    for p in plan:
        counts[p.qtype.name] = counts.get(p.qtype.name, 0) + 1
    return GGUFFile(path=out_path, arch=arch_name, quant=quant, tensors=len(plan), size_bytes=out_path.stat().st_size,
                    tensor_types=counts, seconds=round(time.monotonic() - started, 2), notes=notes)


# --------------------------------------------------------------------------- checking

@dataclass
class GGUFCheck:
    quant: str
    max_abs_diff: float  # max |logit(GGUF) - logit(merged)| over the prompts' positions and vocabulary
    max_abs_logit: float  # largest |logit| of the merged model: the scale of the difference
    tolerance: float
    tokens_match: bool  # the GGUF's tokenizer (as transformers rebuilds it) gives the same ids
    greedy_same: int  # of GREEDY_TOKENS greedy tokens after the first prompt, how many agree (in a row)
    greedy_of: int
    prompts: int
    ok: bool
    seconds: float

    def summary(self) -> str:
        return (f"max |logit difference| GGUF vs merged = {self.max_abs_diff:.3g} (largest |logit| "
                f"{self.max_abs_logit:.3g}, tolerance {self.tolerance:.3g}); greedy {self.greedy_same}/{self.greedy_of} "
                f"tokens the same; tokenizer ids {'match' if self.tokens_match else 'DIFFER'}")


def load_gguf(gguf_path: str | Path, *, device: str = "cpu"):
    """(model in fp32, tokenizer) of a GGUF file, through transformers' own GGUF reader."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    tok = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32)
    return model.to(device).eval(), tok


def check_gguf(model_dir: str | Path, gguf_path: str | Path, *, quant: str, device: str = "cpu",
               prompts: list[list[dict]] | None = None, greedy_tokens: int = GREEDY_TOKENS) -> GGUFCheck:
    """Load `gguf_path` back with transformers and compare its logits with `model_dir`'s (fp32)."""
    import torch
    from transformers import AutoModelForCausalLM

    from .inference import load_tokenizer

    started = time.monotonic()
    prompts = prompts or CHECK_PROMPTS
    tokenizer = load_tokenizer(model_dir)
    reference = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).to(device).eval()
    loaded, gguf_tok = load_gguf(gguf_path, device=device)
    diff, scale, same_ids = 0.0, 0.0, True
    first_ids = None
    with torch.no_grad():
        for messages in prompts:
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            same_ids = same_ids and list(gguf_tok(text, add_special_tokens=False)["input_ids"]) == list(ids)
            x = torch.tensor([ids], device=device)
            first_ids = x if first_ids is None else first_ids
            want = reference(input_ids=x).logits.float()
            got = loaded(input_ids=x).logits.float()
            diff = max(diff, (got - want).abs().max().item())
            scale = max(scale, want.abs().max().item())
        same = 0
        if greedy_tokens and first_ids is not None:
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
            kwargs = {"max_new_tokens": greedy_tokens, "min_new_tokens": greedy_tokens, "do_sample": False,
                      "temperature": None, "top_p": None, "top_k": None, "pad_token_id": pad}
            a = reference.generate(input_ids=first_ids, **kwargs)[0, first_ids.shape[1]:].tolist()
            b = loaded.generate(input_ids=first_ids, **kwargs)[0, first_ids.shape[1]:].tolist()
            for x_, y_ in zip(a, b):
                if x_ != y_:
                    break
                same += 1
    tolerance = REL_TOLERANCE[quant] * max(1.0, scale)
    ok = not math.isnan(diff) and diff <= tolerance
    del reference, loaded
    return GGUFCheck(quant=quant, max_abs_diff=diff, max_abs_logit=scale, tolerance=tolerance, tokens_match=same_ids,
                     greedy_same=same, greedy_of=greedy_tokens, prompts=len(prompts), ok=ok,
                     seconds=round(time.monotonic() - started, 2))


# --------------------------------------------------------------------------- Ollama

CHATML_TEMPLATE = (
    "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
    "{{ if .Prompt }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n{{ end }}"
    "<|im_start|>assistant\n{{ .Response }}<|im_end|>\n"
)


def _render(template: str, messages: list[dict]) -> str:
    import jinja2

    env = jinja2.Environment(trim_blocks=False, lstrip_blocks=False)
    env.filters.setdefault("tojson", lambda v, **kw: json.dumps(v, ensure_ascii=False))
    return env.from_string(template).render(messages=messages, add_generation_prompt=True, tools=None,
                                            bos_token="", eos_token="")


def _chatml(messages: list[dict]) -> str:
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages) + "<|im_start|>assistant\n"


def template_system_default(chat_template: str | None) -> tuple[bool, str | None]:
    """(is the template ChatML, the system prompt it adds when a chat has none).

    Decided by rendering: with a system turn it must give exactly ChatML; without one, ChatML with
    at most one system turn put first (SmolLM2's and Qwen2.5's templates add their own)."""
    if not chat_template:
        return True, None  # the studio's tokenizers fall back to ChatML (training/loading.py)
    turns = [{"role": "system", "content": "S1"}, {"role": "user", "content": "U1"},
             {"role": "assistant", "content": "A1"}, {"role": "user", "content": "U2"}]
    try:
        if _render(chat_template, turns) != _chatml(turns):
            return False, None
        bare = _render(chat_template, turns[1:])
    except Exception:  # noqa: BLE001  a template jinja2 alone cannot render is not ChatML we can prove
        return False, None
    if bare == _chatml(turns[1:]):
        return True, None
    head = "<|im_start|>system\n"
    rest = _chatml(turns[1:])
    if bare.startswith(head) and bare.endswith(rest):
        body = bare[len(head):len(bare) - len(rest)]
        if body.endswith("<|im_end|>\n"):
            return True, body[: -len("<|im_end|>\n")]
    return False, None


def stop_tokens(model_dir: str | Path) -> list[str]:
    """The strings that end an answer: the tokenizer's EOS, the generation config's EOS ids, and
    <|im_end|> / <|endoftext|> where the vocabulary has them as special tokens (as chat does)."""
    from .inference import load_tokenizer

    tokenizer = load_tokenizer(model_dir)
    ids: list[int] = []
    gen = Path(model_dir) / "generation_config.json"
    gen_eos = json.loads(gen.read_text(encoding="utf-8")).get("eos_token_id") if gen.is_file() else None
    for value in (tokenizer.eos_token_id, gen_eos):
        for v in (value if isinstance(value, (list, tuple)) else [value]):
            if isinstance(v, int) and v not in ids:
                ids.append(v)
    out = [tokenizer.convert_ids_to_tokens(i) for i in ids]
    specials = set(getattr(tokenizer, "all_special_tokens", []) or [])
    for name in ("<|im_end|>", "<|endoftext|>"):
        if name not in out and name in specials:
            out.append(name)
    return [t for t in out if isinstance(t, str) and t]


def _quote(text: str) -> str:
    """A Modelfile value in triple quotes (the value may hold newlines and single quotes)."""
    if '"""' in text:
        raise ExportUnusable('a Modelfile value cannot hold """; remove it from the system prompt')
    return f'"""{text}"""'


def modelfile_text(model_dir: str | Path, gguf_name: str, *, system: str | None = None,
                   run_name: str | None = None) -> tuple[str, list[str]]:
    """An Ollama Modelfile for `gguf_name` (beside it) and notes. TEMPLATE is ChatML in Go-template
    syntax when the model's chat template renders as ChatML (SmolLM2, Qwen2, the tiny base); a
    default system prompt the template adds becomes the SYSTEM line (Ollama uses it when a chat
    has none, as the template did). Another template is left to Ollama, which reads
    `tokenizer.chat_template` from the GGUF."""
    from .inference import load_tokenizer

    tokenizer = load_tokenizer(model_dir)
    chatml, default_system = template_system_default(
        tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None)
    system = system or default_system
    notes = []
    lines = [f"# Ollama: ollama create {run_name or 'MODEL'} -f Modelfile   (written by studio export-model)",
             f"FROM ./{gguf_name}"]
    if chatml:
        lines.append(f"TEMPLATE {_quote(CHATML_TEMPLATE)}")
    else:
        notes.append("the chat template is not ChatML: no TEMPLATE line, Ollama uses the GGUF's tokenizer.chat_template")
    for stop in stop_tokens(model_dir):
        lines.append(f'PARAMETER stop "{stop}"')
    if system:
        lines.append(f"SYSTEM {_quote(system)}")
    return "\n".join(lines) + "\n", notes


# --------------------------------------------------------------------------- vLLM

def vllm_rank(r: int) -> int:
    """The smallest --max-lora-rank vLLM accepts that holds rank r."""
    for allowed in VLLM_RANKS:
        if r <= allowed:
            return allowed
    raise ExportUnusable(f"LoRA rank {r} is above vLLM's largest --max-lora-rank ({VLLM_RANKS[-1]}); merge the run "
                         "(studio merge) and serve the merged folder instead")


@dataclass
class VllmCommand:
    argv: list[str]  # absolute paths: to run from anywhere on this machine
    script: str  # vllm.sh: the same command with the run's own paths relative to the script
    notes: list[str]

    @property
    def line(self) -> str:
        return shlex.join(self.argv)


def vllm_command(run_dir: str | Path) -> VllmCommand:
    """`vllm serve BASE --enable-lora --lora-modules RUN=ADAPTER --max-lora-rank R` for a LoRA run
    (`vllm serve RUN/model` for a full fine-tune)."""
    from .inference import describe_run

    run = describe_run(run_dir)
    run_abs = run.run_dir.resolve()
    notes: list[str] = []
    if run.method == "full":
        target = run.weights_dir.resolve()
        argv = ["vllm", "serve", str(target), "--served-model-name", run.name]
        rel = ["vllm", "serve", "$RUN/" + target.relative_to(run_abs).as_posix(), "--served-model-name", run.name]
    else:
        acfg = json.loads((run.weights_dir / "adapter_config.json").read_text(encoding="utf-8"))
        r = int(acfg.get("r") or 8)
        ranks = [int(v) for v in (acfg.get("rank_pattern") or {}).values()]
        r = max([r, *ranks])
        if acfg.get("use_dora"):
            notes.append("vLLM does not serve DoRA adapters; merge the run (studio merge) and serve the merged folder")
        if run.method == "qlora":
            notes.append("a QLoRA adapter: vLLM applies it to the 16-bit base (as studio merge does)")
        base = Path(run.base_path)
        base_arg = str(base.resolve()) if base.exists() else run.base_path
        adapter = run.weights_dir.resolve()
        argv = ["vllm", "serve", base_arg, "--enable-lora", "--lora-modules", f"{run.name}={adapter}",
                "--max-lora-rank", str(vllm_rank(r))]
        base_rel = base_arg
        if base.exists():
            try:  # inside the workspace: relative to the run, so the script survives a move
                base.resolve().relative_to(run_abs.parent.parent)
                base_rel = "$RUN/" + Path(os.path.relpath(base.resolve(), run_abs)).as_posix()
            except ValueError:
                pass
        rel = ["vllm", "serve", base_rel, "--enable-lora", "--lora-modules",
               f"{run.name}=$RUN/{adapter.relative_to(run_abs).as_posix()}", "--max-lora-rank", str(vllm_rank(r))]
        if run.untrained_base:
            notes.append("the base is the untrained tiny model: its answers mean nothing")

    def sh(word: str) -> str:  # quote, but let $RUN expand
        if "$RUN" in word:
            return '"' + word.replace("\\", "\\\\").replace('"', '\\"').replace("`", "\\`") + '"'
        return shlex.quote(word)

    script = "\n".join([
        "#!/bin/sh",
        f"# Serve run {run.name} with vLLM (OpenAI-compatible API on port 8000); written by studio export-model.",
        f"# The {'model' if run.method == 'full' else 'adapter'} answers as model {run.name!r}; extra arguments "
        "pass through (e.g. --port 8001).",
        *[f"# note: {n}" for n in notes],
        'RUN="$(cd "$(dirname "$0")/.." && pwd)"',
        "exec " + " ".join(sh(w) for w in rel) + ' "$@"',
    ]) + "\n"
    return VllmCommand(argv=argv, script=script, notes=notes)


# --------------------------------------------------------------------------- the whole export

@dataclass
class ExportResult:
    run: str
    out_dir: Path
    gguf: GGUFFile | None = None
    modelfile: Path | None = None
    check: GGUFCheck | None = None
    merged_dir: Path | None = None
    merge_max_abs_diff: float | None = None
    vllm: VllmCommand | None = None
    vllm_script: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.check is None or self.check.ok

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"run": self.run, "out_dir": str(self.out_dir), "ok": self.ok, "notes": self.notes}
        if self.gguf:
            g = asdict(self.gguf)
            g["path"] = str(self.gguf.path)
            d["gguf"] = g
        if self.modelfile:
            d["modelfile"] = str(self.modelfile)
        if self.check:
            d["check"] = asdict(self.check)
        if self.merged_dir:
            d["merged"] = str(self.merged_dir)
            d["merge_max_abs_diff"] = self.merge_max_abs_diff
        if self.vllm:
            d["vllm"] = {"command": self.vllm.line, "argv": self.vllm.argv, "script": str(self.vllm_script),
                         "notes": self.vllm.notes}
        d["versions"] = gguf_versions()
        return d


def _fresh_merge(merged: Path, adapter_dir: Path) -> bool:
    """RUN/merged is usable for an export: merged.json says ok and it is newer than the adapter."""
    info_path = merged / "merged.json"
    weights = [p for p in adapter_dir.glob("adapter_model.*") if p.is_file()]
    if not info_path.is_file() or not weights:
        return False
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(info.get("ok")) and info_path.stat().st_mtime >= max(p.stat().st_mtime for p in weights)


def merged_model(run_dir: str | Path, *, device: str | None = None,
                 progress: Callable[[str], None] | None = None) -> tuple[Path, float | None]:
    """A plain model folder of the run: RUN/model for a full fine-tune, RUN/merged when it is fresh,
    else a new merge (into RUN/merged, or RUN/export/merged when an older RUN/merged is there, which a
    later pipeline stage may train on and is never replaced here). Returns (folder, merge difference)."""
    from .inference import describe_run
    from .merge import MERGED_DIR, merge_run

    say = progress or (lambda _m: None)
    run = describe_run(run_dir)
    if run.method == "full":
        return run.weights_dir, None
    merged = run.run_dir / MERGED_DIR
    if _fresh_merge(merged, run.weights_dir):
        say(f"using the merged model in {merged}")
        return merged, json.loads((merged / "merged.json").read_text(encoding="utf-8")).get("max_abs_diff")
    target = merged if not merged.exists() else run.run_dir / EXPORT_DIR / MERGED_DIR
    say(f"merging the adapter into its base ({target})")
    result = merge_run(run.run_dir, target, device=device, overwrite=target != merged)
    if not result.ok:
        raise ExportUnusable(f"the merged model differs from base + adapter by {result.max_abs_diff:.3g} (tolerance "
                             f"{result.tolerance:.3g}); nothing exported. Try: studio merge {run.name} --dtype fp32")
    return result.out_dir, result.max_abs_diff


def export_run(run_dir: str | Path, *, gguf: bool = True, vllm: bool = False, quant: str = "q8_0",
               out_dir: str | Path | None = None, check: bool = True, device: str | None = None,
               progress: Callable[[str], None] | None = None) -> ExportResult:
    """Export a finished run: a GGUF + Modelfile (`gguf`), a vLLM command + vllm.sh (`vllm`), into
    `out_dir` (default RUN_DIR/export). With `check`, the GGUF is loaded back and compared."""
    from .extras import require_train
    from .inference import describe_run, pick_device

    if gguf:
        require_train("a GGUF export")

    run = describe_run(run_dir)
    out = Path(out_dir) if out_dir else run.run_dir / EXPORT_DIR
    result = ExportResult(run=run.name, out_dir=out)
    if quant not in QUANTS:
        raise ExportUnusable(f"unknown quantisation {quant!r}; use one of {', '.join(QUANTS)}")
    if vllm:
        result.vllm = vllm_command(run.run_dir)
        out.mkdir(parents=True, exist_ok=True)
        script = out / "vllm.sh"
        script.write_text(result.vllm.script, encoding="utf-8")
        script.chmod(0o755)
        result.vllm_script = script
        if out.resolve() != (run.run_dir / EXPORT_DIR).resolve():
            result.notes.append("vllm.sh finds the run as the folder above the script: keep it in RUN/export")
    if gguf:
        _require_gguf()
        model_dir, merge_diff = merged_model(run.run_dir, device=device, progress=progress)
        result.merged_dir, result.merge_max_abs_diff = model_dir, merge_diff
        name = f"{run.name}-{quant}.gguf"
        result.gguf = write_gguf(model_dir, out / name, quant=quant, name=run.name, progress=progress)
        text, notes = modelfile_text(model_dir, name, run_name=run.name)
        (out / "Modelfile").write_text(text, encoding="utf-8")
        result.modelfile = out / "Modelfile"
        result.notes += result.gguf.notes + notes
        if run.untrained_base:
            result.notes.append("the base is the untrained tiny model: its answers mean nothing")
        if check:
            if progress:
                progress("checking: loading the GGUF back with transformers")
            result.check = check_gguf(model_dir, out / name, quant=quant, device=pick_device(device))
    record = out / "export.json"
    if out.is_dir():
        record.write_text(json.dumps(result.to_dict(), indent=1) + "\n", encoding="utf-8")
    return result

