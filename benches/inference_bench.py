"""What an adapter costs at generation time, and what merging buys back.

Side by side in one process, on the same random Llama-shaped model and the same prompt (greedy,
fixed number of new tokens, EOS ignored): the base with the adapter switched off, the base with
the LoRA adapter active (unmerged, as `studio chat` and `studio serve` run it), the merged model
(`studio merge`), and the streamed path (`ChatSession.stream`, token-level detokenisation) against
plain generate. Prints a markdown table with tokens/s and ratios to the base.

    .venv/bin/python benches/inference_bench.py [--hidden 512 --layers 8 --new 64 --repeats 3]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--r", type=int, default=16)
    args = ap.parse_args()

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    from tests._tiny_lora import build_base
    from training.inference import ChatSession, RunModel, load_tokenizer

    hf_logging.set_verbosity_error()  # the never-matching EOS id below is on purpose
    torch.manual_seed(0)
    tmp = Path(tempfile.mkdtemp())
    tok = load_tokenizer(build_base(tmp / "tok"))
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=args.hidden, intermediate_size=args.hidden * 3,
                      num_hidden_layers=args.layers, num_attention_heads=8, num_key_value_heads=8,
                      max_position_embeddings=2048, eos_token_id=None, pad_token_id=tok.pad_token_id)
    model = get_peft_model(LlamaForCausalLM(cfg).eval(), LoraConfig(
        r=args.r, lora_alpha=2 * args.r, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.01)
    run = RunModel(run_dir=tmp, name="default", base="bench", base_path=str(tmp), method="lora", adapter_dir=tmp, model_dir=None)
    session = ChatSession(model=model, tokenizer=tok, base="bench", runs=[run], device="cpu")
    session._eos_ids = lambda: [-1]  # never stop early: every row generates exactly --new tokens
    chat = [{"role": "user", "content": "the quick brown fox jumps over the lazy dog. " * 4}]
    gen = {"max_new_tokens": args.new, "temperature": 0}

    merged_model = None

    def merged_generate():
        return session_m.generate(chat, adapter="default", **gen)

    paths = [("base (adapter disabled)", lambda: session.generate(chat, adapter=None, **gen)),
             ("base + LoRA adapter, unmerged", lambda: session.generate(chat, adapter="default", **gen)),
             ("base + LoRA adapter, streamed", lambda: list(session.stream(chat, adapter="default", **gen)))]
    best = {name: float("inf") for name, _ in paths}
    # Round-robin repeats, best of each: the machine is shared, so noise hits every path alike.
    for rep in range(args.repeats + 1):
        for name, fn in paths:
            t = time.perf_counter()
            fn()
            if rep:  # the first round warms up
                best[name] = min(best[name], time.perf_counter() - t)
    rows = [(name, args.new / best[name]) for name, _ in paths]
    merged_model = model.merge_and_unload()  # in place: measured after the unmerged paths
    session_m = ChatSession(model=merged_model, tokenizer=tok, base="bench", runs=[run], device="cpu",
                            base_loader=lambda: merged_model)
    session_m._eos_ids = lambda: [-1]
    merged_best = float("inf")
    for rep in range(args.repeats + 1):
        t = time.perf_counter()
        merged_generate()
        if rep:
            merged_best = min(merged_best, time.perf_counter() - t)
    rows.append(("merged model", args.new / merged_best))
    base_rate = rows[0][1]
    print(f"Generation on CPU ({torch.get_num_threads()} threads), random Llama hidden {args.hidden}, "
          f"{args.layers} layers, LoRA r={args.r} on q/k/v/o, {args.new} new tokens, greedy, best of {args.repeats}\n")
    print("| path | tokens/s | vs base |")
    print("| --- | ---: | ---: |")
    for name, rate in rows:
        print(f"| {name} | {rate:,.1f} | {rate / base_rate:.2f}x |")


if __name__ == "__main__":
    main()
