"""The recipe: setup (base model, tokenizer, data, adapter) -> train -> save, on TRL's SFTTrainer.

Features: full / LoRA / QLoRA (nf4, double quant) with rsLoRA and DoRA; hub id, local folder or the
built-in untrained `tiny` base; our own tokenisation (data.py) with loss on assistant tokens only;
TRL best-fit packing without attention across samples; eval loss every eval_steps and at the end;
resumable checkpoints; metrics.jsonl + status.json through a TrainerCallback (metrics.py).

Raises: DataError / ConfigError for user problems, torch.OutOfMemoryError for CUDA OOM (runs.py
turns it into status `failed` with remedies), anything else is a bug.

Chat, merge and serve load finished runs through training/inference.py (`describe_run`,
`load_session`); `load_for_inference(run_dir)` here gives one run's (model, tokenizer) to a script.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from .config import TrainConfig, load_run_config
from .data import SplitData, build_datasets, load_split
from .errors import TrainingError

BASE_DIR = "base"        # RUN_DIR/base: the tiny model (only for base: tiny)
ADAPTER_DIR = "adapter"  # RUN_DIR/adapter: the final PEFT adapter (+ tokenizer)
MODEL_DIR = "model"      # RUN_DIR/model: the final full fine-tuned model (+ tokenizer)
CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"  # RUN_DIR/tensorboard: event files, with `report: [tensorboard]`


def device_kind() -> str:
    from .loading import pick_device

    return pick_device()


def resolve_precision(cfg: TrainConfig) -> str:
    """bf16 / fp16 / fp32: `auto` picks bf16 on a GPU that has it, fp16 on older GPUs, fp32 on CPU
    (trl 1.16 enables bf16 by default and fails on a CPU; mixed precision needs a GPU here)."""
    from .loading import pick_precision

    return pick_precision(cfg.train.precision)


def base_path(run_dir: str | Path, cfg: TrainConfig | None = None, *, fetch: bool = False) -> str:
    """Where the run's base model loads from: RUN_DIR/base for `tiny`, the store's folder for a
    registry model or a .gguf file (training/models.py), else the folder or hub id as given.
    `fetch`: fetch or convert a registry model or .gguf that is not in the store yet."""
    from .models import ModelUnavailable, registry, resolve_base, store_dir

    cfg = cfg or load_run_config(run_dir)
    if cfg.is_tiny:
        return str(Path(run_dir) / BASE_DIR)
    try:
        return resolve_base(cfg.base, fetch=fetch)
    except ModelUnavailable:
        if fetch:
            raise
        return str(store_dir() / cfg.base) if cfg.base in registry() else cfg.base


def prepare_base(run_dir: str | Path, cfg: TrainConfig, split: SplitData | None = None) -> str:
    """Make sure the base model is loadable: builds the tiny one into RUN_DIR/base on first use,
    fetches a registry model or converts a .gguf into the store on first use."""
    if not cfg.is_tiny:
        return base_path(run_dir, cfg, fetch=True)
    from .tiny import ensure_tiny_base

    split = split or load_split(cfg.data.split, val_fraction=cfg.data.val_fraction_if_missing, seed=cfg.train.seed)
    return str(ensure_tiny_base(Path(run_dir) / BASE_DIR, split.all_texts(), cfg.tiny, seed=cfg.train.seed,
                                max_positions=max(4096, cfg.data.max_length)))


def load_tokenizer(path: str, *, local_only: bool = False):
    """The base's tokenizer (training/loading.py: the same rules as chat, serve and eval)."""
    from .loading import load_tokenizer as _load

    return _load(path, local_only=local_only)


def load_model(path: str, cfg: TrainConfig, precision: str, *, quantized: bool | None = None):
    """The base for training in the run's dtype; 4-bit nf4 (bitsandbytes) when method is qlora."""
    import torch

    from .loading import bnb_4bit
    from .loading import load_model as _load
    from .speed import resolve_attention

    quantized = cfg.method == "qlora" if quantized is None else quantized
    quant = None
    device = None
    if quantized:
        compute = precision if cfg.quant.compute_dtype == "auto" else cfg.quant.compute_dtype
        quant = bnb_4bit(quant_type=cfg.quant.quant_type, double_quant=cfg.quant.double_quant, compute_precision=compute)
        device = f"cuda:{local_rank()}" if torch.cuda.is_available() else "cpu"
    return _load(path, precision=precision, device=device, quantize_4bit=quant, for_training=True,
                 attn_implementation=resolve_attention(cfg.train.attn_implementation, packing=cfg.data.packing))


def lora_config(cfg: TrainConfig):
    from peft import LoraConfig

    targets = list(cfg.lora.target_modules)
    # PEFT honours "all-linear" only as a plain string: in a list it looks for a module of that name.
    target_modules = "all-linear" if targets == ["all-linear"] else targets
    return LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=target_modules, use_rslora=cfg.lora.use_rslora,
                      use_dora=cfg.lora.use_dora, bias="none", task_type="CAUSAL_LM")


def local_rank() -> int:
    """This process's GPU under torchrun (LOCAL_RANK), 0 otherwise."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def sft_args(cfg: TrainConfig, run_dir: Path, precision: str, has_eval: bool, overrides: dict[str, Any] | None = None):
    from trl import SFTConfig

    from .config import report_problem
    from .errors import ConfigError
    from .speed import resolve_liger

    on_cpu = device_kind() == "cpu"
    extra: dict[str, Any] = {"use_liger_kernel": resolve_liger(cfg.train.liger_kernel, compiled=cfg.train.compile_layers)}
    if cfg.train.devices > 1 and cfg.train.distributed == "fsdp":
        # Shard weights, grads and optimizer state across the GPUs (accelerate's FSDP through the
        # Trainer). use_orig_params lets frozen base weights and trainable LoRA weights share a unit.
        extra["fsdp"] = "full_shard auto_wrap"
        # FSDP checkpoints activations itself; transformers refuses both that and the training
        # argument at once, so the argument is turned off below.
        extra["fsdp_config"] = {"use_orig_params": True, "activation_checkpointing": cfg.train.gradient_checkpointing}
        extra["gradient_checkpointing"] = False
        extra["gradient_checkpointing_kwargs"] = None
    elif cfg.train.devices > 1:
        extra["ddp_find_unused_parameters"] = False
    if cfg.train.async_input and device_kind() == "cuda":
        extra["dataloader_num_workers"] = 1  # collates while the GPU trains; fork: the worker never touches CUDA
        # the Trainer takes a whole step's micro-batches at once, at the step boundary; with torch's
        # default of 2 batches ahead, the 3rd and 4th of a grad_accum 4 step were collated while the
        # host waited and the GPU idled. Two steps ahead: +1.5% on the fast preset (16,234 against
        # 15,993 tokens/s, one H100, benches/gpu/NOTES.md run 12)
        extra["dataloader_prefetch_factor"] = max(2, 2 * cfg.train.grad_accum)
        extra["accelerator_config"] = {"non_blocking": True}  # pinned batches (dataloader_pin_memory) copied async
    if cfg.train.defer_metrics:
        # the Trainer's NaN filter asks the GPU `isnan(loss) or isinf(loss)` every micro-batch: two
        # host syncs (training/sft.py); without it a NaN loss is logged as NaN
        extra["logging_nan_inf_filter"] = False
    problem = report_problem(cfg)
    if problem:  # checked before launch too (the plan, `studio train`); a run on an SSH host meets it here
        raise ConfigError(problem)
    if "tensorboard" in cfg.report:
        # transformers 5 has no logging_dir argument: its TensorBoardCallback reads this when the trainer is built
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(run_dir / TENSORBOARD_DIR)
    extra.update(overrides or {})
    return SFTConfig(**{**dict(
        output_dir=str(run_dir / CHECKPOINT_DIR),
        num_train_epochs=cfg.train.epochs, max_steps=cfg.train.max_steps,
        per_device_train_batch_size=cfg.train.micro_batch_size, per_device_eval_batch_size=cfg.train.micro_batch_size,
        gradient_accumulation_steps=cfg.train.grad_accum, learning_rate=cfg.train.learning_rate,
        lr_scheduler_type=cfg.train.lr_scheduler, warmup_steps=cfg.train.warmup_ratio,
        weight_decay=cfg.train.weight_decay,
        logging_steps=cfg.train.logging_steps,
        eval_strategy="steps" if has_eval else "no", eval_steps=cfg.train.eval_steps,
        save_strategy="steps", save_steps=cfg.train.save_steps, save_total_limit=cfg.train.save_total_limit,
        seed=cfg.train.seed, data_seed=cfg.train.seed,
        bf16=precision == "bf16", fp16=precision == "fp16", use_cpu=on_cpu,
        gradient_checkpointing=cfg.train.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if cfg.train.gradient_checkpointing else None,
        max_length=cfg.data.max_length, packing=cfg.data.packing,
        report_to=list(cfg.report), run_name=run_dir.name,  # the trackers' name for the run (trackio, wandb)
        dataloader_num_workers=0, disable_tqdm=True, save_only_model=False,
        dataset_kwargs={},  # our dataset is already tokenised: TRL only builds no labels and packs
    ), **extra})


def prepare_model(model: Any, cfg: TrainConfig, *, compile_layers: bool | None = None) -> tuple[Any, dict[str, Any]]:
    """The speed and memory choices applied to a loaded base (training/speed.py): QLoRA prep with
    or without the fp32 upcast, regional compilation. Returns the model and what was used."""
    from . import speed

    if cfg.method == "qlora":
        model = speed.prepare_quantized(model, upcast_fp32=cfg.quant.upcast_fp32,
                                        gradient_checkpointing=cfg.train.gradient_checkpointing)
    speed.apply_loss_vocab_chunk(cfg.train.loss_vocab_chunk)
    compiled = speed.compile_layers(model) if (cfg.train.compile_layers if compile_layers is None else compile_layers) else 0
    attn = getattr(model.config, "_attn_implementation", None) or cfg.train.attn_implementation
    used = speed.describe(attn, speed.resolve_liger(cfg.train.liger_kernel, compiled=bool(compiled)), compiled,
                          cfg.train.gradient_checkpointing)
    used["fused_lora"] = bool(cfg.train.fused_lora and cfg.method != "full" and not cfg.lora.use_dora)  # DoRA: PEFT's own
    fsdp = cfg.train.devices > 1 and cfg.train.distributed == "fsdp"  # FSDP checkpoints every layer itself
    used["checkpoint_fraction"] = 1.0 if fsdp else cfg.train.checkpoint_fraction
    used["offload_checkpoints"] = bool(cfg.train.offload_checkpoints and not fsdp)
    used["mlp_tile_tokens"] = cfg.train.mlp_tile_tokens
    if cfg.train.cuda_graphs:  # asked for and possible here (a capture that fails later logs why)
        from .cuda_graphs import unavailable

        used["cuda_graphs"] = unavailable() is None
    else:
        used["cuda_graphs"] = False
    from .sft import trl_supported  # imports trl, which every caller of this function trains with

    used["defer_metrics"] = bool(cfg.train.defer_metrics and trl_supported())
    return model, used


def make_trainer(cfg: TrainConfig, **kwargs: Any):
    """The run's trainer: TRL's SFTTrainer, through training/sft.py's subclass that keeps the
    micro-batch metrics on the GPU (train.defer_metrics)."""
    from transformers.trainer_callback import PrinterCallback

    from .quiet import is_quiet
    from .sft import StudioSFTTrainer

    trainer = StudioSFTTrainer(defer_metrics=cfg.train.defer_metrics, **kwargs)
    if is_quiet():  # it print()s each log as a dict; metrics.jsonl has them, the studio prints its own lines
        trainer.remove_callback(PrinterCallback)
    return trainer


def _reset_gpu_peak() -> None:
    import gc

    import torch

    if torch.cuda.is_available():
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


class CancelFlag:
    """Set by SIGTERM (runs.cancel); checked at every step end so the run stops with a checkpoint."""

    def __init__(self) -> None:
        self.requested = False


def train(run_dir: str | Path, cfg: TrainConfig, *, on_status: Callable[..., None], resume_from: str | None = None,
          cancel: CancelFlag | None = None, tokens_offset: int = 0) -> dict[str, Any]:
    """Run the recipe in this process; returns a summary (final step, eval_loss, cancelled)."""
    import torch
    from transformers import TrainerCallback

    from . import speed
    from .metrics import MFU_FORMULA, MetricsWriter, count_matmul_params, make_callback

    run_dir = Path(run_dir)
    split = load_split(cfg.data.split, val_fraction=cfg.data.val_fraction_if_missing, seed=cfg.train.seed)
    path = prepare_base(run_dir, cfg, split)
    _reset_gpu_peak()  # building a tiny base on the GPU is not part of the run's peak
    precision = resolve_precision(cfg)
    tokenizer = load_tokenizer(path)
    train_ds, eval_ds = build_datasets(tokenizer, cfg, split)
    model = load_model(path, cfg, precision)
    # Required for packing, not just memory: transformers 5 derives the per-sample attention mask from
    # position_ids only when no KV cache exists; with use_cache on, packed samples attend to each other.
    model.config.use_cache = False
    model, used = prepare_model(model, cfg)
    matmul = count_matmul_params(model)

    args = sft_args(cfg, run_dir, precision, eval_ds is not None)
    debug = cfg.debug

    def step_hook(step: int) -> None:
        if debug.step_sleep_s:
            import time

            time.sleep(debug.step_sleep_s)
        if debug.fail_after_step is not None and step >= debug.fail_after_step:
            raise RuntimeError(f"debug.fail_after_step={debug.fail_after_step}: simulated crash after step {step}")

    class Control(TrainerCallback):
        """Simulated OOM (debug) and cancel: stop at the step's end with a checkpoint."""

        def on_step_begin(self, args, state, control, **kw):
            limit = debug.simulated_gpu_tokens
            if limit is not None:
                need: float = cfg.train.micro_batch_size * cfg.data.max_length
                need /= 2 if cfg.train.gradient_checkpointing else 1
                need /= 4 if cfg.method == "qlora" else 1
                if need > limit:
                    raise torch.OutOfMemoryError(
                        f"CUDA out of memory (simulated by debug.simulated_gpu_tokens={limit}: this step needs "
                        f"{need:g} token units)")

        def on_step_end(self, args, state, control, **kw):
            if cancel is not None and cancel.requested:
                control.should_save = True
                control.should_training_stop = True

    metrics_cb = make_callback(run_dir, method=cfg.method, matmul_params=matmul, on_status=on_status,
                               tokens_offset=tokens_offset, step_hook=step_hook)
    trainer = make_trainer(cfg, model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                           processing_class=tokenizer, peft_config=lora_config(cfg) if cfg.uses_adapter else None,
                           callbacks=[Control(), metrics_cb] + speed.speed_callbacks(cfg.train, cfg.method, cfg.data.max_length))
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in trainer.model.parameters())
    if resume_from is None:
        MetricsWriter(run_dir).append({
            "event": "start", "base": cfg.base, "untrained": cfg.is_tiny, "method": cfg.method,
            "precision": precision, "device": device_kind(), "trainable_params": trainable, "total_params": total,
            "matmul_params": matmul, "train_sequences": len(train_ds), "eval_sequences": len(eval_ds or []),
            "mfu_formula": MFU_FORMULA, "speed": used,
            "world_size": int(os.environ.get("WORLD_SIZE", "1")), "fsdp": bool(getattr(trainer, "is_fsdp_enabled", False))})
    on_status(trainable_params=trainable, total_params=total, precision=precision, device=device_kind())
    result = trainer.train(resume_from_checkpoint=resume_from)
    cancelled = bool(cancel and cancel.requested)
    eval_loss = None
    if eval_ds is not None and not cancelled:
        step = trainer.state.global_step
        done = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h and h.get("step") == step]
        # transformers may already have evaluated at the last step (eval_steps divides it, or its own
        # end-of-training eval); evaluate only when the final step has no eval_loss yet
        eval_loss = done[-1] if done else trainer.evaluate().get("eval_loss")
    if not cancelled:
        save_final(trainer, tokenizer, run_dir, cfg)
    return {"step": trainer.state.global_step, "max_steps": trainer.state.max_steps,
            "train_loss": result.training_loss, "eval_loss": eval_loss, "cancelled": cancelled}


def save_final(trainer: Any, tokenizer: Any, run_dir: Path, cfg: TrainConfig) -> Path:
    """The adapter (lora/qlora) into RUN_DIR/adapter, or the whole model into RUN_DIR/model, with the tokenizer.

    The adapter names its base so the workspace can move (docs/contracts.md): `base` (RUN_DIR/base)
    for tiny, a registry name or hub id as given, a folder inside the workspace relative to the run
    directory; PEFT writes the absolute path it loaded (kept for a .gguf base: the store's
    content-hashed folder)."""
    from .config import portable_base

    out = run_dir / (ADAPTER_DIR if cfg.uses_adapter else MODEL_DIR)
    # Under torchrun every rank gets here. Each one takes part in gathering the weights (FSDP needs
    # all of them), but only rank 0 writes: two ranks writing adapter_config.json while one reads
    # it back below failed a two-process CI run with a JSONDecodeError (an empty file).
    main = int(os.environ.get("RANK", "0")) == 0
    trainer.model.save_pretrained(str(out), is_main_process=main)
    if not main:
        return out
    tokenizer.save_pretrained(str(out))
    base_ref = cfg.base if cfg.is_tiny else portable_base(run_dir, cfg.base)
    adapter_config = out / "adapter_config.json"
    if cfg.uses_adapter and adapter_config.is_file() and not cfg.base.lower().endswith(".gguf"):
        data = json.loads(adapter_config.read_text(encoding="utf-8"))
        data["base_model_name_or_path"] = BASE_DIR if cfg.is_tiny else base_ref
        adapter_config.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (out / "run.json").write_text(json.dumps({"base": base_ref, "base_path": base_path(run_dir, cfg),
                                              "method": cfg.method, "untrained_base": cfg.is_tiny}, indent=1) + "\n",
                                  encoding="utf-8")
    return out


def load_for_inference(run_dir: str | Path, *, quantized: bool = False, precision: str | None = None,
                       adapter: bool = True):
    """(model, tokenizer) of a finished run, ready for `generate`: the base with the run's adapter
    (a PeftModel; call `.merge_and_unload()` to merge), or the full fine-tuned model.

    The base loads in 16/32-bit unless `quantized` (merging into a 4-bit base drifts: design.md).
    `adapter=False` gives the plain base model, for side-by-side chat.
    """
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    precision = precision or resolve_precision(cfg)
    if cfg.method == "full" and adapter:
        final = run_dir / MODEL_DIR
        if not final.is_dir():
            raise TrainingError(f"{run_dir.name}: no {MODEL_DIR}/ yet: the run has not finished")
        return load_model(str(final), cfg, precision, quantized=False), load_tokenizer(str(final))
    path = base_path(run_dir, cfg, fetch=True)
    tok_path = str(run_dir / ADAPTER_DIR) if (run_dir / ADAPTER_DIR / "tokenizer_config.json").is_file() else path
    model = load_model(path, cfg, precision, quantized=quantized)
    tokenizer = load_tokenizer(tok_path)
    if adapter:
        from peft import PeftModel

        if not (run_dir / ADAPTER_DIR).is_dir():
            raise TrainingError(f"{run_dir.name}: no {ADAPTER_DIR}/ yet: the run has not finished")
        model = PeftModel.from_pretrained(model, str(run_dir / ADAPTER_DIR))
    model.eval()
    return model, tokenizer


def last_checkpoint(run_dir: str | Path) -> Path | None:
    ck = Path(run_dir) / CHECKPOINT_DIR
    found = [p for p in ck.glob("checkpoint-*") if p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").is_file()]
    return max(found, key=lambda p: int(p.name.split("-")[-1])) if found else None


def checkpoint_step(path: str | Path) -> int:
    return int(Path(path).name.split("-")[-1])


def _safetensors_problem(path: Path) -> str | None:
    """Why a .safetensors file is not whole, read from its header alone: 8 bytes of header length,
    the JSON header, then the tensors, the last of which must end exactly at the end of the file."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return f"{path.name} is {size} bytes: too short for a safetensors header"
        n = int.from_bytes(head, "little")
        if n > size - 8:
            return f"{path.name} is truncated: its header alone needs {n + 8} bytes, the file has {size}"
        try:
            header = json.loads(f.read(n))
        except ValueError:
            return f"{path.name}: its safetensors header is not valid JSON"
    ends = [int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__" and isinstance(t, dict)
            and "data_offsets" in t] if isinstance(header, dict) else None
    if ends is None:
        return f"{path.name}: its safetensors header is not a mapping of tensors"
    if 8 + n + max(ends, default=0) != size:
        return f"{path.name} is truncated: its tensors need {8 + n + max(ends, default=0)} bytes, the file has {size}"
    return None


def _torch_file_problem(path: Path) -> str | None:
    """Why a torch.save file (a zip archive since torch 1.6) is not whole: the zip's central
    directory is written last, so a cut-off file has none."""
    import zipfile

    if path.stat().st_size == 0:
        return f"{path.name} is empty"
    try:
        with zipfile.ZipFile(path) as z:
            z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        return f"{path.name} is truncated or damaged ({exc})"
    return None


def checkpoint_problem(path: str | Path) -> str | None:
    """Why checkpoint-N cannot be resumed from (a file cut off by a crash or a full disk, an
    unparsable trainer_state.json, no weights), or None when every file the Trainer loads on resume
    is whole. Reads headers and zip directories only: cheap even for big checkpoints."""
    path = Path(path)
    state = path / "trainer_state.json"
    try:
        json.loads(state.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "trainer_state.json is missing"
    except (OSError, ValueError) as exc:
        return f"trainer_state.json does not parse ({exc})"
    files = [p for p in path.iterdir() if p.is_file()]
    weights = [p for p in files if p.suffix == ".safetensors" or p.name in ("pytorch_model.bin", "adapter_model.bin")
               or p.name.endswith(".index.json")]
    if not weights and not any(p.is_dir() and p.name.startswith("pytorch_model_fsdp") for p in path.iterdir()):
        return "no model or adapter weights in it"
    try:
        for p in sorted(files):
            if p.suffix == ".safetensors":
                problem = _safetensors_problem(p)
            elif p.suffix in (".pt", ".pth", ".bin"):
                problem = _torch_file_problem(p)
            else:
                continue
            if problem:
                return problem
    except OSError as exc:
        return f"cannot read it ({exc})"
    return None


def resumable_checkpoint(run_dir: str | Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest checkpoint that is whole, and the newer ones skipped, each with why. A corrupt
    latest checkpoint (cut off by a crash or a full disk) falls back to the one before it."""
    ck = Path(run_dir) / CHECKPOINT_DIR
    found = sorted((p for p in ck.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()),
                   key=checkpoint_step, reverse=True)
    skipped: list[tuple[Path, str]] = []
    for p in found:
        problem = checkpoint_problem(p)
        if problem is None:
            return p, skipped
        skipped.append((p, problem))
    return None, skipped


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
