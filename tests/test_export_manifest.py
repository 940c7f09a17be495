"""The split manifest is one typed model (curation.manifest.Manifest): docs/contracts.md's example
has exactly its fields, an export writes it and reads it back, the row lineage lives in
lineage.parquet beside it (manifest.json stays small), and the JSON lines DuckDB writes equal
json.dumps(format_row(...)) byte for byte."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from curation import export, review, store
from curation.errors import StudioError
from curation.manifest import LINEAGE_COLUMNS, FileEntry, Lineage, Manifest, Settings
from curation.samples import Message, Sample, chat

CONTRACTS = Path(__file__).resolve().parents[1] / "docs" / "contracts.md"


def _doc_example() -> dict:
    text = CONTRACTS.read_text(encoding="utf-8")
    block = re.search(r"`manifest\.json` \(keys sorted.*?```json\n(.*?)```", text, re.S)
    assert block, "docs/contracts.md lost its manifest.json example"
    return json.loads(block.group(1).replace("...", "0" * 64).replace("[0000000000000000000000000000000000000000000000000000000000000000]", "[]"))


def test_contracts_md_example_is_the_model():
    example = _doc_example()
    optional = {"skipped"}  # only with --skip-invalid
    assert set(example) == set(Manifest.model_fields) - optional
    assert set(example["settings"]) == set(Settings.model_fields) - {"skip_invalid"}
    assert set(example["lineage"]) == set(Lineage.model_fields)
    for entry in example["files"].values():
        assert set(entry) == set(FileEntry.model_fields)
    assert Manifest.model_validate(example).schema_version == example["schema_version"]
    doc = CONTRACTS.read_text(encoding="utf-8")
    assert all(f"`{c}`" in doc for c in LINEAGE_COLUMNS)  # the sidecar's columns are named there


CONTENTS = ["plain question", "中文问题，带标点。", 'quote " and back\\slash\nnewline\ttab', "ctrl \x1b[0m \x0b end",
            "literal \\u00e9 text", "emoji 😀"]


def _workspace_rows(ws) -> list[int]:
    samples = [chat(c, f"answer to {c}", system="be brief" if i % 2 else None) for i, c in enumerate(CONTENTS)]
    samples.append(Sample(kind="chat", messages=(Message("user", "a"), Message("assistant", "b"),
                                                Message("user", "c"), Message("assistant", "d"))))
    samples.append(Sample(kind="text", text="raw text \x1b row"))
    with ws.transaction():
        ids = store.insert_samples(ws.con, samples)
    review.approve(ws, ids)
    return ids


@pytest.mark.parametrize("fmt", ["messages", "openai", "alpaca", "sharegpt"])
def test_sql_lines_equal_format_row_and_the_manifest_reads_back(ws, monkeypatch, fmt):
    ids = _workspace_rows(ws)
    fast = export.export_split(ws, "fast", val=0.25, format=fmt)
    monkeypatch.setattr(export, "_plain_sql", lambda _fmt: "FALSE")  # every row through format_row
    slow = export.export_split(ws, "slow", val=0.25, format=fmt)
    for part in ("train", "val", "train.text", "val.text"):
        assert (fast.path / f"{part}.jsonl").read_bytes() == (slow.path / f"{part}.jsonl").read_bytes(), part
    assert fast.files == slow.files and fast.lineage == slow.lineage
    assert sorted(fast.sample_ids("train") + fast.sample_ids("val")) == ids
    back = Manifest.read(fast.path)
    assert back == fast and back.rows("val") == fast.rows("val")
    assert "rows" not in json.loads((fast.path / "manifest.json").read_text(encoding="utf-8"))


def test_manifest_stays_small_and_an_old_schema_is_named(ws, tmp_path):
    with ws.transaction():
        ids = store.insert_samples(ws.con, [chat(f"q{i}", f"a{i}") for i in range(3000)])
    review.approve(ws, ids)
    m = export.export_split(ws, "big", val=0.1)
    assert (m.path / "manifest.json").stat().st_size < 4000
    assert len(m.rows("train")) == 2700 and m.rows("train")[0]["sample_id"] == m.sample_ids("train")[0]
    old = tmp_path / "old"
    old.mkdir()
    (old / "manifest.json").write_text(json.dumps({"schema_version": 2, "rows": {}}), encoding="utf-8")
    with pytest.raises(StudioError, match="schema_version 2; .* export the split again"):
        Manifest.read(old)
