"""Every format both ways: a file imported with `import_paths` and exported in the same format
gives back the same records, and a detour through another format changes nothing."""
from __future__ import annotations

import json

import pytest

from curation import browse, export, review, undo
from curation.importers import import_paths

RECORDS = {
    "alpaca": [
        {"instruction": "解释快速排序", "input": "", "output": "快速排序是一种分治算法。"},
        {"instruction": "Translate to French", "input": "", "output": "Bonjour", "system": "You translate."},
        {"instruction": "And now?", "input": "", "output": "Second answer", "history": [["First question", "First answer"]]},
    ],
    "sharegpt": [
        {"conversations": [{"from": "human", "value": "你好"}, {"from": "gpt", "value": "你好！有什么可以帮你？"}]},
        {"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "u1"},
                           {"from": "gpt", "value": "a1"}, {"from": "human", "value": "u2"}, {"from": "gpt", "value": "a2"}]},
    ],
    "messages": [
        {"messages": [{"role": "user", "content": "line one\nline two"}, {"role": "assistant", "content": "ok\ttab"}]},
        {"messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
    ],
}


def _write(path, recs):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs), encoding="utf-8")
    return path


def _read(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _import_all(ws, path, fmt):
    import_paths(ws, [path], format=fmt)
    review.approve(ws, browse.ids(ws.con, browse.Filter(status="pending")))


@pytest.mark.parametrize("fmt", sorted(RECORDS))
def test_import_then_export_same_format_gives_equal_records(ws, tmp_path, fmt):
    src = _write(tmp_path / f"in-{fmt}.jsonl", RECORDS[fmt])
    _import_all(ws, src, fmt)
    m = export.export_split(ws, "rt", val=0, format=fmt)
    assert _read(m.path / "train.jsonl") == RECORDS[fmt]
    assert [r["source_row"] for r in m.rows("train")] == sorted(r["source_row"] for r in m.rows("train"))


@pytest.mark.parametrize("via", ["messages", "sharegpt"])
def test_detour_through_another_format_changes_nothing(tmp_path, via):
    from curation.workspace import open_workspace

    src = _write(tmp_path / "alpaca.jsonl", RECORDS["alpaca"])
    with open_workspace(tmp_path / "w1") as w1:
        _import_all(w1, src, "alpaca")
        mid = export.export_split(w1, "mid", val=0, format=via).path / "train.jsonl"
    with open_workspace(tmp_path / "w2") as w2:
        _import_all(w2, mid, via)
        back = export.export_split(w2, "back", val=0, format="alpaca").path / "train.jsonl"
        assert _read(back) == RECORDS["alpaca"]


def test_undo_a_real_import(ws, tmp_path):
    import_paths(ws, [_write(tmp_path / "a.jsonl", RECORDS["alpaca"])], format="alpaca")
    import_paths(ws, [_write(tmp_path / "b.jsonl", RECORDS["messages"])], format="messages")
    assert browse.count(ws.con, browse.Filter()) == 5
    undone = undo.undo(ws)
    assert len(undone) == 1
    st = browse.stats(ws.con)
    assert st["total"] == 3 and list(st["by_source"]) == ["a.jsonl"] and len(st["imports"]) == 1
    # the same file can be imported again after its import was undone
    import_paths(ws, [tmp_path / "b.jsonl"], format="messages")
    assert browse.count(ws.con, browse.Filter()) == 5
