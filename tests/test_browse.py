"""The review list's queries: pages by keyset both ways, filters, count, rank, jumps, detail, stats."""
from __future__ import annotations

import pytest

from curation import browse, store
from curation.browse import Filter
from curation.errors import NotFound
from curation.samples import Message, Sample, chat


def _fill(ws, n=250):
    samples = []
    for i in range(n):
        if i % 10 == 0:
            samples.append(chat(f"请解释快速排序 {i}", f"快速排序是分治算法 {i}", source_file="zh.json", source_row=i))
        else:
            samples.append(chat(f"Question {i}\nsecond line", f"Answer {i} with 50% Off", source_file="en.json", source_row=i))
    samples.append(Sample(kind="text", text="Raw PRETRAIN text\nhere", source_file="raw.txt"))
    with ws.transaction():
        return store.insert_samples(ws.con, samples)


def test_keyset_pages_walk_forward_and_back(ws):
    ids = _fill(ws)
    first = browse.page(ws.con, Filter(), limit=100)
    assert [r.id for r in first] == ids[:100]
    second = browse.page(ws.con, Filter(), after_id=first[-1].id, limit=100)
    assert [r.id for r in second] == ids[100:200]
    back = browse.page(ws.con, Filter(), before_id=second[0].id, limit=100)
    assert [r.id for r in back] == ids[:100]
    last = browse.page(ws.con, Filter(), after_id=ids[-5], limit=100)
    assert [r.id for r in last] == ids[-4:]
    assert browse.page_at(ws.con, Filter(), 150, limit=10) == browse.page(ws.con, Filter(), after_id=ids[149], limit=10)


def test_rows_are_single_line_previews(ws):
    ids = _fill(ws, 3)
    rows = browse.page(ws.con, Filter())
    assert rows[1].instruction == "Question 1 second line"
    assert rows[1].answer == "Answer 1 with 50% Off"
    assert rows[-1].kind == "text" and rows[-1].instruction == "Raw PRETRAIN text here" and rows[-1].answer == ""
    long = chat("x" * 5000, "y\n" * 3000)
    with ws.transaction():
        (lid,) = store.insert_samples(ws.con, [long])
    row = browse.page(ws.con, Filter(), after_id=lid - 1, limit=1)[0]
    assert len(row.instruction) == browse.PREVIEW_CHARS and "\n" not in row.answer
    assert ids


def test_filters_count_and_rank(ws):
    ids = _fill(ws)
    con = ws.con
    assert browse.count(con, Filter()) == 251
    assert browse.count(con, Filter(lang="zh")) == 25
    assert browse.count(con, Filter(source="raw.txt")) == 1
    # search is case-insensitive, literal (% is not a wildcard) and covers answer and raw text
    assert browse.count(con, Filter(search="50% off")) == 225
    assert browse.count(con, Filter(search="5_% off")) == 0
    assert browse.count(con, Filter(search="pretrain")) == 1
    assert browse.count(con, Filter(search="分治")) == 25
    con.execute("UPDATE samples SET status = 'approved', judge_score = id % 5 WHERE id % 2 = 0")
    assert browse.count(con, Filter(status="approved", lang="zh")) == sum(1 for i in ids[::10] if i % 2 == 0)
    assert browse.count(con, Filter(min_score=3)) == sum(1 for i in ids if i % 2 == 0 and i % 5 >= 3)
    assert browse.count(con, Filter(min_score=1, max_score=2)) == sum(1 for i in ids if i % 2 == 0 and 1 <= i % 5 <= 2)
    flt = Filter(status="approved")
    approved = [i for i in ids if i % 2 == 0]
    assert browse.rank(con, flt, approved[7]) == 7
    assert [r.id for r in browse.page_at(con, flt, 7, limit=3)] == approved[7:10]
    assert browse.ids(con, Filter(lang="zh")) == ids[:250:10]
    with pytest.raises(Exception, match="unknown status"):
        browse.count(con, Filter(status="maybe"))


def test_flag_cluster_and_duplicate_filters(ws):
    ids = _fill(ws, 20)
    con = ws.con
    con.execute("INSERT INTO quality_flags VALUES (?, 'too_short', 3, 5, 'answer has 3 chars', NULL), "
                "(?, 'too_short', 2, 5, NULL, NULL), (?, 'lang_mismatch', NULL, NULL, NULL, NULL)",
                [ids[1], ids[2], ids[2]])
    con.execute("INSERT INTO dup_clusters VALUES (7, 'near', 'sample', ?, 'policy', 3, NULL, FALSE)", [ids[3]])
    con.execute("INSERT INTO dup_members VALUES (7, ?, 1.0), (7, ?, 0.9), (7, ?, 0.85)", [ids[3], ids[4], ids[5]])
    con.execute("UPDATE samples SET cluster_id = 7 WHERE id = ANY(?)", [ids[3:6]])
    con.execute("UPDATE samples SET duplicate_of = ? WHERE id = ANY(?)", [ids[3], ids[4:6]])
    assert browse.ids(con, Filter(flag="too_short")) == ids[1:3]
    assert browse.ids(con, Filter(flag="*")) == ids[1:3]
    assert browse.ids(con, Filter(cluster_id=7)) == ids[3:6]
    assert browse.ids(con, Filter(duplicates="only")) == ids[4:6]
    assert browse.count(con, Filter(duplicates="exclude")) == 21 - 2
    row = {r.id: r for r in browse.page(con, Filter())}
    assert row[ids[2]].flags == ("lang_mismatch", "too_short")
    assert row[ids[4]].cluster_id == 7 and row[ids[4]].duplicate_of == ids[3]

    d = browse.get_sample(con, ids[4])
    assert d.cluster is not None and d.cluster.keeper_id == ids[3]
    assert [m for m, _ in d.cluster.members] == ids[3:6]
    assert browse.get_sample(con, ids[1]).flags[0].detail == "answer has 3 chars"

    st = browse.stats(con)
    assert st["total"] == 21
    assert st["flags"]["too_short"]["samples"] == 2
    assert st["flagged_samples"] == 2
    assert st["clusters"] == {"count": 1, "unresolved": 1, "members": 3, "duplicates_marked": 2}
    assert st["by_status"] == {"pending": 21, "approved": 0, "rejected": 0}
    assert st["by_source"]["en.json"] == 18
    assert st["exportable"]["approved+pending"] == 19


def test_get_sample_detail_and_missing(ws):
    with ws.transaction():
        (sid,) = store.insert_samples(ws.con, [Sample(
            kind="chat", system="Be brief.",
            messages=(Message("user", "hi"), Message("assistant", "hello"), Message("user", "again"), Message("assistant", "yes")),
            source_file="a.json", source_row=3, source_id="a-3")])
    d = browse.get_sample(ws.con, sid)
    assert d.system == "Be brief." and len(d.messages) == 4 and d.messages[2] == {"role": "user", "content": "again"}
    assert (d.source_file, d.source_row, d.source_id, d.version, d.status) == ("a.json", 3, "a-3", 1, "pending")
    assert d.versions == () and d.cluster is None
    with pytest.raises(NotFound, match="no sample with id 999"):
        browse.get_sample(ws.con, 999)


def test_sparse_matches_page_past_the_id_window(ws):
    # matches 700 ids apart: the first try (a window of ids next to the cursor) holds too few,
    # the page must still be complete and in order, both ways.
    with ws.transaction():
        ids = store.insert_samples(ws.con, [chat(f"q{i}", f"a{i}") for i in range(3000)])
    sparse = ids[::700]
    ws.con.execute("UPDATE samples SET status = 'approved' WHERE id = ANY(?)", [sparse])
    flt = Filter(status="approved")
    assert [r.id for r in browse.page(ws.con, flt, limit=3)] == sparse[:3]
    assert [r.id for r in browse.page(ws.con, flt, after_id=sparse[0], limit=3)] == sparse[1:4]
    assert [r.id for r in browse.page(ws.con, flt, before_id=sparse[-1], limit=3)] == sparse[-4:-1]
    assert [r.id for r in browse.page(ws.con, Filter(), before_id=ids[2000], limit=5)] == ids[1995:2000]
    assert browse.page(ws.con, flt, after_id=sparse[-1]) == []


def test_search_text_is_kept_current_and_null_rows_still_match(ws):
    from curation import review

    with ws.transaction():
        a, b = store.insert_samples(ws.con, [chat("Straße İstanbul", "x"), chat("other", "Answer")])
    assert browse.ids(ws.con, Filter(search="STRASSE")) == []
    assert browse.ids(ws.con, Filter(search="straße")) == [a]
    assert browse.ids(ws.con, Filter(search="İSTANBUL")) == [a]
    ws.con.execute("UPDATE samples SET search_text = NULL WHERE id = ?", [b])  # written by some other path
    assert browse.ids(ws.con, Filter(search="answer")) == [b]
    review.edit(ws, a, messages=[{"role": "user", "content": "new words"}, {"role": "assistant", "content": "y"}])
    assert browse.ids(ws.con, Filter(search="straße")) == []
    assert browse.ids(ws.con, Filter(search="NEW WORDS")) == [a]
