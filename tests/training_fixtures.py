"""Tiny splits for training tests, importable by any test module (`from tests.training_fixtures import ...`).

`write_split(dir)` writes a split directory exactly as docs/contracts.md says (manifest.json with
format, counts, files with rows and sha256, rows with source ids; train.jsonl; val.jsonl), so the
trainer, the planner and the studio read it as they would a real export. The samples are short
English and Chinese question/answer pairs that a tiny model can fit in a few dozen steps.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

QA = [
    ("What colour is the sky?", "The sky is blue."),
    ("What is two plus two?", "Two plus two is four."),
    ("Name a fruit.", "An apple is a fruit."),
    ("天空是什么颜色?", "天空是蓝色的。"),
    ("Say hello.", "Hello!"),
    ("What do cats say?", "Cats say meow."),
    ("What is the capital of France?", "Paris is the capital of France."),
    ("一加一等于几?", "一加一等于二。"),
    ("Count to three.", "One, two, three."),
    ("What is ice?", "Ice is frozen water."),
    ("Which animal barks?", "A dog barks."),
    ("What is the opposite of hot?", "The opposite of hot is cold."),
]


def messages_row(q: str, a: str, system: str | None = None) -> dict[str, Any]:
    msgs = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return {"messages": msgs}


def alpaca_row(q: str, a: str) -> dict[str, Any]:
    return {"instruction": q, "input": "", "output": a}


def write_split(path: str | Path, *, n_train: int = 12, n_val: int = 4, fmt: str = "messages",
                rows: list[dict[str, Any]] | None = None, name: str | None = None) -> Path:
    """Write a split directory per docs/contracts.md and return it."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    make = alpaca_row if fmt == "alpaca" else messages_row
    if rows is None:
        pool = [make(q, a) for q, a in QA]
        rows = [pool[i % len(pool)] for i in range(n_train + n_val)]
    train, val = rows[: len(rows) - n_val] if n_val else rows, rows[len(rows) - n_val:] if n_val else []
    files = {}
    for split_name, data in (("train", train), ("val", val)):
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in data)
        (path / f"{split_name}.jsonl").write_text(text, encoding="utf-8")
        files[split_name] = {"path": f"{split_name}.jsonl", "rows": len(data),
                             "sha256": hashlib.sha256(text.encode()).hexdigest()}
    manifest = {
        "name": name or path.name, "format": fmt, "created_by": "tests",
        "settings": {"val": n_val / max(1, len(rows)), "seed": 42, "format": fmt, "include": "approved"},
        "last_operation_id": 1, "counts": {"train": len(train), "val": len(val)}, "files": files,
        "rows": {"train": [{"sample_id": i + 1, "source_id": f"t-{i}", "source_file": "fixture.json", "source_row": i}
                           for i in range(len(train))],
                 "val": [{"sample_id": len(train) + i + 1, "source_id": f"v-{i}", "source_file": "fixture.json",
                          "source_row": len(train) + i} for i in range(len(val))]},
    }
    (path / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, sort_keys=True, indent=1),
                                        encoding="utf-8")
    return path


def tiny_config(split: str | Path, **overrides: Any):
    """A tiny-demo TrainConfig on `split`, small enough to train in seconds; dotted-key overrides."""
    from training.config import load_config

    base = {"data.split": str(split), "data.max_length": 128, "train.logging_steps": 1, "train.max_steps": 20,
            "train.eval_steps": 10, "train.save_steps": 10, "train.gradient_checkpointing": False}
    base.update(overrides)
    return load_config(preset="tiny-demo", overrides=base)


@pytest.fixture
def tiny_split(tmp_path) -> Path:
    return write_split(tmp_path / "splits" / "v1")
