"""Review as a user lives it: approve, reject, edit, undo, and the audit log that records each."""
from __future__ import annotations

import json

import pytest

from curation import browse, review, store, undo
from curation.errors import NotFound, StudioError
from curation.samples import Message, Sample, chat


def _statuses(ws, ids):
    rows = dict(ws.con.execute("SELECT id, status FROM samples WHERE id = ANY(?)", [ids]).fetchall())
    return [rows[i] for i in ids]


@pytest.fixture
def ids(ws):
    with ws.transaction():
        return store.insert_samples(ws.con, [chat(f"question {i}", f"answer {i}") for i in range(5)])


def test_approve_three_reject_one_undo_one(ws, ids):
    a = review.approve(ws, ids[:3], reason="looks right")
    r = review.reject(ws, [ids[3]], reason="wrong answer")
    assert _statuses(ws, ids) == ["approved", "approved", "approved", "rejected", "pending"]
    assert undo.undo(ws) == [r]
    assert _statuses(ws, ids) == ["approved", "approved", "approved", "pending", "pending"]
    ops = review.history(ws.con)
    assert [o.kind for o in ops] == ["undo", "status", "status"]
    assert ops[0].details["undid"] == [r] and ops[1].undone_by == ops[0].id and ops[2].undone_by is None
    assert ops[2].reason == "looks right" and ops[2].sample_count == 3
    rows = ws.con.execute("SELECT sample_id, old_status, new_status FROM op_samples WHERE op_id = ? ORDER BY 1", [a]).fetchall()
    assert rows == [(i, "pending", "approved") for i in ids[:3]]
    # the next undo skips the undone operation and the undo itself
    assert undo.undo(ws) == [a]
    assert _statuses(ws, ids) == ["pending"] * 5
    assert undo.undo(ws) == []


def test_status_change_records_only_changed_samples_and_checks_ids(ws, ids):
    review.approve(ws, ids[:2])
    op = review.approve(ws, ids[:4])
    assert ws.con.execute("SELECT count(*) FROM op_samples WHERE op_id = ?", [op]).fetchone()[0] == 2
    undo.undo(ws)
    assert _statuses(ws, ids[:4]) == ["approved", "approved", "pending", "pending"]
    last = ws.last_operation_id()
    with pytest.raises(NotFound, match="no sample with id 998, 999"):
        review.reject(ws, [ids[0], 999, 998])
    assert ws.last_operation_id() == last and _statuses(ws, ids[:1]) == ["approved"]
    with pytest.raises(StudioError, match="unknown status"):
        review.set_status(ws, ids, "maybe")


def test_edit_keeps_every_version_and_undo_restores_it(ws, ids):
    sid = ids[0]
    before = browse.get_sample(ws.con, sid)
    e1 = review.edit(ws, sid, messages=[{"role": "user", "content": "解释快速排序"},
                                         {"role": "assistant", "content": "快速排序是一种分治的排序算法。"}], reason="translate")
    e2 = review.edit(ws, sid, system="回答要简洁。")
    d = browse.get_sample(ws.con, sid)
    assert d.version == 3 and d.system == "回答要简洁。" and d.instruction == "解释快速排序" and d.lang == "zh"
    assert [v.version for v in d.versions] == [1, 2]
    assert d.versions[0].messages == before.messages and d.versions[1].system is None
    assert d.versions[1].op_id == e2 and d.content_hash != before.content_hash
    assert review.edit(ws, sid, system="回答要简洁。") is None  # unchanged: no operation
    assert undo.undo(ws) == [e2]
    d = browse.get_sample(ws.con, sid)
    assert d.version == 2 and d.system is None and [v.version for v in d.versions] == [1]
    assert undo.undo(ws) == [e1]
    d = browse.get_sample(ws.con, sid)
    assert (d.version, d.messages, d.instruction, d.lang, d.content_hash) == (
        1, before.messages, "question 0", "en", before.content_hash)
    assert d.versions == ()


def test_invalid_edit_names_the_field_and_changes_nothing(ws, ids):
    with pytest.raises(StudioError, match=r"messages\[1\].role: expected 'assistant'"):
        review.edit(ws, ids[0], messages=[{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
    with pytest.raises(StudioError, match="conversation must end with an assistant turn"):
        review.edit(ws, ids[0], messages=[{"role": "user", "content": "a"}])
    assert browse.get_sample(ws.con, ids[0]).version == 1 and ws.last_operation_id() is None


def test_edit_raw_text_and_multi_turn(ws):
    with ws.transaction():
        t, c = store.insert_samples(ws.con, [Sample(kind="text", text="old text"),
                                             Sample(kind="chat", messages=(Message("user", "a"), Message("assistant", "b")))])
    review.edit(ws, t, text="new text")
    review.edit(ws, c, messages=[Message("user", "a"), Message("assistant", "b"), Message("user", "c"), Message("assistant", "d")])
    assert browse.get_sample(ws.con, t).text == "new text"
    d = browse.get_sample(ws.con, c)
    assert d.instruction == "a" and d.answer == "d" and len(d.messages) == 4


def test_undo_import_deletes_its_samples(ws, ids):
    with ws.transaction():
        op = ws.record_operation("import", details={"path": "x.json"})
        ws.con.execute("INSERT INTO imports (id, path, file_sha256, format, rows, op_id) VALUES (1, 'x.json', 'abc', 'alpaca', 2, ?)", [op])
        new = store.insert_samples(ws.con, [chat("x", "y"), chat("z", "w")], import_id=1)
        ws.con.execute("INSERT INTO quality_flags (sample_id, rule_id) VALUES (?, 'too_short')", [new[0]])
    assert undo.undo(ws) == [op]
    assert browse.count(ws.con, browse.Filter()) == 5
    assert ws.con.execute("SELECT count(*) FROM imports").fetchone()[0] == 0
    assert ws.con.execute("SELECT count(*) FROM quality_flags").fetchone()[0] == 0


def test_an_operation_of_a_kind_without_undo_stops_undo_before_anything_changes(ws, ids):
    review.approve(ws, ids[:1])
    with ws.transaction():
        stuck = ws.record_operation("mystery", details={"undo_handler": "curation.review:approve"})
    with pytest.raises(StudioError, match=f"operation {stuck} \\(mystery\\) cannot be undone"):
        undo.undo(ws, 2)
    assert _statuses(ws, ids[:1]) == ["approved"]
    assert [o.kind for o in review.history(ws.con, limit=1)] == ["mystery"]


def test_history_lists_newest_first(ws, ids):
    review.approve(ws, ids[:1])
    review.reject(ws, ids[1:2])
    hist = review.history(ws.con, limit=1)
    assert len(hist) == 1 and hist[0].details["status"] == "rejected"
    assert json.loads(json.dumps(hist[0].as_dict()))["kind"] == "status"
