"""Split reading, assistant-only labels, EOS, ChatML fallback, packing without cross-attention."""
from __future__ import annotations

import json

import pytest

from tests.training_fixtures import QA, write_split
from training.data import ensure_chat_template, load_split, tokenise_sample
from training.errors import DataError


@pytest.fixture(scope="module")
def tok():
    from training.tiny import build_tokenizer

    return build_tokenizer([q + " " + a for q, a in QA], 400)


def test_reads_every_format_into_messages(tmp_path):
    rows = [
        {"instruction": "Sum", "input": "1 2", "output": "3", "system": "math", "history": [["hi", "hello"]]},
        {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
        {"text": "raw document"},
    ]
    f = tmp_path / "mixed.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    split = load_split(f)
    assert split.train[0]["messages"] == [
        {"role": "system", "content": "math"}, {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "Sum\n\n1 2"}, {"role": "assistant", "content": "3"}]
    assert split.train[1]["messages"][1] == {"role": "assistant", "content": "a"}
    assert split.train[3] == {"text": "raw document"}
    j = tmp_path / "list.json"
    j.write_text(json.dumps(rows[:2]), encoding="utf-8")
    assert len(load_split(j, val_fraction=0.5).val) == 1


def test_split_directory_per_contract(tmp_path):
    d = write_split(tmp_path / "v1", n_train=6, n_val=2, fmt="alpaca")
    split = load_split(d)
    assert (len(split.train), len(split.val), split.format) == (6, 2, "alpaca")
    (d / "train.jsonl").write_text((d / "train.jsonl").read_text().splitlines()[0] + "\n")
    with pytest.raises(DataError, match="files.train.rows says 6 but train.jsonl has 1 rows"):
        load_split(d)


@pytest.mark.parametrize("line, expect", [
    ('{"instruction": "q"', "train.jsonl:2: not valid JSON"),
    ('{"messages": [{"role": "robot", "content": "x"}]}', "train.jsonl:2: messages[0]: expected"),
    ('{"messages": [{"role": "user", "content": "only a question"}]}', "train.jsonl:2: no assistant turn"),
    ('{"foo": 1}', "train.jsonl:2: unknown row format"),
    ('[1, 2]', "train.jsonl:2: expected a JSON object"),
])
def test_malformed_rows_name_file_and_line(tmp_path, line, expect):
    d = write_split(tmp_path / "v1", n_train=3, n_val=0)
    lines = (d / "train.jsonl").read_text().splitlines()
    lines[1] = line
    (d / "train.jsonl").write_text("\n".join(lines) + "\n")
    import training.data as data
    with pytest.raises(DataError, match=expect.replace("[", r"\[")):
        data.load_split(d)


def test_loss_only_on_assistant_tokens_and_eos_is_trained(tok):
    sample = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."},
                           {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Again?"},
                           {"role": "assistant", "content": "Hello again."}]}
    t = tokenise_sample(tok, sample)
    trained = tok.decode([x for x in t.labels if x != -100])
    assert trained == "Hello!<|im_end|>\nHello again.<|im_end|>\n"
    prompt_ids = [i for i, x in zip(t.input_ids, t.labels) if x == -100]
    assert "Say hello." in tok.decode(prompt_ids) and "Be brief." in tok.decode(prompt_ids)
    assert "<|im_start|>assistant" in tok.decode(prompt_ids)  # the template's header is not trained
    assert all(turn.count(tok.eos_token_id) == 1 for turn in t.turn_ends)
    full = tokenise_sample(tok, sample, assistant_only=False)
    assert full.labels == full.input_ids


def test_text_samples_train_every_token_and_end_with_eos(tok):
    t = tokenise_sample(tok, {"text": "The sky is blue."})
    assert t.labels == t.input_ids and t.input_ids[-1] == tok.eos_token_id


def test_chatml_fallback_for_tokenizer_without_template(tok):
    from transformers import PreTrainedTokenizerFast

    bare = PreTrainedTokenizerFast(tokenizer_object=tok.backend_tokenizer, eos_token="<|endoftext|>")
    assert not bare.chat_template
    assert ensure_chat_template(bare)
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    # the vocabulary has <|im_end|>, so ChatML closes turns with it
    assert bare.apply_chat_template(msgs, tokenize=False) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n"
    assert not ensure_chat_template(bare)


def test_packing_does_not_attend_across_samples(tok):
    """Two samples packed padding-free (as TRL's bfd packing feeds them) give the same logits as alone."""
    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from training.config import TinyShape
    from training.tiny import build_model

    model = build_model(tok, TinyShape(), seed=0).eval()
    # transformers builds the per-sample mask from position_ids only without a KV cache: the recipe
    # sets use_cache=False; with the cache on, the packed samples DO attend to each other.
    model.config.use_cache = False
    a = tokenise_sample(tok, {"messages": [{"role": "user", "content": "What is ice?"}, {"role": "assistant", "content": "Ice is frozen water."}]})
    b = tokenise_sample(tok, {"messages": [{"role": "user", "content": "Say hello."}, {"role": "assistant", "content": "Hello!"}]})
    collate = DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id, padding_free=True)
    packed = collate([{"input_ids": a.input_ids + b.input_ids, "labels": a.labels + b.labels,
                       "seq_lengths": [len(a.input_ids), len(b.input_ids)]}])
    assert packed["position_ids"][0, len(a.input_ids)] == 0  # positions restart at the second sample
    with torch.no_grad():
        together = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"]).logits[0]
        alone_b = model(input_ids=torch.tensor([b.input_ids])).logits[0]
        alone_a = model(input_ids=torch.tensor([a.input_ids])).logits[0]
    torch.testing.assert_close(together[len(a.input_ids):], alone_b, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(together[: len(a.input_ids)], alone_a, atol=1e-5, rtol=1e-4)
    # and the packed loss equals the token-weighted loss of the two samples alone
    with torch.no_grad():
        packed_loss = model(**{k: v for k, v in packed.items() if k in ("input_ids", "position_ids", "labels")}).loss
        la = model(input_ids=torch.tensor([a.input_ids]), labels=torch.tensor([a.labels])).loss
        lb = model(input_ids=torch.tensor([b.input_ids]), labels=torch.tensor([b.labels])).loss
    na = sum(x != -100 for x in a.labels[1:])
    nb = sum(x != -100 for x in b.labels[1:])
    torch.testing.assert_close(packed_loss, (la * na + lb * nb) / (na + nb), atol=1e-5, rtol=1e-4)
