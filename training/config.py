"""The one training config: every knob of a run, documented, with the seed article's defaults.

Layers, later ones win: the defaults here (= the seed's recipe) < a named preset
(`training/presets/NAME.yaml`, a partial YAML) < the user's `--config FILE` (partial too; it may name
`preset:` itself) < `--set key.path=value` overrides < the CLI flags (`--base`, `--method`).

Errors name the field, its file:line when it came from a file, and the fix. Keys people paste from
the seed's TRL snippet (`max_seq_length`, `tokenizer`, `num_train_epochs`, ...) get a pointer to
this config's name for them and, where TRL renamed them, say so.
"""
from __future__ import annotations

import copy
import difflib
import re
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from .errors import ConfigError
from .models import TINY
from .yaml_lines import parse_yaml

TINY_NOTE = "tiny: an UNTRAINED random-weight model built here, for demos and tests; its answers mean nothing"

# transformers' SchedulerType values (transformers.trainer_utils) this config can run, in the enum's order. Kept
# here so that loading a config imports no transformers; tests/test_config_validation.py checks this list and
# the next against the installed transformers, so neither can drift.
LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                 "inverse_sqrt", "reduce_lr_on_plateau", "greedy")
# SchedulerType values that need transformers' lr_scheduler_kwargs, which this config does not set: they would
# fail when the trainer builds the scheduler.
LR_SCHEDULERS_NEED_KWARGS = {
    "cosine_with_min_lr": "needs min_lr or min_lr_rate (transformers' lr_scheduler_kwargs), which this config "
                          "does not set",
    "cosine_warmup_with_min_lr": "needs min_lr or min_lr_rate (transformers' lr_scheduler_kwargs), which this "
                                 "config does not set",
    "warmup_stable_decay": "needs num_decay_steps (transformers' lr_scheduler_kwargs), which this config does "
                           "not set",
}
# attn_implementation values: auto (training/speed.py resolves it) and what transformers' AttentionInterface
# accepts for training ("eager" plus its registered kernels, less the inference-only "paged|eager").
ATTN_IMPLEMENTATIONS = ("auto", "sdpa", "eager", "flex_attention", "flash_attention_2", "flash_attention_3",
                        "flash_attention_4")
# A kernel from the Hugging Face hub (transformers' integrations.hub_kernels.is_kernel): org/repo[@rev][:name].
HUB_KERNEL = re.compile(r"^[^/:]+/[^/:]+(?:@[^/:]+)?(?::[^/:]+)?$")
# flash attention versions: the module transformers imports and the pip package that provides it.
FLASH_PACKAGES = {"flash_attention_2": ("flash_attn", "flash-attn"),
                  "flash_attention_3": ("flash_attn_interface", "flash-attn-3"),
                  "flash_attention_4": ("flash_attn", "flash-attn-4")}
ALL_LINEAR = "all-linear"  # PEFT's shorthand: every linear layer but the output head
# Experiment trackers `report:` may name (transformers' report_to): the modules that tell one is installed (any of
# them; transformers' TensorBoard writer is torch.utils.tensorboard, from the tensorboard package, or tensorboardX)
# and the package to pip install.
REPORTERS = {"tensorboard": (("tensorboard", "tensorboardX"), "tensorboard"),
             "trackio": (("trackio",), "trackio"),
             "wandb": (("wandb",), "wandb")}


def choices(value: Any, options: tuple[str, ...] | list[str]) -> str:
    """`options` as a comma list, the ones closest to `value` first (difflib), then the rest in order."""
    close = difflib.get_close_matches(str(value), list(options), n=3, cutoff=0.5)
    return ", ".join(close + [o for o in options if o not in close])


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True)


class DataConfig(_Section):
    """What to train on and how samples become token sequences."""

    split: str = ""
    """Split directory (manifest.json + train.jsonl/val.jsonl) or one JSONL/JSON file
    (alpaca, messages, sharegpt or {"text"} rows). Set by `studio train SPLIT`."""
    kind: Literal["sft", "text"] = "sft"
    """sft: instruction/chat samples through the chat template; text: raw text for continued
    pretraining (every token trained, EOS appended)."""
    max_length: int = Field(1024, gt=0, title="max length")
    """Tokens per training sequence. Longer samples are cut (see `studio train --plan`); memory
    grows with it. The seed's `max_seq_length=1024` (renamed `max_length` in trl>=0.20)."""
    packing: bool = True
    """Pack several samples into one max_length sequence (TRL best-fit packing). Samples do not
    attend to each other: position ids restart per sample (padding-free)."""
    assistant_only_loss: bool = True
    """Train on the assistant's tokens only; system/user/template tokens get label -100. The
    assistant turn's end token (EOS) is trained, so the model learns to stop."""
    val_fraction_if_missing: float = Field(0.0, ge=0.0, lt=1.0)
    """For a single file without validation rows: hold out this fraction for eval (0 = no eval)."""


class LoraSection(_Section):
    """LoRA adapter shape (ignored by method full)."""

    r: int = Field(16, gt=0, title="r")
    """Rank of the low-rank update. 8-16 fits most tasks (seed); 32-64 for continued pretraining."""
    alpha: int = Field(32, gt=0, title="alpha")
    """Scaling: the update is multiplied by alpha/r (alpha/sqrt(r) with use_rslora). Seed: 2*r."""
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    """Dropout on the adapter's input; 0.05 is the seed's robust default against overfitting."""
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    """Linear layers that get an adapter, by name or name suffix as PEFT matches them (checked against the
    base's modules by `studio train --plan` and before a run starts). Add gate_proj/up_proj/down_proj to adapt
    the MLP too; [all-linear]: every linear layer but the output head."""
    use_rslora: bool = False
    """Rank-stabilised LoRA: scale by alpha/sqrt(r) so higher ranks keep learning."""
    use_dora: bool = False
    """DoRA: learn a magnitude vector besides the direction; a little better, slower per step."""

    @field_validator("target_modules", mode="before")
    @classmethod
    def _one_or_comma_list(cls, v: Any) -> Any:
        # `--set lora.target_modules=q_proj,v_proj` (or all-linear) reads as one string
        if isinstance(v, str):
            return [part.strip() for part in v.split(",") if part.strip()]
        return v

    @field_validator("target_modules")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("must name at least one layer, e.g. [q_proj, v_proj], or [all-linear]")
        if ALL_LINEAR in v and len(v) > 1:
            raise ValueError(f"{ALL_LINEAR} stands for every linear layer: give it alone, or list the layers")
        return v


class QuantConfig(_Section):
    """4-bit loading for method qlora (bitsandbytes)."""

    quant_type: Literal["nf4", "fp4"] = "nf4"
    """4-bit data type; nf4 (normal float) is QLoRA's choice for normally distributed weights."""
    double_quant: bool = True
    """Quantise the quantisation constants too: saves about 0.4 bit a parameter."""
    compute_dtype: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    """dtype of the matmuls on dequantised weights; auto = the run's precision."""
    upcast_fp32: bool = True
    """Cast the non-quantised weights (embeddings, output head, norms) to fp32, as PEFT's
    prepare_model_for_kbit_training does (the seed's path). False keeps them in the compute dtype:
    about 2 GB less at 7B (the lean preset)."""


class TrainSection(_Section):
    """Optimisation and bookkeeping."""

    learning_rate: float = Field(2e-4, gt=0, title="lr")
    """Peak learning rate. LoRA: 1e-4..2e-4 (seed); full fine-tuning wants ~10x lower."""
    epochs: float = Field(3.0, gt=0, title="epochs")
    """Passes over the training split (seed: 3). Watch eval_loss for overfitting."""
    max_steps: int = -1
    """Stop after this many optimizer steps; -1 = run all epochs."""
    micro_batch_size: int = Field(2, gt=0, title="micro-batch")
    """Sequences per forward pass per device (the seed's per_device_train_batch_size)."""
    grad_accum: int = Field(4, gt=0, title="grad-accum")
    """Micro-batches summed before each optimizer step; effective batch = micro_batch_size * grad_accum."""
    lr_scheduler: str = "linear"
    """transformers scheduler name: linear, cosine, cosine_with_restarts, polynomial, constant,
    constant_with_warmup, inverse_sqrt, reduce_lr_on_plateau (needs validation rows), greedy. (The
    ones that need lr_scheduler_kwargs, cosine_with_min_lr and warmup_stable_decay, are not available.)"""
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0)
    """Fraction of the steps spent warming the learning rate up from 0."""
    weight_decay: float = Field(0.0, ge=0.0)
    """AdamW weight decay."""
    logging_steps: int = Field(10, gt=0)
    """Write a metrics line (loss, lr, grad norm, tokens/s) every N optimizer steps (seed: 10)."""
    eval_steps: int = Field(50, gt=0)
    """Compute eval_loss on the validation split every N steps, and always at the end."""
    save_steps: int = Field(100, gt=0)
    """Write a resumable checkpoint every N steps (and one at the end)."""
    save_total_limit: int = Field(2, gt=0)
    """Keep only the newest N checkpoints."""
    seed: int = 42
    """Seed for weights init (tiny), data order and dropout: same seed, same run."""
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    """auto: bf16 on a GPU that has it, else fp16 on GPU, fp32 on CPU."""
    gradient_checkpointing: bool = True
    """Recompute activations in backward: much less memory, ~30% slower (seed remedy 3)."""
    checkpoint_fraction: float = Field(1.0, gt=0, le=1)
    """With gradient_checkpointing: the share of decoder layers that recompute (spread evenly);
    the others keep their activations. 1.0 = every layer (the libraries' default). Below 1 trades
    memory for speed: e.g. 0.5 with twice the micro-batch keeps the memory and halves the per-step
    CPU overhead of a launch-bound run (benches/gpu/NOTES.md)."""
    offload_checkpoints: bool = False
    """With gradient_checkpointing: keep the checkpointed layers' inputs in pinned CPU memory
    instead of on the GPU (the same as transformers 5.24's `offload=True`): t x hidden x 2 bytes
    per checkpointed layer saved (0.77 GB for 7B at micro-batch 4 x 1024), for two copies over
    PCIe per layer and micro-batch."""
    mlp_tile_tokens: Optional[int] = Field(None, gt=0)
    """Run each decoder layer's MLP over the sequence in tiles of this many tokens, each tile under
    its own checkpoint, so its intermediate tensors (3.5 x hidden wide for Llama) never exist for
    the whole sequence (training/long_context.py). For long sequences; None: the MLP runs whole.
    Costs one more MLP forward per tile in backward."""
    fused_lora: bool = False
    """LoRA and QLoRA: compute each adapter's dropout and A projection in one function that keeps
    only the layer's input for backward and draws the dropout mask again there (training/
    lora_fused.py), instead of PEFT's fp32 copy, mask and dropped-out copy per adapted projection.
    Same results for the same mask; about 8 x hidden bytes less per token and layer, and less
    memory traffic. Off keeps PEFT's own branch (the seed's recipe). DoRA branches stay PEFT's."""
    async_input: bool = True
    """On a CUDA GPU: one DataLoader worker collates the next micro-batches while the GPU trains,
    and the pinned batches go to the GPU without the host waiting for it (accelerate's
    non_blocking). The Trainer's default collates in the training process and copies each input
    tensor with a host sync (~6 per micro-batch), which leaves the GPU idle while it does
    (benches/gpu/NOTES.md, run 11). Off: the Trainer's defaults. No effect on a CPU."""
    defer_metrics: bool = True
    """Keep each micro-batch's logged statistics (entropy, token accuracy, token count, loss NaN
    check) on the GPU until the next log step, instead of TRL's and the Trainer's 7 host syncs per
    micro-batch (training/sft.py). The loss and the logged numbers are the same; a NaN or inf loss
    is logged as it is instead of being replaced by the running mean. Off: TRL's own compute_loss."""
    loss_vocab_chunk: Optional[int] = Field(None, gt=0)
    """Vocabulary columns per tile of TRL's chunked loss (it never builds the full logits). None:
    TRL's 32768. Its tile buffer is micro-batch tokens x this, so 8192 saves ~0.2-0.4 GB at a
    micro-batch of 4 x 1024 for a few more, smaller matmuls."""
    attn_implementation: str = "auto"
    """Attention kernel. auto: flex_attention on a CUDA GPU (packed samples get a block-diagonal
    mask; the seed's sdpa path pays ~1.7 ms of CPU per call in cuDNN set-up, benches/gpu/NOTES.md),
    sdpa elsewhere. Or name one: sdpa, eager, flex_attention, flash_attention_2/3/4 (each needs its
    flash-attn package; the plan says when it is missing), or a hub kernel (org/repo, with the
    kernels package)."""

    @field_validator("lr_scheduler", "attn_implementation", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) and "/" not in v else v

    @field_validator("lr_scheduler")
    @classmethod
    def _known_scheduler(cls, v: str) -> str:
        if v in LR_SCHEDULERS:
            return v
        if v in LR_SCHEDULERS_NEED_KWARGS:
            raise ValueError(f"{v} {LR_SCHEDULERS_NEED_KWARGS[v]}; choose one of {choices(v, LR_SCHEDULERS)}")
        raise ValueError(f"must be a transformers scheduler, one of {choices(v, LR_SCHEDULERS)}")

    @field_validator("attn_implementation")
    @classmethod
    def _known_attention(cls, v: str) -> str:
        if v in ATTN_IMPLEMENTATIONS or HUB_KERNEL.match(v):
            return v
        raise ValueError(f"must be one of {choices(v, ATTN_IMPLEMENTATIONS)} (or a hub kernel, org/repo)")
    liger_kernel: Literal["auto", "on", "off"] = "auto"
    """Liger's fused Triton kernels (RMSNorm, SwiGLU, RoPE): fewer passes over the activations.
    auto/on: used on a CUDA GPU when liger-kernel is installed (pip install liger-kernel), skipped
    elsewhere; auto is off with compile_layers (inductor fuses the same ops); off: never. (TRL 1.16
    computes the loss with its own chunked LM head, so liger's fused cross-entropy is not used.)"""

    @field_validator("liger_kernel", mode="before")
    @classmethod
    def _yaml_on_off(cls, v: Any) -> Any:
        # YAML reads a bare on/off as a boolean (`--set train.liger_kernel=off`)
        return {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v
    compile_layers: bool = False
    """torch.compile each decoder layer (regional compilation, dynamic shapes) on a GPU: fewer
    kernel launches; costs a minute of compilation at start."""
    cuda_graphs: bool = False
    """Replay each decoder layer's forward and backward as CUDA graphs (training/cuda_graphs.py):
    one launch per layer instead of ~70 kernels, for runs bound by the host launching kernels.
    Every packed micro-batch is padded to micro_batch_size x max_length tokens. Needs packing and
    no gradient checkpointing (graphed layers keep their activations); captured at the first step,
    which takes a few seconds. Skipped, with a log line, without a CUDA GPU."""
    devices: int = Field(1, gt=0, title="GPUs")
    """GPUs on this machine to train on. >1 starts one process per GPU (torchrun) with DDP: each
    GPU holds the model and trains on its own micro-batches; LoRA gradients are tiny to sync."""
    distributed: Literal["ddp", "fsdp"] = "ddp"
    """With devices > 1: ddp (each GPU holds the whole model: fastest when it fits) or fsdp (the
    weights are sharded across GPUs: for models too large for one card)."""


class TinyShape(_Section):
    """Shape of the built-in `tiny` base model (random weights, Llama-style)."""

    hidden_size: int = Field(64, gt=0)
    """Width of the residual stream."""
    num_layers: int = Field(2, gt=0)
    """Transformer blocks."""
    num_heads: int = Field(4, gt=0)
    """Attention heads (hidden_size must divide by it)."""
    intermediate_size: int = Field(128, gt=0)
    """MLP width."""
    vocab_size: int = Field(512, ge=300)
    """BPE vocabulary trained on the split's text (ids for special tokens included)."""
    architecture: str | None = None
    """Instead of the small Llama above, a real architecture's shape with random weights, from the
    plan's built-in table (qwen2.5-0.5b ... qwen2.5-72b, llama-3-8b, ...): measures speed and
    memory of a 7B or 14B run on a GPU without downloading weights. Still untrained."""

    @field_validator("architecture")
    @classmethod
    def _known_architecture(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from .shapes import SHAPES

        if v.lower() not in SHAPES:
            raise ValueError(f"unknown architecture {v!r}; known: {', '.join(sorted(SHAPES))}")
        return v.lower()


class DebugConfig(_Section):
    """Hooks for tests and demos; leave empty for real runs."""

    simulated_gpu_tokens: int | None = None
    """Raise torch.OutOfMemoryError at the first step when micro_batch_size * max_length exceeds
    this (halved with gradient checkpointing, quartered with qlora): exercises the OOM remedies on CPU."""
    fail_after_step: int | None = None
    """Raise an error after this optimizer step, as a crash would (tests resume)."""
    step_sleep_s: float = 0.0
    """Sleep this long after each step (tests cancel and live tailing)."""


class EvalSection(_Section):
    """An eval at the end of the run (training/evaluate.py): the base and the new adapter answer the
    same items, and RUN_DIR/evals/end/ holds the per-item results (`studio eval` runs one any time)."""

    at_end: bool = False
    """After training, evaluate the base and the adapter (a failed eval does not fail the run)."""
    set: str = ""
    """Eval set: a split directory or a data file. Empty: the run's own split (its `part`)."""
    part: Literal["val", "train", "all"] = "val"
    """Which part of a split directory to evaluate on."""
    scorer: Literal["exact", "contains", "regex", "numeric", "json"] = "contains"
    """How an answer is scored against the reference (the LLM judge needs the studio: `studio eval`)."""
    limit: Optional[int] = Field(None, gt=0)
    """Evaluate the first N items only (None: all)."""
    max_new_tokens: int = Field(128, gt=0)
    """Answer length cap."""
    batch_size: int = Field(8, gt=0)
    """Prompts generated together."""


class TrainConfig(_Section):
    """A training run, complete: base model, method, data, adapter, optimisation."""

    base: str = TINY
    """Base model: a registry name (`studio models list`: smollm2-135m-instruct installs offline), a
    .gguf file (converted once into the model store), a local Hugging Face folder, a hub id
    (Qwen/Qwen2.5-7B-Instruct), or `tiny` (built here, untrained: for demos and tests). A preset
    other than tiny-demo never falls back to tiny: without a base it asks for one."""
    method: Literal["full", "lora", "qlora"] = "lora"
    """full: all weights train (most memory); lora: a small adapter on a 16-bit base; qlora: the
    adapter on a 4-bit base (about 3x less memory for the weights)."""
    data: DataConfig = Field(default_factory=DataConfig)
    lora: LoraSection = Field(default_factory=LoraSection)
    quant: QuantConfig = Field(default_factory=QuantConfig)
    train: TrainSection = Field(default_factory=TrainSection)
    tiny: TinyShape = Field(default_factory=TinyShape)
    eval: EvalSection = Field(default_factory=EvalSection)
    debug: DebugConfig = Field(default_factory=DebugConfig)
    oom_retry: bool = False
    """On CUDA out-of-memory, start a new run with the next remedy applied (smaller batch,
    shorter length, gradient checkpointing, QLoRA)."""
    report: list[str] = Field(default_factory=list)
    """Experiment trackers that get the run's logs too (transformers' report_to): any of tensorboard
    (event files in RUN_DIR/tensorboard/), trackio, wandb. Empty (the default): none; metrics.jsonl
    and report.html are written either way. Each needs its package (`studio train --plan` names the
    pip command). wandb logs in with your own environment (the studio passes it no key) and follows
    your WANDB_MODE (offline included)."""
    preset: str | None = None
    """Preset this config was built on (informational; applied before the file's own keys)."""

    @field_validator("base")
    @classmethod
    def _base_not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must be a hub id, a local model folder or 'tiny'")
        return v

    @field_validator("report", mode="before")
    @classmethod
    def _report_list(cls, v: Any) -> Any:
        # `--set report=tensorboard` or `report: tensorboard,wandb` reads as one string; none/null: no tracker
        if v is None:
            return []
        if isinstance(v, str):
            v = v.split(",")
        if isinstance(v, list):
            v = [p.strip().lower() if isinstance(p, str) else p for p in v]
            return [] if v in (["none"], [""]) else v
        return v

    @field_validator("report")
    @classmethod
    def _known_reporters(cls, v: list[str]) -> list[str]:
        unknown = [name for name in v if name not in REPORTERS]
        if unknown:
            raise ValueError(f"unknown tracker {unknown[0]!r}: use any of {choices(unknown[0], list(REPORTERS))} "
                             "(or [] for none)")
        return list(dict.fromkeys(v))  # each once, in the order given

    @model_validator(mode="after")
    def _heads_divide(self) -> "TrainConfig":
        if self.tiny.hidden_size % self.tiny.num_heads:
            raise ValueError(f"tiny.hidden_size ({self.tiny.hidden_size}) must divide by tiny.num_heads ({self.tiny.num_heads})")
        return self

    @model_validator(mode="after")
    def _graphs_fit(self) -> "TrainConfig":
        t = self.train
        if not t.cuda_graphs:
            return self
        if t.gradient_checkpointing:
            raise ValueError("train.cuda_graphs needs train.gradient_checkpointing=false: a graphed layer keeps its "
                             "activations (set both, and check the plan's memory)")
        if t.compile_layers:
            raise ValueError("train.cuda_graphs and train.compile_layers exclude each other: choose one")
        if not self.data.packing:
            raise ValueError("train.cuda_graphs needs data.packing=true: the graphs replay one padded, packed length")
        return self

    @property
    def is_tiny(self) -> bool:
        return self.base == TINY

    @property
    def uses_adapter(self) -> bool:
        return self.method in ("lora", "qlora")

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self, reproduce: str | None = None) -> str:
        """The config as YAML; `reproduce` (the exact command) becomes the first line."""
        head = f"# reproduce: {reproduce}\n" if reproduce else ""
        if self.is_tiny:
            head += f"# base {TINY_NOTE}\n"
        return head + yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)


# Keys pasted from the seed's LoraConfig/SFTConfig snippet, and where they live here.
PASTED_KEYS = {
    "max_seq_length": "data.max_length (renamed to max_length in trl>=0.20)",
    "max_length": "data.max_length",
    "tokenizer": "nothing: the tokenizer comes from `base` (trl>=0.20 calls it processing_class)",
    "processing_class": "nothing: the tokenizer comes from `base`",
    "model_name": "base",
    "model_name_or_path": "base",
    "model": "base",
    "num_train_epochs": "train.epochs",
    "per_device_train_batch_size": "train.micro_batch_size",
    "gradient_accumulation_steps": "train.grad_accum",
    "learning_rate": "train.learning_rate",
    "logging_steps": "train.logging_steps",
    "eval_steps": "train.eval_steps",
    "save_steps": "train.save_steps",
    "packing": "data.packing",
    "output_dir": "nothing: each run gets WORKSPACE/runs/RUN_ID",
    "lora_alpha": "lora.alpha",
    "lora_dropout": "lora.dropout",
    "r": "lora.r",
    "target_modules": "lora.target_modules",
    "bias": "nothing: adapters are trained without bias",
    "task_type": "nothing: always CAUSAL_LM",
    "torch_dtype": "train.precision (trl>=0.20 / transformers 5 call it dtype)",
    "bf16": "train.precision: bf16",
    "fp16": "train.precision: fp16",
    "gradient_checkpointing": "train.gradient_checkpointing",
    "load_in_4bit": "method: qlora",
    "bnb_4bit_quant_type": "quant.quant_type",
    "bnb_4bit_use_double_quant": "quant.double_quant",
    "bnb_4bit_compute_dtype": "quant.compute_dtype",
    "seed": "train.seed",
    "lr": "train.learning_rate",
    "epochs": "train.epochs",
    "batch_size": "train.micro_batch_size",
}


# ---------------------------------------------------------------- layered loading

def preset_names() -> list[str]:
    from .presets import names

    return names()


def preset_summary(name: str) -> str:
    """A preset's one-line summary for pickers: its file's `# summary:` comment ("" if none)."""
    for line in _preset_text(name).splitlines():
        if line.startswith("# summary:"):
            return line[len("# summary:"):].strip()
    return ""


def _preset_text(name: str) -> str:
    entry = resources.files("training.presets").joinpath(f"{name}.yaml")
    if not entry.is_file():
        raise ConfigError(f"preset {name!r} does not exist; presets: {', '.join(preset_names())}")
    return entry.read_text(encoding="utf-8")


class _Layer:
    """One partial config: its mapping and where it came from (for error messages)."""

    def __init__(self, data: dict[str, Any], origin: str, lines: dict[str, int] | None = None):
        self.data = data
        self.origin = origin
        self.lines = lines or {}

    def where(self, path: str) -> str:
        line = self.lines.get(path)
        return f"{self.origin}:{line}" if line else self.origin


def _parse_yaml(text: str, origin: str) -> _Layer:
    doc = parse_yaml(text, origin, ConfigError)
    data = doc.data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: a config must be a YAML mapping of keys to values, got {type(data).__name__}")
    return _Layer(data, origin, doc.lines)


def _merge(into: dict[str, Any], layer: dict[str, Any]) -> dict[str, Any]:
    for k, v in layer.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = copy.deepcopy(v)
    return into


def _set_path(data: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    node = data
    for p in parts[:-1]:
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"--set {path}: {p} is not a section")
        node = nxt
    node[parts[-1]] = value


def parse_override(item: str) -> tuple[str, Any]:
    """`key.path=value` with the value read as YAML (`3`, `true`, `[q_proj, v_proj]`, `2e-4`)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set lora.r=8")
    key, raw = item.split("=", 1)
    key = key.strip()
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str) and _looks_float(value):  # YAML 1.1 reads 2e-4 as a string
        value = float(value)
    return key, value


def _looks_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _describe_error(err: ErrorDetails) -> str:
    kind = err["type"]
    value = err.get("input")
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        return "unknown key"
    if kind in ("greater_than", "greater_than_equal") and ctx.get(next(iter(ctx), "")) in (0, 0.0) and isinstance(value, int):
        return f"must be a positive integer, got {value!r}" if kind == "greater_than" else f"must be 0 or more, got {value!r}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}, got {value!r}"
    msg = err["msg"]
    msg = msg[0].lower() + msg[1:] if msg else msg
    msg = msg.replace("input should be", "must be").replace("value error, ", "")
    if isinstance(value, dict):  # a check across fields (a model validator): its message names them
        return msg
    return f"{msg}, got {value!r}" if "got" not in msg and kind != "missing" else msg


def _unknown_key_hint(path: str, model: type[BaseModel]) -> str:
    leaf = path.split(".")[-1]
    if leaf in PASTED_KEYS and PASTED_KEYS[leaf] != path:
        hint = PASTED_KEYS[leaf]
        return "not set here: " + hint[len("nothing: "):] if hint.startswith("nothing: ") else f"use {hint}"
    section = model
    for p in path.split(".")[:-1]:
        f = section.model_fields.get(p)
        if f is None or not (isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)):
            break
        section = f.annotation
    return "known keys here: " + ", ".join(section.model_fields)


def build_config(layers: list[_Layer]) -> TrainConfig:
    """Merge partial layers over the defaults and validate, naming file:line and field on error."""
    merged: dict[str, Any] = {}
    for layer in layers:
        _merge(merged, layer.data)
    try:
        return TrainConfig.model_validate(merged)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            path = ".".join(str(p) for p in err["loc"])
            origin = next((lay.where(path) for lay in reversed(layers) if _has_path(lay.data, path)), "config")
            text = _describe_error(err)
            if err["type"] == "extra_forbidden":
                text += f" ({_unknown_key_hint(path, TrainConfig)})"
            problems.append(f"{origin}: {path}: {text}" if path else text)
        raise ConfigError("invalid training config:\n  " + "\n  ".join(problems)) from None


def _has_path(data: dict[str, Any], path: str) -> bool:
    node: Any = data
    for p in path.split("."):
        if not isinstance(node, dict) or p not in node:
            return False
        node = node[p]
    return True


# Presets that may train the built-in untrained model without naming it.
TINY_PRESETS = ("tiny-demo",)


def load_config(
    path: str | Path | None = None,
    *,
    preset: str | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
    require_base: bool = True,
) -> TrainConfig:
    """The config for a run: defaults < preset < file (its own `preset:` applies first) < overrides.

    `overrides` is a list of `key.path=value` strings (the CLI's --set) or a dict of dotted keys.
    A preset other than tiny-demo whose layers name no `base` raises (it would otherwise plan and
    train the untrained tiny model silently); `require_base=False` allows it (forms that show a
    preset before the user picks a base). Raises ConfigError with file:line: field and the fix.
    """
    layers: list[_Layer] = []
    file_layer = None
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        text = p.read_text(encoding="utf-8")
        file_layer = _parse_yaml(text, str(p))
        file_layer.data.pop("_comment", None)
    preset = preset or (file_layer.data.get("preset") if file_layer else None)
    if preset:
        pl = _parse_yaml(_preset_text(preset), f"preset {preset}")
        pl.data["preset"] = preset
        layers.append(pl)
    if file_layer:
        layers.append(file_layer)
    if overrides:
        items = overrides.items() if isinstance(overrides, dict) else (parse_override(o) for o in overrides)
        data: dict[str, Any] = {}
        for key, value in items:
            _set_path(data, key, value)
        layers.append(_Layer(data, "--set"))
    if require_base and preset and preset not in TINY_PRESETS and not any(_has_path(lay.data, "base") for lay in layers):
        raise ConfigError(f"preset {preset!r} names no base model: pass --base MODEL (smollm2-135m-instruct installs "
                          "offline; also a hub id, a model folder or a .gguf file; `studio models list`), or "
                          "--base tiny for the untrained test model")
    return build_config(layers)


def load_run_config(run_dir: str | Path) -> TrainConfig:
    """A run directory's saved config.yaml (complete, so no preset is applied again)."""
    p = Path(run_dir) / "config.yaml"
    if not p.is_file():
        raise ConfigError(f"{p} does not exist: not a run directory")
    layer = _parse_yaml(p.read_text(encoding="utf-8"), str(p))
    cfg = build_config([layer])
    # a base and a split inside the workspace are kept relative to the run (portable_base)
    base = resolve_run_base(run_dir, cfg.base)
    split = resolve_run_base(run_dir, cfg.data.split) if cfg.data.split else cfg.data.split
    if split != cfg.data.split:
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"split": split})})
    return cfg if base == cfg.base else cfg.model_copy(update={"base": base})


def resolve_run_base(run_dir: str | Path, base: str) -> str:
    """A config.yaml `base` that is a path relative to the run directory (`../stage-1/merged`, as
    `portable_base` writes it), made absolute, whatever the working directory (a detached trainer
    runs in the run directory, chat and merge do not). Anything else (tiny, a registry name, a hub
    id, an absolute path, a relative path that is not there) as given."""
    p = Path(base).expanduser()
    if base == TINY or p.is_absolute():
        return base
    candidate = Path(run_dir).absolute() / p
    return str(candidate.resolve()) if candidate.exists() else base


def portable_base(run_dir: str | Path, base: str) -> str:
    """`base` as a run should record it so the workspace can move: a folder or file inside the
    run's workspace (the folder above runs/) relative to the run directory (`../stage-1/merged`);
    anything else (tiny, registry names, hub ids, paths outside the workspace) as given."""
    import os

    p = Path(base).expanduser()
    if base == TINY or not p.is_absolute() or not p.exists():
        return base
    run = Path(run_dir).resolve()
    try:
        p.resolve().relative_to(run.parent.parent)
    except ValueError:
        return base
    return os.path.relpath(p.resolve(), run)


def save_config(cfg: TrainConfig, path: str | Path, reproduce: str | None = None) -> None:
    """Write a run's config.yaml; its base and split, where they lie inside the workspace, relative to
    the run directory (portable_config), so the workspace can move."""
    Path(path).write_text(portable_config(cfg, Path(path).parent).to_yaml(reproduce), encoding="utf-8")


def portable_config(cfg: TrainConfig, run_dir: str | Path) -> TrainConfig:
    """`cfg` with `base` and `data.split` as portable_base writes them (load_run_config undoes it)."""
    changes = {"base": portable_base(run_dir, cfg.base)}
    if cfg.data.split:
        changes["data.split"] = portable_base(run_dir, cfg.data.split)
    changes = {k: v for k, v in changes.items() if v != (cfg.base if k == "base" else cfg.data.split)}
    return with_changes(cfg, changes) if changes else cfg


def with_changes(cfg: TrainConfig, changes: dict[str, Any]) -> TrainConfig:
    """A copy with dotted-key changes applied and validated (used by OOM remedies and sweeps)."""
    data = cfg.to_dict()
    for key, value in changes.items():
        _set_path(data, key, value)
    return build_config([_Layer(data, "changes")])


# ---------------------------------------------------------------- checks where the config meets the machine and base

def attention_problem(cfg: TrainConfig) -> str | None:
    """What stops the config on this machine, or None: train.attn_implementation's package is missing,
    or a `report` tracker's (report_problem). The plan shows it; a local launch refuses with it (a run
    on an SSH host is checked there)."""
    import importlib.util

    attn = cfg.train.attn_implementation
    if attn in FLASH_PACKAGES:
        module, package = FLASH_PACKAGES[attn]
        # Without the package, transformers tries a hub kernel through the kernels package instead, which
        # needs the hub and a CUDA build of that kernel: not something a run can count on.
        if importlib.util.find_spec(module) is None:
            return (f"train.attn_implementation={attn} needs the {package} package (pip install {package}), which "
                    "is not installed here; use sdpa (or auto)")
    elif HUB_KERNEL.match(attn) and importlib.util.find_spec("kernels") is None:
        return (f"train.attn_implementation={attn} is a hub kernel: it needs the kernels package (pip install "
                "kernels), which is not installed here; use sdpa (or auto)")
    return report_problem(cfg)


def _installed(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None  # finds, never imports
    except (ImportError, ValueError):  # a broken install, or a module without a spec
        return False


def report_problem(cfg: TrainConfig) -> str | None:
    """One line naming the pip command when a tracker in `report` is not installed here, or None."""
    missing = [name for name in cfg.report if not any(_installed(m) for m in REPORTERS[name][0])]
    if not missing:
        return None
    names = " and ".join(missing)
    one = len(missing) == 1
    return (f"report names {names}, which {'is' if one else 'are'} not installed here: pip install "
            f"{' '.join(REPORTERS[n][1] for n in missing)} (or take {'it' if one else 'them'} out of report)")


MODULE_CACHE_DIR = ".module-names"  # in the model store: the module names of each base seen, by its config's hash
_MODULE_CACHE_VERSION = 1
_modules_seen: dict[str, dict[str, Any]] = {}


def _module_source(cfg: TrainConfig) -> tuple[dict[str, Any], Any] | None:
    """(what identifies the base's architecture, a function building its transformers config), or None
    when the config is not on this machine. Nothing heavy is imported here."""
    from .models import ModelUnavailable, resolve_base
    from .shapes import SHAPES, shape_key

    def from_shape(key: str) -> tuple[dict[str, Any], Any]:
        model_type = "llama" if key.startswith("llama") else "qwen2"
        dims = dict(SHAPES[key])

        def build():
            from transformers import AutoConfig

            return AutoConfig.for_model(model_type, **dims)
        return {"shape": key, "model_type": model_type, **dims}, build

    def from_file(config_json: Path) -> tuple[dict[str, Any], Any]:
        import hashlib

        def build():
            from transformers import AutoConfig

            return AutoConfig.from_pretrained(str(config_json.parent), local_files_only=True)
        return {"config_sha256": hashlib.sha256(config_json.read_bytes()).hexdigest()}, build

    if cfg.is_tiny and cfg.tiny.architecture:
        return from_shape(cfg.tiny.architecture)
    if cfg.is_tiny:
        t = cfg.tiny

        def build_tiny():
            from transformers import LlamaConfig

            return LlamaConfig(vocab_size=t.vocab_size, hidden_size=t.hidden_size, intermediate_size=t.intermediate_size,
                               num_hidden_layers=t.num_layers, num_attention_heads=t.num_heads,
                               num_key_value_heads=t.num_heads, tie_word_embeddings=False)
        return {"tiny": [t.hidden_size, t.intermediate_size, t.num_layers, t.num_heads]}, build_tiny
    try:
        where = resolve_base(cfg.base, fetch=False)
    except ModelUnavailable:
        where = None  # a registry model not fetched yet, or a missing file: only the built-in shapes can tell
    if where and (Path(where) / "config.json").is_file():
        return from_file(Path(where) / "config.json")
    if where and "/" in where and not Path(where).exists():  # a hub id: its config if the HF cache has it
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(where, "config.json")
        except Exception:  # noqa: BLE001 - an old or missing huggingface_hub: fall back to the shapes
            cached = None
        if isinstance(cached, str) and Path(cached).is_file():
            return from_file(Path(cached))
    key = shape_key(cfg.base)
    return from_shape(key) if key else None


def _adaptable_types() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """(module types LoRA can adapt, the linear ones among them): PEFT 0.21's dispatch_default."""
    from torch import nn
    from transformers.pytorch_utils import Conv1D

    linear = (nn.Linear, Conv1D)
    return linear + (nn.Embedding, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.MultiheadAttention), linear


def _build_module_table(build_config: Any) -> dict[str, Any]:
    """The modules of the model `build_config()` describes, built on the meta device (no weights, no memory)."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        config = build_config()
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    finally:
        hf_logging.set_verbosity(verbosity)
    adaptable, linear = _adaptable_types()
    head = model.get_output_embeddings()
    return {"head": next((n for n, m in model.named_modules() if m is head), None) if head is not None else None,
            "modules": [[n, type(m).__name__, isinstance(m, adaptable), isinstance(m, linear)]
                        for n, m in model.named_modules() if n]}


def base_modules(cfg: TrainConfig) -> dict[str, Any] | None:
    """The base model's modules, {"head": output head's name, "modules": [[name, class, adaptable by LoRA,
    linear], ...]}, built without weights; None when the base's config is not on this machine.

    Cached per architecture (its config.json's hash, or the tiny/built-in shape) and transformers version:
    in this process and in the model store (MODULE_CACHE_DIR), so a plan imports torch only the first time."""
    import hashlib
    import json
    from importlib.metadata import version

    source = _module_source(cfg)
    if source is None:
        return None
    ident, build = source
    ident = {**ident, "transformers": version("transformers"), "v": _MODULE_CACHE_VERSION}
    key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:24]
    if key in _modules_seen:
        return _modules_seen[key]
    from .models import store_dir

    path = store_dir() / MODULE_CACHE_DIR / f"{key}.json"
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(table, dict) or not isinstance(table.get("modules"), list):
            raise ValueError(f"{path}: not a module table")  # noqa: TRY004 - a damaged cache file: build again
    except (OSError, ValueError):
        try:
            table = _build_module_table(build)
        except Exception:  # noqa: BLE001 - an architecture transformers cannot build here: leave it to the run
            return None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(json.dumps(table), encoding="utf-8")
            tmp.replace(path)
        except OSError:
            pass  # a read-only store: the in-process cache still serves this process
    _modules_seen[key] = table
    return table


def linear_layer_names(table: dict[str, Any]) -> list[str]:
    """The distinct last names of the base's linear layers but the output head (what all-linear adapts),
    in model order: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj for Llama or Qwen."""
    out: list[str] = []
    for name, _cls, _adaptable, linear in table["modules"]:
        leaf = name.rsplit(".", 1)[-1]
        if linear and name != table.get("head") and leaf not in out:
            out.append(leaf)
    return out


def validate_against_base(cfg: TrainConfig) -> str | None:
    """Check lora.target_modules against the base model's module names (matched as PEFT does: a module
    whose name is the target or ends with `.target`). Raises ConfigError naming the target and the base's
    linear layers; returns a note when the base's config is not here to check against, else None.
    `studio train --plan` and a launch call it before any process starts."""
    if not cfg.uses_adapter:
        return None
    table = base_modules(cfg)
    if table is None:
        return (f"lora.target_modules not checked: the config of {cfg.base} is not on this machine (the run "
                "checks it when it loads the base)")
    linears = linear_layer_names(table)
    targets = list(cfg.lora.target_modules)
    if targets == [ALL_LINEAR]:  # recipe.lora_config hands PEFT the string, which PEFT expands
        return None
    problems = []
    for t in targets:
        hit = [(n, c, ok) for n, c, ok, _lin in table["modules"] if n == t or n.endswith("." + t)]
        if not hit:
            close = difflib.get_close_matches(t, linears, n=1, cutoff=0.6)
            problems.append(f"{t} matches no module of {cfg.base}; its linear layers are {', '.join(linears)}"
                            + (f" (did you mean {close[0]}?)" if close else ""))
        elif not all(ok for _n, _c, ok in hit):
            n, c, _ok = next(h for h in hit if not h[2])
            problems.append(f"{t} matches {n} ({c}), which LoRA cannot adapt; its linear layers are "
                            f"{', '.join(linears)}")
    if problems:
        raise ConfigError("lora.target_modules: " + "; ".join(problems))
    return None
