"""The row formats are parsed twice on purpose: curation/importers (every shape people bring, with
problems mapped back to their own field names, ids and tags, a DuckDB fast path) and training/data.py
(a split's rows on a GPU box that has only `training`; it may not import curation). What must not
drift is what a row *means*: the same alpaca, ShareGPT, messages or text row gives the same turns on
both sides. This test holds them to that."""
from __future__ import annotations

import pytest

ROWS = [
    ("alpaca", {"instruction": "Translate", "input": "你好", "output": "Hello", "system": "Be brief.",
                "history": [["Hi", "Hello!"]]}),
    ("alpaca", {"instruction": "Name a colour", "input": "  ", "output": "Blue"}),
    ("sharegpt", {"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "Q1"},
                                    {"from": "gpt", "value": "A1"}, {"from": "human", "value": "Q2"},
                                    {"from": "gpt", "value": "A2"}]}),
    ("messages", {"messages": [{"role": "user", "content": "问题"}, {"role": "assistant", "content": "回答"}]}),
    ("text", {"text": "Plain text for continued pretraining."}),
]


def _curation(fmt: str, row: dict) -> dict:
    from curation.importers.core import ROW_FORMATS

    sample, problems = ROW_FORMATS[fmt].to_sample(row, "f.jsonl", 1)
    assert sample is not None and not problems, problems
    if sample.kind == "text":
        return {"text": sample.text}
    turns = [{"role": "system", "content": sample.system}] if sample.system else []
    return {"messages": turns + [{"role": m.role, "content": m.content} for m in sample.messages]}


@pytest.mark.parametrize("fmt,row", ROWS, ids=[f"{f}-{i}" for i, (f, _) in enumerate(ROWS)])
def test_a_row_means_the_same_turns_to_curation_and_to_training(fmt, row):
    from training.data import normalise_row

    assert _curation(fmt, row) == normalise_row(row, "f.jsonl:1")
