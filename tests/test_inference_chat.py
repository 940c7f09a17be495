"""Chat with a finished run: base and adapter side by side, whole and streamed, from a run folder."""
from __future__ import annotations

import pytest

from tests._tiny_lora import build_base, make_run

pytest.importorskip("peft")

MESSAGES = [{"role": "system", "content": "answer briefly"}, {"role": "user", "content": "hello world"}]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    base = build_base(root / "base")
    return base, make_run(root / "runs", "run-a", base, seed=1), make_run(root / "runs", "run-b", base, seed=2)


@pytest.fixture(scope="module")
def session(tiny):
    from training.inference import load_session

    _, run_a, _ = tiny
    return load_session(run_a)


def test_describe_run_reads_base_and_adapter(tiny):
    from training.inference import describe_run

    base, run_a, _ = tiny
    run = describe_run(run_a)
    assert run.name == "run-a" and run.method == "lora"
    assert run.base_path == str(base) and run.adapter_dir == run_a / "adapter"


def test_prompt_uses_the_chat_template(session):
    text = session.prompt_text(MESSAGES)
    assert text == ("<|im_start|>system\nanswer briefly<|im_end|>\n<|im_start|>user\nhello world<|im_end|>\n"
                    "<|im_start|>assistant\n")


def test_chatml_fallback_when_tokenizer_has_none(tmp_path):
    from training.inference import load_tokenizer

    tok = load_tokenizer(build_base(tmp_path / "plain", with_template=False))
    text = tok.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>user\nhello world<|im_end|>\n<|im_start|>assistant\n")


def test_chat_pair_base_and_adapter_differ_and_base_is_the_plain_model(session, tiny):
    import torch
    from transformers import AutoModelForCausalLM

    from training.inference import chat_pair

    base_text, tuned_text = chat_pair(session, MESSAGES, max_new_tokens=12, temperature=0)
    assert base_text != tuned_text
    # The base answer is what the base alone says: the adapter was really switched off.
    plain = AutoModelForCausalLM.from_pretrained(tiny[0], dtype=next(session.model.parameters()).dtype)
    plain = plain.to(session.device).eval()
    ids, mask = session.prompt_ids(MESSAGES)
    with torch.no_grad():
        out = plain.generate(input_ids=ids, attention_mask=mask, max_new_tokens=12, do_sample=False,
                             eos_token_id=session._eos_ids(), pad_token_id=session.tokenizer.pad_token_id)
    assert base_text == session.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    # ...and the adapter is still on afterwards.
    assert session.generate(MESSAGES, adapter="run-a", max_new_tokens=12, temperature=0).text == tuned_text


def test_generate_counts_tokens_and_reports_length(session):
    done = session.generate(MESSAGES, adapter="run-a", max_new_tokens=5, temperature=0)
    assert done.prompt_tokens == session.prompt_ids(MESSAGES)[0].shape[1]
    assert 1 <= done.completion_tokens <= 5
    assert done.finish_reason == ("length" if done.completion_tokens == 5 else "stop")


def test_sampling_with_a_seed_is_reproducible(session):
    a = session.generate(MESSAGES, adapter="run-a", max_new_tokens=10, temperature=1.0, seed=7).text
    b = session.generate(MESSAGES, adapter="run-a", max_new_tokens=10, temperature=1.0, seed=7).text
    assert a == b


def test_stream_yields_the_same_text_as_generate(session):
    from training.inference import chat_pair_stream

    whole = session.generate(MESSAGES, adapter="run-a", max_new_tokens=12, temperature=0)
    stream = session.stream(MESSAGES, adapter="run-a", max_new_tokens=12, temperature=0)
    pieces = list(stream)
    assert "".join(pieces) == whole.text
    assert stream.completion.completion_tokens == whole.completion_tokens
    sides = {}
    for side, piece in chat_pair_stream(session, MESSAGES, max_new_tokens=8, temperature=0):
        sides[side] = sides.get(side, "") + piece
    assert set(sides) <= {"base", "adapter"} and sides.get("adapter", "") != sides.get("base", "")


def test_stream_closed_early_releases_the_model(session):
    stream = session.stream(MESSAGES, adapter="run-a", max_new_tokens=50, temperature=0)
    next(iter(stream), None)
    stream.close()
    assert not session.lock.locked()
    assert session.generate(MESSAGES, adapter="run-a", max_new_tokens=3, temperature=0).completion_tokens >= 1


def test_stop_string_cuts_the_answer(session):
    whole = session.generate(MESSAGES, adapter="run-a", max_new_tokens=20, temperature=0).text
    if len(whole) < 4:
        pytest.skip("tiny model answered too little to cut")
    stop = whole[2:4]
    cut = session.generate(MESSAGES, adapter="run-a", max_new_tokens=20, temperature=0, stop=[stop])
    assert cut.text == whole[: whole.find(stop)] and cut.finish_reason == "stop"
    streamed = "".join(session.stream(MESSAGES, adapter="run-a", max_new_tokens=20, temperature=0, stop=[stop]))
    assert streamed == cut.text


def test_unusable_runs_say_what_to_do(tmp_path, tiny):
    from training.inference import RunUnusable, describe_run, load_session

    with pytest.raises(RunUnusable, match="no config.yaml"):
        describe_run(tmp_path)
    (tmp_path / "config.yaml").write_text("base: x\n")
    (tmp_path / "status.json").write_text('{"state": "running"}')
    with pytest.raises(RunUnusable, match="'running'.*wait for the run to finish"):
        describe_run(tmp_path)
    other_base = build_base(tmp_path / "other", seed=3)
    foreign = make_run(tmp_path / "runs", "foreign", other_base)
    with pytest.raises(RunUnusable, match="different bases"):
        load_session([tiny[1], foreign])


def test_missing_base_is_a_clear_error(tmp_path):
    from training.inference import RunUnusable, load_session

    run = tmp_path / "runs" / "r"
    (run / "adapter").mkdir(parents=True)
    (run / "adapter" / "adapter_config.json").write_text("{}")
    (run / "config.yaml").write_text(f"base: {tmp_path / 'no-such-model'}\n")
    with pytest.raises(RunUnusable, match="Download the base"):
        load_session(run)
