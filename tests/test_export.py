"""Split export: the contract with training. Same workspace and arguments give the same bytes;
rejected samples and duplicates never reach a split; the manifest names every row's sample."""
from __future__ import annotations

import hashlib
import json

import pytest

from curation import export, review, store
from curation.errors import StudioError
from curation.samples import Message, Sample, chat


def _lines(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def ids(ws):
    samples = [chat(f"问题 {i}", f"回答 {i}", source_file="zh.json", source_row=i, source_id=f"zh-{i}") for i in range(40)]
    with ws.transaction():
        out = store.insert_samples(ws.con, samples)
    review.approve(ws, out[:30])
    review.reject(ws, out[30:33])
    ws.con.execute("UPDATE samples SET duplicate_of = ? WHERE id = ANY(?)", [out[0], out[1:3]])
    return out


def test_split_holds_exactly_the_approved_non_duplicates(ws, ids):
    m = export.export_split(ws, "v1", val=0.1, seed=42)
    expected = ids[0:1] + ids[3:30]
    assert m.counts == {"train": 25, "val": 3}
    got = m.sample_ids("train") + m.sample_ids("val")
    assert sorted(got) == expected
    assert m.sample_ids("train") == sorted(m.sample_ids("train"))
    # the manifest's rows are the file's rows, line by line
    for part in ("train", "val"):
        recs = _lines(m.path / f"{part}.jsonl")
        assert [r["messages"][0]["content"] for r in recs] == [f"问题 {i - ids[0]}" for i in m.sample_ids(part)]
        meta = m.rows(part)[0]  # the lineage sidecar (schema 3)
        assert meta["source_id"] == f"zh-{meta['sample_id'] - ids[0]}" and meta["source_file"] == "zh.json"
        digest = hashlib.sha256((m.path / f"{part}.jsonl").read_bytes()).hexdigest()
        assert m.data["files"][part] == {"path": f"{part}.jsonl", "rows": len(recs), "sha256": digest,
                                         "kind": "chat", "part": part}  # schema 2 names kind and part
    on_disk = json.loads((m.path / "manifest.json").read_text(encoding="utf-8"))
    assert on_disk == m.data
    assert on_disk["settings"] == {"val": 0.1, "seed": 42, "format": "messages", "include": "approved", "target": "jsonl"}
    assert on_disk["last_operation_id"] == ws.last_operation_id()
    assert list(on_disk) == sorted(on_disk)

    both = export.export_split(ws, "all", val=0, include="approved+pending")
    assert both.counts == {"train": 35, "val": 0} and (both.path / "val.jsonl").read_bytes() == b""
    assert not set(both.sample_ids("train")) & set(ids[1:3] + ids[30:33])


def test_same_workspace_and_arguments_give_identical_bytes(ws, ids):
    a = export.export_split(ws, "a", val=0.2, seed=7)
    b = export.export_split(ws, "b", val=0.2, seed=7)
    for f in ("train.jsonl", "val.jsonl"):
        assert (a.path / f).read_bytes() == (b.path / f).read_bytes()
    strip = lambda p: (p / "manifest.json").read_text().replace('"name": "a"', "").replace('"name": "b"', "")  # noqa: E731
    assert strip(a.path) == strip(b.path)
    c = export.export_split(ws, "c", val=0.2, seed=8)
    assert c.sample_ids("val") != a.sample_ids("val") and c.counts == a.counts
    assert export.preview_counts(ws.con, 0.2, 7, "approved") == {
        "rows": 28, "train": 22, "val": 6, "seed": 7, "include": "approved",
        "excluded": {"rejected": 3, "duplicates": 2, "pending": 7}}


def test_existing_split_needs_force(ws, ids):
    export.export_split(ws, "v1")
    with pytest.raises(StudioError, match="already exists.*--force.*another name"):
        export.export_split(ws, "v1")
    review.reject(ws, ids[3:10])
    m = export.export_split(ws, "v1", force=True)
    assert not set(m.sample_ids("train") + m.sample_ids("val")) & set(ids[3:10])
    assert sorted(p.name for p in ws.splits_dir.iterdir()) == ["v1"]  # no temp folders left
    assert [s["name"] for s in export.list_splits(ws)] == ["v1"]


def test_bad_arguments_are_clear(ws, ids):
    with pytest.raises(StudioError, match="split name"):
        export.export_split(ws, "../escape")
    with pytest.raises(StudioError, match="validation fraction"):
        export.export_split(ws, "x", val=1.5)
    with pytest.raises(StudioError, match="unknown export format"):
        export.export_split(ws, "x", format="csv")
    review.set_status(ws, ids, "rejected")
    with pytest.raises(StudioError, match="no samples to export.*approve"):
        export.export_split(ws, "x")
    assert list(ws.splits_dir.iterdir()) == []


def test_every_format(ws):
    multi = Sample(kind="chat", system="Be brief.", messages=(
        Message("user", "u1"), Message("assistant", "a1"), Message("user", "u2"), Message("assistant", "a2")))
    with ws.transaction():
        ids = store.insert_samples(ws.con, [chat("q", "a"), multi, Sample(kind="text", text="raw text")])
    review.approve(ws, ids)
    paths = {f: export.export_split(ws, f, val=0, format=f).path for f in export.FORMATS}
    recs = {f: _lines(p / "train.jsonl") for f, p in paths.items()}
    assert recs["alpaca"] == [
        {"instruction": "q", "input": "", "output": "a"},
        {"instruction": "u2", "input": "", "output": "a2", "system": "Be brief.", "history": [["u1", "a1"]]}]
    assert recs["messages"][1] == {"messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "u1"}, {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "u2"}, {"role": "assistant", "content": "a2"}]}
    assert recs["sharegpt"][0] == {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
    assert recs["sharegpt"][1]["conversations"][0] == {"from": "system", "value": "Be brief."}
    assert recs["openai"] == recs["messages"]
    # raw text is {"text"} in every format, in its own file (issue 18: chat files hold chat rows only)
    assert {f: _lines(p / "train.text.jsonl") for f, p in paths.items()} == {f: [{"text": "raw text"}] for f in paths}
