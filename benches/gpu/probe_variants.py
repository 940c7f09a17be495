"""Probe: the seed's TRL + PEFT recipe (copied from shared/bench/seed_recipe_baseline.py) with
knobs added to find where its time goes: --profile prints the top CUDA kernels and CPU time of a
few steps; --no-upcast skips prepare_model_for_kbit_training's fp32 upcast; --dropout, --attn.
Used for the first measurements in benches/gpu/NOTES.md; the studio's own benchmark is
benches/gpu/train_bench.py.

Weights cannot be downloaded on the device machine, so the model is built from the
architecture's config with random weights: throughput and memory do not depend on
weight values. Data are random token ids, packed to max_length like the seed's
`packing=True`.

usage: python gpu_baseline.py --arch 7b --mode lora|qlora|full --steps 20 --out result.json
"""
import argparse
import json
import shutil
import tempfile
import time

import _dev  # benches/gpu/_dev.py: device calls with CPU stand-ins
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast, TrainerCallback

ARCHS = {
    # Qwen2.5 family shapes (from their public config.json files)
    "0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                 num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "7b": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
               num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False),
    "tiny": _dev.TINY,  # CPU smoke runs (tests/test_gpu_bench_cpu.py)
    "14b": dict(hidden_size=5120, intermediate_size=13824, num_hidden_layers=48, num_attention_heads=40,
                num_key_value_heads=8, vocab_size=152064, tie_word_embeddings=False),
}


def make_tokenizer(vocab_size):
    tok = Tokenizer(models.WordLevel({f"t{i}": i for i in range(64)} | {"<pad>": 64, "<eos>": 65}, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    t = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>")
    return t


class Timer(TrainerCallback):
    """Times the steps after `warmup`. every_step: wait for the GPU at every step end (the harness
    of runs 1-11, with a loss logged each step); else only where the clock starts and stops, as a
    run that logs every 10 steps goes. The clock stops at the last step's end (t1), so the end of
    training (a DataLoader worker's shutdown, the final log) is not in it (before run 13 it was)."""

    def __init__(self, warmup, every_step=True):
        self.warmup, self.t0, self.t1, self.n, self.losses, self.every_step = warmup, None, None, 0, [], every_step

    def on_step_end(self, args, state, control, **kw):
        last = state.global_step == state.max_steps
        if self.every_step or state.global_step == self.warmup or last:
            _dev.sync()
        if state.global_step == self.warmup:
            self.t0 = time.perf_counter()
        elif state.global_step > self.warmup:
            self.n += 1
            if last:
                self.t1 = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kw):
        if logs and "loss" in logs:
            self.losses.append(logs["loss"])


class Prof(TrainerCallback):
    """Profile two optimizer steps after warm-up; print top kernels and CPU/GPU totals."""
    def __init__(self, warmup):
        self.warmup, self.p = warmup, None

    def on_step_begin(self, args, state, control, **kw):
        if state.global_step == self.warmup + 1 and self.p is None:
            from torch.profiler import ProfilerActivity, profile
            self.p = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])
            self.p.__enter__()

    def on_step_end(self, args, state, control, **kw):
        if self.p is not None and state.global_step == self.warmup + 3:
            torch.cuda.synchronize()
            self.p.__exit__(None, None, None)
            ka = self.p.key_averages()
            print(ka.table(sort_by="cuda_time_total", row_limit=30, max_name_column_width=70))
            tot_cuda = sum(e.self_device_time_total for e in ka) / 1e3
            print(f"PROFILE total self CUDA ms over 2 optimizer steps: {tot_cuda:.1f}")
            self.p = False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="7b")
    ap.add_argument("--mode", default="lora")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--bs", type=int, default=2)
    ap.add_argument("--ga", type=int, default=4)
    ap.add_argument("--gc", type=int, default=-1, help="gradient checkpointing: -1 library default, 0 off, 1 on")
    ap.add_argument("--liger", action="store_true")
    ap.add_argument("--out", required=True)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--no-upcast", action="store_true")
    ap.add_argument("--dropout", type=float, default=0.05)
    ap.add_argument("--attn", default=None)
    ap.add_argument("--log-every", type=int, default=1,
                    help="logging_steps; above 1 the clock also stops waiting for the GPU at each step")
    a = ap.parse_args()

    import datasets
    import peft
    import transformers
    import trl
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from trl import SFTConfig, SFTTrainer

    cfg = AutoConfig.for_model("qwen2", **ARCHS[a.arch], max_position_embeddings=32768)
    tok = make_tokenizer(cfg.vocab_size)
    t_load = time.perf_counter()
    torch.manual_seed(0)  # same random weights as benches/gpu/train_bench.py's studio side
    if a.mode == "qlora":
        from transformers import BitsAndBytesConfig
        tmp = tempfile.mkdtemp(dir="/tmp")
        with torch.device(_dev.DEVICE):
            m = AutoModelForCausalLM.from_config(cfg, dtype=_dev.DTYPE)
        m.save_pretrained(tmp)
        del m
        _dev.reset_peak()
        bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                 bnb_4bit_compute_dtype=_dev.DTYPE, bnb_4bit_use_double_quant=True)
        model = AutoModelForCausalLM.from_pretrained(tmp, quantization_config=bnb, dtype=_dev.DTYPE, device_map=_dev.device_map())
        shutil.rmtree(tmp)
        if a.no_upcast:
            model.enable_input_require_grads()
        else:
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=a.gc != 0)
    else:
        with torch.device(_dev.DEVICE):
            model = AutoModelForCausalLM.from_config(cfg, dtype=_dev.DTYPE, **({"attn_implementation": a.attn} if a.attn else {}))
    t_load = time.perf_counter() - t_load
    weights_gb = _dev.allocated_gb()

    if a.mode in ("lora", "qlora"):
        peft_config = LoraConfig(r=16, lora_alpha=32, lora_dropout=a.dropout,
                                 target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                                 bias="none", task_type="CAUSAL_LM")
        model = get_peft_model(model, peft_config)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())

    n_rows = (a.steps + a.warmup + 2) * a.bs * a.ga
    g = torch.Generator().manual_seed(0)
    # rows of ~300 tokens so that packing has work to do, as instruction data would
    rows = [{"input_ids": torch.randint(100, cfg.vocab_size, (int(torch.randint(100, 500, (1,), generator=g)),), generator=g).tolist()}
            for _ in range(n_rows * 4)]
    ds = Dataset.from_list(rows)

    kw = dict(output_dir="/tmp/bl-out", max_steps=a.steps + a.warmup, per_device_train_batch_size=a.bs,
              gradient_accumulation_steps=a.ga, learning_rate=2e-4, logging_steps=a.log_every, packing=True,
              bf16=_dev.CUDA, use_cpu=not _dev.CUDA, report_to=[], save_strategy="no", dataloader_num_workers=0)
    import inspect
    params = inspect.signature(SFTConfig.__init__).parameters
    kw["max_length" if "max_length" in params else "max_seq_length"] = a.seq
    if a.gc != -1:
        kw["gradient_checkpointing"] = bool(a.gc)
    if a.liger:
        kw["use_liger_kernel"] = True
    args = SFTConfig(**kw)
    timer = Timer(a.warmup, every_step=a.log_every == 1)
    cbs = [timer]
    if a.profile:
        cbs.append(Prof(a.warmup))
    trainer = SFTTrainer(model=model, processing_class=tok, train_dataset=ds, args=args, callbacks=cbs)
    _dev.reset_peak()
    trainer.train()
    _dev.sync()
    dt = (timer.t1 or time.perf_counter()) - timer.t0
    tokens = timer.n * a.bs * a.ga * a.seq
    res = dict(arch=a.arch, mode=a.mode, seq=a.seq, bs=a.bs, ga=a.ga, liger=a.liger,
               gradient_checkpointing=args.gradient_checkpointing, padding_free=getattr(args, "padding_free", None),
               attn=getattr(model.config, "_attn_implementation", None),
               steps_timed=timer.n, seconds=dt, tokens_per_s=tokens / dt,
               peak_alloc_gb=_dev.peak_allocated_gb(),
               peak_reserved_gb=_dev.peak_reserved_gb(),
               weights_gb=weights_gb, load_s=t_load, trainable=trainable, total_params=total,
               losses=timer.losses[:3] + timer.losses[-3:], all_losses=timer.losses,
               versions=dict(torch=torch.__version__, transformers=transformers.__version__, peft=peft.__version__,
                             trl=trl.__version__, datasets=datasets.__version__),
               gpu=_dev.name())
    # model FLOPs per token, 6N for full training; frozen-base LoRA needs no weight grads: ~4N
    N = sum(ARCHS_param_count(cfg))
    flops_per_tok = (6 if a.mode == "full" else 4) * N
    res["model_tflops"] = flops_per_tok * res["tokens_per_s"] / 1e12
    print(json.dumps(res))
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)


def ARCHS_param_count(cfg):
    h, i, L, v = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers, cfg.vocab_size
    kvh = cfg.num_key_value_heads * (h // cfg.num_attention_heads)
    per_layer = h * h * 2 + h * kvh * 2 + 3 * h * i  # q,o + k,v + mlp (non-embedding matmul params)
    yield per_layer * L
    yield h * v  # lm_head matmul (embedding lookup is not a matmul)


if __name__ == "__main__":
    main()
