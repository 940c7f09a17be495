"""Dedup stories: import samples, find exact and near duplicates in Chinese, English and mixed
text, pick keepers by the policy, let a reviewer override, survive re-runs, check new imports
incrementally, undo, cancel. Everything runs on a real DuckDB workspace in tmp_path."""
from __future__ import annotations

import json

import numpy as np
import pytest

from curation import dedup, review, store, undo
from curation.dedup import DedupParams, similarity
from curation.dedup.lsh import band_widths, candidate_pairs
from curation.errors import Cancelled, NotFound, StudioError
from curation.jobs import Job
from curation.normalize import ROLE_MARKS, exact_key, marked_text, normalize
from curation.samples import chat
from curation.shingles import jaccard, shingle_hashes, shingle_set, shingles, signatures

ZH_Q = "请介绍一下快速排序算法的原理和时间复杂度。"
ZH_A = ("快速排序是一种分治算法，它先选择一个基准元素，然后把数组分成两部分，左边的元素都比基准小，右边的元素都比基准大，"
        "接着递归地排序这两部分。平均时间复杂度是O(n log n)，最坏情况下是O(n^2)，空间复杂度一般是O(log n)。")
EN_Q = "Explain how quicksort works and what its time complexity is."
EN_A = ("Quicksort is a divide and conquer algorithm. It picks a pivot element, partitions the array so that smaller "
        "elements go to the left and larger elements go to the right, and then recursively sorts both parts. The "
        "average running time is O(n log n), the worst case is O(n^2), and it sorts in place with little extra memory.")
MIX_Q = "用 Python 实现 binary search，并解释它的 time complexity。"
MIX_A = ("二分查找 binary search 要求数组已经排好序。每次比较中间元素 middle element，如果目标更小就在左半部分继续查找，"
         "否则在右半部分查找。每一步把搜索范围减半，所以 time complexity 是 O(log n)，空间复杂度是 O(1)。")

NEAR = {
    "zh": ((ZH_Q, ZH_A), (ZH_Q, ZH_A.replace("接着递归地排序", "然后递归地排序") + "希望对你有帮助！")),
    "en": ((EN_Q, EN_A), (EN_Q, EN_A.replace("little extra memory", "very little extra memory") + " Hope this helps!")),
    "mixed": ((MIX_Q, MIX_A), (MIX_Q.replace("，", ", "), MIX_A.replace("每次比较", "每一次比较"))),
}
OTHER = {
    "zh": "快速排序的原理很简单：随便挑一个数当基准，小的放前面大的放后面，再对两边重复同样的过程，直到每段只剩一个数为止。",
    "en": "Pick any element as the pivot. Move everything smaller before it and everything bigger after it. Repeat on both "
          "sides until each side has one element. On average it needs n log n comparisons.",
    "mixed": "Binary search 的思路：先看中间那个数 middle，目标比它小就去左边找，比它大就去右边找，直到找到或者范围为空。"
             "因为每次 search range 缩小一半，所以很快。",
}


def add(ws, *samples):
    with ws.transaction():
        return store.insert_samples(ws.con, list(samples))


def clusters(ws):
    return dedup.list_clusters(ws.con)


def member_ids(c):
    return sorted(m["sample_id"] for m in c["members"])


# -- normalisation and shingles ---------------------------------------------------------------------
def test_normalize_folds_width_case_whitespace_and_chinese_punctuation():
    assert normalize("Ｈｅｌｌｏ，　世界！  “你好”（测试）。") == normalize('hello, 世界! "你好"(测试).')
    assert normalize("A\u200bB\t C\n\nD") == "ab c d"
    assert normalize("你好， 请 介绍 Python") == "你好,请介绍python"
    assert exact_key(normalize("你好，世界。")) == exact_key(normalize("你好,世界."))
    assert exact_key(normalize("你好世界")) != exact_key(normalize("你好,世界"))


def test_shingles_split_cjk_runs_into_characters_and_other_runs_into_words():
    assert shingles(normalize("请把这段话 translate into English，谢谢！")) == [
        "请把这", "把这段", "这段话", "translate into english", "谢谢"]
    assert shingles("hello world again and again", 2) == ["hello world", "world again", "again and", "and again"]
    assert shingles("你好") == ["你好"]


@pytest.mark.parametrize("text", [ZH_A, EN_A, MIX_A, "a", "", "!!!", "emoji 😀 and 𠀀𠀁 ext-b",
                                  ROLE_MARKS["user"] + ZH_Q + "\n" + ROLE_MARKS["assistant"] + ZH_A,
                                  ROLE_MARKS["system"] + "be brief\n" + ROLE_MARKS["user"] + "hi\n" + ROLE_MARKS["assistant"]])
def test_bulk_shingle_hashes_match_the_reference_shingles(text):
    t = normalize(text)
    h, off = shingle_hashes([t, "x y", t])
    assert off[1] - off[0] == len(shingles(t))
    assert len(np.unique(h[off[0]:off[1]])) == len(set(shingles(t)))
    assert np.array_equal(h[off[0]:off[1]], h[off[2]:off[3]])


def test_signatures_equal_datasketch_minhash_bit_for_bit():
    from datasketch import MinHash

    texts = [normalize(t) for t in (ZH_A, EN_A, MIX_A, "short", "")]
    h, off = shingle_hashes(texts)
    sigs = signatures(h, off, 128, block=64)  # small blocks exercise the block loop
    for i in range(len(texts)):
        m = MinHash(num_perm=128, hashfunc=lambda x: x)
        m.update_batch([int(v) for v in h[off[i]:off[i + 1]]])
        assert np.array_equal(m.hashvalues, sigs[i])


def test_banding_finds_the_same_candidates_as_datasketch_minhashlsh():
    from datasketch import LeanMinHash, MinHashLSH

    rng = np.random.default_rng(0)
    base = [normalize(t) for t in (ZH_A, EN_A, MIX_A, OTHER["zh"], OTHER["en"])]
    texts = []
    for t in base:
        texts.append(t)
        for _ in range(3):  # variants: drop a few random characters
            cut = rng.integers(0, len(t) - 5, 2)
            texts.append(t[:cut[0]] + t[cut[0] + 2:])
    h, off = shingle_hashes(texts)
    sigs = signatures(h, off, 128)
    widths = band_widths(0.8, 128)
    assert len(set(widths)) == 2  # two widths side by side: one MinHashLSH for each part
    expected = set()
    start = 0
    for rows in sorted(set(widths), reverse=True):
        bands = widths.count(rows)
        cols = slice(start, start + bands * rows)
        start += bands * rows
        lsh = MinHashLSH(num_perm=bands * rows, params=(bands, rows))
        with lsh.insertion_session() as session:
            for i, s in enumerate(sigs):
                session.insert(i, LeanMinHash(seed=1, hashvalues=s[cols], scheme="affine32"))
        for i, s in enumerate(sigs):
            for j in lsh.query(LeanMinHash(seed=1, hashvalues=s[cols], scheme="affine32")):
                if i < j:
                    expected.add((i, j))
    a, b = candidate_pairs(sigs, 0.8, 128)
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    def comps(pairs):
        pa_, pb_ = zip(*pairs) if pairs else ((), ())
        g = coo_matrix((np.ones(len(pa_)), (pa_, pb_)), shape=(len(texts), len(texts)))
        return connected_components(g, directed=False)[1].tolist()

    # Every pair we emit shares a band (so MinHashLSH emits it too), and both give the same groups
    # (we emit star+chain pairs per bucket instead of all pairs).
    assert set(zip(a.tolist(), b.tolist())) <= expected
    assert comps(list(zip(a.tolist(), b.tolist()))) == comps(sorted(expected))
    assert len(expected) > 0
    # The band keys computed ahead (by the hashing workers, band-major) give the same pairs, also
    # among a subset of the rows.
    from curation.dedup.lsh import all_band_keys

    keys = all_band_keys(sigs, widths)
    assert keys.shape == (len(widths), len(texts))
    ahead = candidate_pairs(sigs, 0.8, 128, band_keys=keys)
    assert [x.tolist() for x in ahead] == [a.tolist(), b.tolist()]
    take = np.arange(0, len(texts), 2)
    assert [x.tolist() for x in candidate_pairs(sigs, 0.8, 128, take, keys)] == \
        [x.tolist() for x in candidate_pairs(sigs, 0.8, 128, take)]


# -- finding duplicates -------------------------------------------------------------------------
@pytest.mark.parametrize("lang", ["zh", "en", "mixed"])
def test_near_duplicates_are_found_and_hard_negatives_kept_apart(ws, lang):
    (q1, a1), (q2, a2) = NEAR[lang]
    ids = add(ws, chat(q1, a1, source_id="orig"), chat("something unrelated entirely", "完全无关的回答内容，和排序没有关系。"),
              chat(q2, a2, source_id="copy"), chat(q1, OTHER[lang], source_id="same-question-other-answer"))
    report = dedup.find_duplicates(ws, DedupParams())
    cs = clusters(ws)
    assert len(cs) == 1, cs
    c = cs[0]
    assert c["method"] == "near"
    assert member_ids(c) == [ids[0], ids[2]]
    sims = {m["sample_id"]: m["similarity"] for m in c["members"]}
    texts = [marked_text([{"role": "user", "content": q}, {"role": "assistant", "content": a}]) for q, a in ((q1, a1), (q2, a2))]
    exact = similarity.jaccard_chunk(texts, np.array([0]), np.array([1]), 3)[0]
    assert sims[c["keeper_id"]] == 1.0
    assert min(sims.values()) == pytest.approx(exact, abs=1e-4) and exact >= 0.8
    assert report.duplicates == 1
    dup = [i for i in (ids[0], ids[2]) if i != c["keeper_id"]][0]
    assert ws.con.execute("SELECT duplicate_of FROM samples WHERE id = ?", [dup]).fetchall()[0][0] == c["keeper_id"]
    assert ws.count() == 4  # nothing deleted


def test_exact_duplicates_across_fullwidth_punctuation_and_whitespace(ws):
    ids = add(ws, chat("你好，请介绍一下你自己。", "我是一个乐于助人的助手！"),
              chat("你好,请介绍一下你自己.", "我是一个乐于助人的助手!"),
              chat("  你好，  请介绍一下你自己。", "我是一个乐于助人的助手！\n"),
              chat("ＨＥＬＬＯ　world", "Hi   THERE"), chat("hello world", "hi there"))
    dedup.find_duplicates(ws, DedupParams())
    cs = sorted(clusters(ws), key=lambda c: c["keeper_id"])
    assert [member_ids(c) for c in cs] == [ids[:3], ids[3:]]
    assert all(c["method"] == "exact" for c in cs)
    assert all(m["similarity"] == 1.0 for c in cs for m in c["members"])


def test_fields_instruction_only_and_answer_only(ws):
    ids = add(ws, chat(EN_Q, "Answer one is about sorting things quickly."), chat(EN_Q, "完全不同的第二个回答。"),
              chat("Question A?", ZH_A), chat("Question B, different?", ZH_A))
    dedup.find_duplicates(ws, DedupParams(fields="instruction"))
    assert [member_ids(c) for c in clusters(ws)] == [ids[:2]]
    dedup.find_duplicates(ws, DedupParams(fields="answer"))
    assert [member_ids(c) for c in clusters(ws)] == [ids[2:]]
    assert clusters(ws)[0]["fields"] == "answer"


def test_bad_parameters_are_user_errors(ws):
    with pytest.raises(StudioError, match="threshold"):
        dedup.find_duplicates(ws, DedupParams(threshold=1.5))
    with pytest.raises(StudioError, match="fields"):
        dedup.find_duplicates(ws, DedupParams(fields="everything"))


# -- keeper policy ------------------------------------------------------------------------------
def test_keeper_policy_step_by_step(ws):
    # Three near duplicates; answers of increasing length (ids 1 < 2 < 3).
    a, b, c = add(ws, chat(EN_Q, EN_A), chat(EN_Q, EN_A + " Really."), chat(EN_Q, EN_A + " Really, truly."))

    def keeper():
        dedup.find_duplicates(ws, DedupParams())
        (cl,) = clusters(ws)
        assert member_ids(cl) == [a, b, c]
        return cl["keeper_id"], cl["keeper_chosen_by"]

    assert keeper() == (c, "policy")                      # 4. the longer answer
    ws.con.execute("UPDATE samples SET judge_score = 9 WHERE id = ?", [a])
    assert keeper() == (a, "policy")                      # 3b. higher judge score beats length
    ws.con.execute("INSERT INTO quality_flags (sample_id, rule_id, value, threshold) VALUES (?, 'mojibake', 1, 1)", [a])
    assert keeper() == (c, "policy")                      # 3a. fewer flags beats judge score
    review.approve(ws, [b])
    assert keeper() == (b, "policy")                      # 2. approved beats quality
    review.reject(ws, [c])
    assert keeper() == (b, "policy")
    dedup.set_keeper(ws, clusters(ws)[0]["cluster_id"], a)
    assert keeper() == (a, "reviewer")                    # 1. a reviewer's choice beats everything
    for s in (b, c):
        assert ws.con.execute("SELECT duplicate_of FROM samples WHERE id = ?", [s]).fetchall()[0][0] == a


def test_earlier_import_wins_a_tie(ws):
    ids = add(ws, chat("同一个问题？", "同一个回答。"), chat("同一个问题?", "同一个回答."))
    dedup.find_duplicates(ws, DedupParams())
    assert clusters(ws)[0]["keeper_id"] == ids[0]


def test_reviewer_choice_survives_rerun_and_undo_restores_each_step(ws):
    ids = add(ws, chat(ZH_Q, ZH_A), chat(*NEAR["zh"][1]))
    dedup.find_duplicates(ws, DedupParams())
    (c,) = clusters(ws)
    policy_keeper = c["keeper_id"]
    other = [i for i in ids if i != policy_keeper][0]
    dedup.set_keeper(ws, c["cluster_id"], other)
    (c2,) = clusters(ws)
    assert (c2["keeper_id"], c2["keeper_chosen_by"], c2["resolved"]) == (other, "reviewer", True)
    sims = {m["sample_id"]: m["similarity"] for m in c2["members"]}
    assert sims[other] == 1.0 and sims[policy_keeper] < 1.0
    dedup.find_duplicates(ws, DedupParams(threshold=0.75))  # a re-run with other settings keeps the choice
    (c3,) = clusters(ws)
    assert (c3["keeper_id"], c3["keeper_chosen_by"]) == (other, "reviewer")
    undo.undo(ws)  # the re-run
    assert clusters(ws) == [c2]
    undo.undo(ws)  # the keeper choice
    assert clusters(ws) == [c]
    assert ws.con.execute("SELECT duplicate_of FROM samples WHERE id = ?", [other]).fetchall()[0][0] == policy_keeper
    undo.undo(ws)  # the first run
    assert clusters(ws) == []
    assert ws.con.execute("SELECT count(*) FROM samples WHERE cluster_id IS NOT NULL OR duplicate_of IS NOT NULL").fetchall()[0][0] == 0


def test_set_keeper_errors(ws):
    ids = add(ws, chat("q", "same answer here"), chat("q", "same answer here"), chat("other", "thing"))
    dedup.find_duplicates(ws, DedupParams())
    cid = clusters(ws)[0]["cluster_id"]
    with pytest.raises(NotFound, match="no duplicate cluster 999"):
        dedup.set_keeper(ws, 999, ids[0])
    with pytest.raises(StudioError, match=f"sample {ids[2]} is not in cluster {cid}"):
        dedup.set_keeper(ws, cid, ids[2])


# -- incremental --------------------------------------------------------------------------------
def test_incremental_hashes_only_new_samples_and_joins_the_right_cluster(ws):
    first = add(ws, chat(ZH_Q, ZH_A), chat(*NEAR["zh"][1]), chat(EN_Q, EN_A), chat(MIX_Q, MIX_A))
    dedup.find_duplicates(ws, DedupParams())
    (zh_cluster,) = clusters(ws)
    stored = ws.con.execute("SELECT count(*) FROM minhash_signatures").fetchall()[0][0]
    assert stored == 4
    new = add(ws, chat(ZH_Q, ZH_A + "如有疑问，欢迎继续提问。"),           # joins the Chinese cluster
              chat(EN_Q, EN_A.replace("little extra", "hardly any extra")),  # pairs with an unclustered old sample
              chat("全新的问题，与其他样本无关。", "全新的回答，内容完全不同，也不会重复。"))
    report = dedup.check_incremental(ws)
    assert report.signatures_computed == 3 and report.signatures_reused == 4
    assert ws.con.execute("SELECT count(*) FROM minhash_signatures").fetchall()[0][0] == 7
    assert report.joined_existing == 1
    rows = dict((r[0], r[1:]) for r in ws.con.execute("SELECT id, cluster_id, duplicate_of FROM samples").fetchall())
    assert rows[new[0]] == (zh_cluster["cluster_id"], zh_cluster["keeper_id"])
    assert rows[new[2]] == (None, None)
    en_cluster = rows[new[1]][0]
    assert en_cluster is not None and rows[first[2]][0] == en_cluster
    by_id = {c["cluster_id"]: c for c in clusters(ws)}
    assert by_id[zh_cluster["cluster_id"]]["size"] == 3
    assert member_ids(by_id[en_cluster]) == [first[2], new[1]]
    # Nothing new: nothing to hash, nothing changes.
    again = dedup.check_incremental(ws)
    assert again.signatures_computed == 0 and again.duplicates == 0
    assert again.op_id is None  # and no operation: undo reverts the check that changed something
    # Undo the incremental check: the joined cluster shrinks back, the new cluster goes.
    undo.undo(ws)
    assert [member_ids(c) for c in clusters(ws)] == [member_ids(zh_cluster)]
    assert ws.con.execute("SELECT count(*) FROM samples WHERE id IN (SELECT unnest(?)) AND cluster_id IS NOT NULL",
                          [new]).fetchall()[0][0] == 0


def test_edited_sample_gets_a_fresh_signature(ws):
    ids = add(ws, chat(EN_Q, EN_A), chat("unrelated", "text that is not like the other one at all"))
    dedup.find_duplicates(ws, DedupParams())
    assert clusters(ws) == []
    review.edit(ws, ids[1], messages=[{"role": "user", "content": EN_Q}, {"role": "assistant", "content": EN_A + " Indeed."}])
    report = dedup.find_duplicates(ws, DedupParams())
    assert report.signatures_computed == 1 and report.signatures_reused == 1
    assert member_ids(clusters(ws)[0]) == ids


# -- processes, cancel, CLI -----------------------------------------------------------------------
def test_worker_pool_gives_the_same_clusters(ws, monkeypatch):
    from tests._dedup_data import generate

    rows = generate(150, seed=3)
    add(ws, *[chat(i, a) for i, a, _ in rows])
    dedup.find_duplicates(ws, DedupParams(), workers=1)
    one = [(c["keeper_id"], member_ids(c)) for c in clusters(ws)]
    ws.con.execute("DELETE FROM minhash_signatures")
    monkeypatch.setattr("curation.dedup.signatures.CHUNK", 64)  # several tasks per worker
    report = dedup.find_duplicates(ws, DedupParams(), workers=2)
    assert report.signatures_computed == len(rows)
    assert [(c["keeper_id"], member_ids(c)) for c in clusters(ws)] == one and one


def test_signatures_in_a_mapped_file_give_the_same_clusters(ws, monkeypatch):
    """Past SPILL_BYTES the signature matrix is a file mapped into memory (10M samples: 5 GB that
    the kernel may page out): a full run, a re-run from stored signatures and an incremental
    check find what the in-memory matrix finds, and no file is left in the workspace folder."""
    from curation.dedup import signatures
    from tests._dedup_data import generate

    rows = generate(150, seed=5)
    add(ws, *[chat(i, a) for i, a, _ in rows[:-20]])

    def run_all():
        ws.con.execute("DELETE FROM minhash_signatures")
        first = dedup.find_duplicates(ws, DedupParams(threshold=0.7))
        again = dedup.find_duplicates(ws, DedupParams(threshold=0.8))  # every signature read back
        assert first.signatures_computed and again.signatures_reused == first.signatures_computed
        return [(c["keeper_id"], member_ids(c), [m["similarity"] for m in c["members"]]) for c in clusters(ws)]

    mapped: list[str] = []
    real, real_bands = signatures.signature_matrix, signatures.band_matrix

    def spy(rows_, num_perm, spill_dir=None):
        m = real(rows_, num_perm, spill_dir)
        mapped.append(type(m).__name__)
        return m

    def spy_bands(bands, samples, spill_dir=None):
        m = real_bands(bands, samples, spill_dir)
        mapped.append("bands " + type(m).__name__)
        return m

    in_memory = run_all()
    assert set(mapped) <= {"ndarray"}
    monkeypatch.setattr(signatures, "SPILL_BYTES", 0)
    monkeypatch.setattr(signatures, "signature_matrix", spy)
    monkeypatch.setattr(signatures, "band_matrix", spy_bands)
    assert run_all() == in_memory and in_memory
    assert "memmap" in mapped and "bands memmap" in mapped
    new = add(ws, *[chat(i, a) for i, a, _ in rows[-20:]])
    report = dedup.check_incremental(ws, new)
    assert report.signatures_computed == 20
    assert {p.name for p in ws.root.iterdir() if p.name.startswith((".signatures", ".bands"))} == set()


def test_rows_stored_out_of_id_order_hash_and_read_back_into_their_own_rows(ws):
    """Hashing and reading stored signatures take rows in table order (no ORDER BY over the texts
    or the BLOBs) and place each result by its sample id: samples whose rows sit out of id order
    in the table get the clusters they get in order, both when hashed and when read back."""
    from tests._dedup_data import generate

    rows = generate(60, seed=9)
    ids = add(ws, *[chat(i, a) for i, a, _ in rows])
    dedup.find_duplicates(ws, DedupParams())
    want = [(c["keeper_id"], member_ids(c)) for c in clusters(ws)]
    assert want
    ws.con.execute("DELETE FROM minhash_signatures")
    # move the first half of the rows (and their signatures, once stored) to the end of the table
    with ws.transaction() as c:
        for table in ("samples",):
            c.execute(f"CREATE TEMP TABLE moved AS SELECT * FROM {table} WHERE id <= ?", [ids[len(ids) // 2]])
            c.execute(f"DELETE FROM {table} WHERE id <= ?", [ids[len(ids) // 2]])
            c.execute(f"INSERT INTO {table} SELECT * FROM moved")
            c.execute("DROP TABLE moved")
    order = [r[0] for r in ws.con.execute("SELECT id FROM samples").fetchall()]
    assert order != sorted(order)
    first = dedup.find_duplicates(ws, DedupParams(threshold=0.7))  # hashed out of order
    assert first.signatures_computed == len(rows)
    with ws.transaction() as c:  # and the stored signatures too
        c.execute("CREATE TEMP TABLE moved AS SELECT * FROM minhash_signatures WHERE sample_id <= ?", [ids[len(ids) // 3]])
        c.execute("DELETE FROM minhash_signatures WHERE sample_id <= ?", [ids[len(ids) // 3]])
        c.execute("INSERT INTO minhash_signatures SELECT * FROM moved")
    again = dedup.find_duplicates(ws, DedupParams())
    assert again.signatures_reused == len(rows)
    assert [(c["keeper_id"], member_ids(c)) for c in clusters(ws)] == want


def test_incremental_check_of_a_clustered_sample_leaves_it_where_it_is(ws):
    """A requested sample that already sits in a cluster takes no part in the check (it is not
    re-planned, and nothing is matched against it), while a new sample still joins that cluster
    through its keeper; the clustered sample's signature counts as neither reused nor new."""
    add(ws, chat(ZH_Q, ZH_A), chat(*NEAR["zh"][1]), chat(EN_Q, EN_A))
    dedup.find_duplicates(ws, DedupParams())
    (zh,) = clusters(ws)
    member = next(m["sample_id"] for m in zh["members"] if m["sample_id"] != zh["keeper_id"])
    (new,) = add(ws, chat(ZH_Q, ZH_A + "如有疑问，欢迎继续提问。"))
    report = dedup.check_incremental(ws, [member, new])
    assert report.samples == 1 and report.signatures_computed == 1 and report.signatures_reused == 2
    assert report.joined_existing == 1
    (after,) = clusters(ws)
    assert after["cluster_id"] == zh["cluster_id"] and after["keeper_id"] == zh["keeper_id"]
    assert member_ids(after) == sorted(member_ids(zh) + [new])


def test_cancelled_run_leaves_the_workspace_as_it_was(ws):
    add(ws, *[chat(f"question {i}", "the same answer every time") for i in range(50)])
    ops_before = ws.con.execute("SELECT count(*) FROM operations").fetchall()[0][0]
    job = Job(kind="dedup")
    job.on_progress = lambda j: j.cancel() if j.done else None
    job.min_interval = 0
    with pytest.raises(Cancelled):
        dedup.find_duplicates(ws, DedupParams(), job=job)
    assert clusters(ws) == []
    assert ws.con.execute("SELECT count(*) FROM minhash_signatures").fetchall()[0][0] == 0
    assert ws.con.execute("SELECT count(*) FROM operations").fetchall()[0][0] == ops_before


def test_accuracy_against_exact_jaccard(ws):
    from tests._dedup_data import generate, pair_scores, truth_clusters

    rows = generate(400, seed=11)
    ids = add(ws, *[chat(i, a) for i, a, _ in rows])
    dedup.find_duplicates(ws, DedupParams())
    cl = dict(ws.con.execute("SELECT id, cluster_id FROM samples").fetchall())
    texts = [marked_text([{"role": "user", "content": i}, {"role": "assistant", "content": a}]) for i, a, _ in rows]
    truth = truth_clusters(texts, [f for *_, f in rows], 0.8, 3)
    precision, recall, f1 = pair_scores([cl[i] for i in ids], truth)
    assert sum(t is not None for t in truth) > 100  # the set really has planted duplicates
    assert f1 >= 0.95, (precision, recall, f1)


def test_cli_dedup_json_and_keeper(ws_path, capsys):
    from curation.workspace import open_workspace
    from studio.cli import main

    with open_workspace(ws_path) as w:
        ids = add(w, chat(ZH_Q, ZH_A, source_id="row-1"), chat(*NEAR["zh"][1], source_id="row-2"))
    assert main(["dedup", "-w", str(ws_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    (c,) = data["clusters"]
    assert {m["source_id"] for m in c["members"]} == {"row-1", "row-2"}
    assert data["report"]["duplicates"] == 1
    other = [i for i in ids if i != c["keeper_id"]][0]
    assert main(["keeper", str(c["cluster_id"]), str(other), "-w", str(ws_path)]) == 0
    assert f"keeping sample {other}" in capsys.readouterr().out
    assert main(["keeper", "12345", str(other), "-w", str(ws_path)]) == 2
    assert "no duplicate cluster 12345" in capsys.readouterr().err
    assert main(["dedup", "-w", str(ws_path), "--threshold", "2"]) == 2


def test_a_translation_and_its_reverse_are_not_near_duplicates(ws):
    """Whole samples are shingled turn by turn, each shingle tagged with its role: "中译英: X" -> "Y"
    and "英译中: Y" -> "X" share their words but in the other turn, so they stay apart. As one
    text their Jaccard is 0.96 and the demo showed such a pair as one cluster."""
    zh = "今天天气很好，我们去公园散步吧，顺便带上相机拍一些照片，中午在湖边的小餐馆吃饭，下午再去博物馆看看新的展览。"
    en = ("The weather is nice today, so let's take a walk in the park, bring the camera to take some photos, have "
          "lunch at the small restaurant by the lake, and visit the new exhibition at the museum in the afternoon.")
    ids = add(ws, chat("中译英：" + zh, en), chat("英译中：" + en, zh), chat("中译英：" + zh.replace("顺便", "再"), en))
    dedup.find_duplicates(ws, DedupParams())
    assert [member_ids(c) for c in clusters(ws)] == [[ids[0], ids[2]]]  # the edited copy, not the reverse
    u, a = ROLE_MARKS["user"], ROLE_MARKS["assistant"]
    marked = [normalize(u + "中译英:" + zh + "\n" + a + en), normalize(u + "英译中:" + en + "\n" + a + zh)]
    assert jaccard(shingle_set(marked[0]), shingle_set(marked[1])) == 0.0
    plain = [m.replace(u, "").replace(a, "") for m in marked]
    assert jaccard(shingle_set(plain[0]), shingle_set(plain[1])) > 0.9  # what whole-text shingles saw


def test_marked_text_is_what_the_database_builds(ws):
    """The Python twin of field_text_sql('sample') gives the same text, byte for byte."""
    from curation.normalize import field_text_sql

    msgs = [{"role": "user", "content": "问题 one"}, {"role": "assistant", "content": "answer 二"},
            {"role": "tool", "content": None}]
    (sid,) = add(ws, chat("问题 one", "answer 二", system="be brief"))
    ws.con.execute("UPDATE samples SET messages = ? WHERE id = ?", [json.dumps(msgs, ensure_ascii=False), sid])
    (db_text,) = ws.con.execute(f"SELECT {field_text_sql('sample')} FROM samples s WHERE id = ?", [sid]).fetchall()[0]
    assert db_text == marked_text(msgs, system="be brief")


# -- clusters verified against their keeper ---------------------------------------------------------
CHAIN_Q = "List the words."
CHAIN_BASE = [f"word{i:02d}" for i in range(60)]


def chain_answers():
    """A~B~C~D~E~F: each hop replaces three words far apart, with shorter words each time (so the
    policy, longer answer first, ranks them A to F); neighbours stay near, two hops apart do not."""
    words, out = list(CHAIN_BASE), [" ".join(CHAIN_BASE)]
    for hop, positions in enumerate(((5, 15, 25), (35, 45, 55), (10, 20, 30), (40, 50, 0), (13, 28, 58))):
        for k, p in enumerate(positions):
            words[p] = f"{'bcdef'[hop]}{k}"
        out.append(" ".join(words))
    return out


def chain_sims(answers):
    texts = [marked_text([{"role": "user", "content": CHAIN_Q}, {"role": "assistant", "content": a}]) for a in answers]
    n = len(texts)
    left, right = np.repeat(np.arange(n), n), np.tile(np.arange(n), n)
    return similarity.jaccard_chunk(texts, left, right, 3).reshape(n, n)


def test_a_chain_splits_into_clusters_whose_members_reach_the_threshold_to_their_keeper(ws):
    answers = chain_answers()
    sims = chain_sims(answers)
    hops = np.abs(np.subtract.outer(np.arange(6), np.arange(6)))
    assert (sims[hops == 1] >= 0.7).all() and (sims[hops >= 2] < 0.7).all()  # linked hop by hop only
    a, b, c, d, e, f = add(ws, *[chat(CHAIN_Q, ans) for ans in answers])
    report = dedup.find_duplicates(ws, DedupParams(threshold=0.7))
    # One chain before; now B keeps A and C (the policy's A would reach B only, and leave C to
    # pair with D: the member reaching the most of the chain keeps), then E keeps D and F.
    cs = sorted(clusters(ws), key=lambda cl: cl["keeper_id"])
    assert [(cl["keeper_id"], member_ids(cl)) for cl in cs] == [(b, [a, b, c]), (e, [d, e, f])]
    got = {m["sample_id"]: m["similarity"] for cl in cs for m in cl["members"]}
    assert got == pytest.approx({a: sims[1, 0], b: 1.0, c: sims[1, 2], d: sims[4, 3], e: 1.0, f: sims[4, 5]}, abs=1e-4)
    assert report.chains_split == 1 and report.clusters == 2 and report.duplicates == 4
    assert dict(ws.con.execute("SELECT id, duplicate_of FROM samples").fetchall()) == {a: b, b: None, c: b, d: e, e: None, f: e}
    # The MinHash estimate instead of exact Jaccard (--no-verify) holds its clusters to the same rule.
    dedup.find_duplicates(ws, DedupParams(threshold=0.7, verify=False))
    assert all(m["similarity"] >= 0.7 for cl in clusters(ws) for m in cl["members"])
    # A reviewer's keeper still comes first: A keeps B; C, D, E go on as a chain of their own.
    dedup.find_duplicates(ws, DedupParams(threshold=0.7))
    dedup.set_keeper(ws, clusters(ws)[0]["cluster_id"], a)
    dedup.find_duplicates(ws, DedupParams(threshold=0.7))
    cs = sorted(clusters(ws), key=lambda cl: cl["keeper_id"])
    assert [(cl["keeper_id"], cl["keeper_chosen_by"], member_ids(cl)) for cl in cs] == [
        (a, "reviewer", [a, b]), (d, "policy", [c, d, e])]
    assert all(m["similarity"] >= 0.7 for cl in cs for m in cl["members"])


def test_a_new_sample_joins_a_cluster_only_when_it_reaches_the_keeper(ws):
    answers = chain_answers()
    a, b = add(ws, *[chat(CHAIN_Q, ans) for ans in answers[:2]])
    dedup.find_duplicates(ws, DedupParams(threshold=0.7))
    assert [(cl["keeper_id"], member_ids(cl)) for cl in clusters(ws)] == [(a, [a, b])]
    # C links to B (in A's cluster) and to D, but neither reaches A: C and D form their own cluster.
    near_a, c, d = add(ws, chat(CHAIN_Q, answers[0] + " extra"), *[chat(CHAIN_Q, ans) for ans in answers[2:4]])
    report = dedup.check_incremental(ws)
    by_keeper = {cl["keeper_id"]: member_ids(cl) for cl in clusters(ws)}
    assert by_keeper == {a: sorted([a, b, near_a]), c: [c, d]}
    assert report.joined_existing == 1 and report.chains_split == 1
    assert all(m["similarity"] >= 0.7 for cl in clusters(ws) for m in cl["members"])


def test_only_pairs_near_the_threshold_are_shingled_for_their_exact_jaccard(ws, monkeypatch):
    """Verification computes the exact Jaccard of the pairs whose MinHash estimate is within
    COVERAGE_MARGIN of the threshold; a near-copy far above it keeps its estimate, as a chance pair
    far below does, and neither sample is shingled."""
    from curation.dedup.shingle_sets import ShingleSets

    shingled: list[int] = []
    ensure = ShingleSets.ensure

    def spy(self, ws_, params, ids, pool, job):
        shingled.extend(int(i) for i in ids)
        return ensure(self, ws_, params, ids, pool, job)

    monkeypatch.setattr(ShingleSets, "ensure", spy)
    answers = chain_answers()
    sims = chain_sims(answers)
    assert abs(sims[0, 1] - 0.7) < similarity.COVERAGE_MARGIN
    copy, y, z = add(ws, chat(EN_Q, EN_A), chat(CHAIN_Q, answers[0]), chat(CHAIN_Q, answers[1]))
    original = add(ws, chat(EN_Q, EN_A + " Hope this helps!"))[0]
    dedup.find_duplicates(ws, DedupParams(threshold=0.7))
    got = {m["sample_id"]: m["similarity"] for cl in clusters(ws) for m in cl["members"]}
    assert set(got) == {copy, original, y, z}
    assert set(shingled) == {y, z}  # the chain's pair only
    assert got[y if got[y] < 1 else z] == pytest.approx(sims[0, 1], abs=1e-4)  # exact
    near = got[copy] if got[copy] < 1 else got[original]
    assert near >= 0.7 + similarity.COVERAGE_MARGIN
    assert near == pytest.approx(round(near * 128) / 128, abs=1e-4)  # the estimate: k of 128 permutations agree


def test_cli_dedup_says_how_many_chains_it_split_and_lists_similarities_to_the_keeper(ws_path, capsys):
    from curation.workspace import open_workspace
    from studio.cli import main

    with open_workspace(ws_path) as w:
        add(w, *[chat(CHAIN_Q, ans) for ans in chain_answers()])
    assert main(["dedup", "-w", str(ws_path), "--threshold", "0.7", "-q"]) == 0
    out = capsys.readouterr().out
    assert "1 chains split so that every member reaches 0.7 to its keeper" in out and "2 clusters" in out
    assert main(["dedup", "-w", str(ws_path), "--threshold", "0.7", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [len(c["members"]) for c in data["clusters"]] == [3, 3]
    assert all(m["similarity"] >= 0.7 for c in data["clusters"] for m in c["members"])


def test_gather_rows_reads_a_mapped_matrix_as_numpy_indexing_does(tmp_path, monkeypatch):
    """The estimate's gather (ascending reads, the mapping advised random meanwhile and normal
    after) returns exactly sigs[positions], repeats and any order included."""
    import mmap

    from curation.dedup import signatures

    monkeypatch.setattr(signatures, "SPILL_BYTES", 0)
    m = signatures.signature_matrix(3000, 128, tmp_path)
    assert isinstance(m, np.memmap)
    m[:] = np.random.default_rng(1).integers(0, 2**32, (3000, 128), dtype=np.uint32)
    pos = np.random.default_rng(2).integers(0, 3000, 5000)
    advised: list[int] = []
    real = mmap.mmap.madvise

    class Spy:  # records the advice, passes it on
        def __init__(self, inner):
            self.inner = inner

        def madvise(self, option, *args):
            advised.append(option)
            return real(self.inner, option, *args)

    monkeypatch.setattr(m, "_mmap", Spy(m._mmap))
    assert np.array_equal(signatures.gather_rows(m, pos), np.asarray(m)[pos])
    assert advised == [mmap.MADV_RANDOM, mmap.MADV_NORMAL]
    plain = np.asarray(m).copy()
    assert np.array_equal(signatures.gather_rows(plain, pos[::-1]), plain[pos[::-1]])


def test_shingle_set_jaccard_is_exact_across_blocks(monkeypatch):
    """ShingleSets.jaccard, compiled (a merge a pair) and in numpy (intersections from sorted keys
    in blocks of PAIR_HASHES): equal to Python's set arithmetic for every pair, rows held out of id
    order, empty sets (0) included, whatever the block size."""
    from curation.dedup import shingle_sets as ss

    rng = np.random.default_rng(4)
    sets = [np.unique(rng.integers(0, 2**32 - 1, rng.integers(0, 60), dtype=np.uint64).astype(np.uint32))
            for _ in range(40)]
    sets[7] = np.unique(np.concatenate([sets[3], [5, 2**32 - 1]]).astype(np.uint32))  # near copy, top hash
    held = ss.ShingleSets()
    ids = rng.permutation(np.arange(100, 140))
    held.indptr = np.concatenate([[0], np.cumsum([s.size for s in sets])]).astype(np.int64)
    held.hashes = np.concatenate(sets).astype(np.uint32)
    order = np.argsort(ids)
    held.ids, held.rows = ids[order], np.arange(40, dtype=np.int64)[order]
    a, b = rng.integers(0, 40, 500), rng.integers(0, 40, 500)
    a[:3], b[:3] = [3, 7, 0], [7, 3, 0]

    def want(i: int, j: int) -> float:
        x, y = set(sets[i].tolist()), set(sets[j].tolist())
        return len(x & y) / len(x | y) if x and y else 0.0

    expected = [want(i, j) for i, j in zip(a, b)]
    monkeypatch.setenv("STUDIO_NO_JIT", "1")  # the numpy blocks
    for block in (1, 50, 10**9):
        monkeypatch.setattr(ss, "PAIR_HASHES", block)
        assert held.jaccard(ids[a], ids[b]).tolist() == pytest.approx(expected, abs=0)
    monkeypatch.delenv("STUDIO_NO_JIT")  # the compiled merge
    assert held.jaccard(ids[a], ids[b]).tolist() == pytest.approx(expected, abs=0)


def test_a_dedup_run_and_a_keeper_choice_load_no_pandas(ws):
    """pyarrow's pa.array / pa.table / to_numpy import pandas (~0.6 s a process): the dedup pass
    builds its Arrow tables from buffers (curation/arrow_buffers.py)."""
    import subprocess
    import sys
    from pathlib import Path

    (q1, a1), (q2, a2) = NEAR["en"]
    add(ws, chat(q1, a1), chat(q2, a2), chat("unrelated", "something else entirely"), chat(q1, a1))
    ws.close()
    code = ("import sys; from pathlib import Path; from curation.workspace import open_workspace; "
            "from curation import dedup; "
            f"ws = open_workspace(Path({str(ws.root)!r})); dedup.find_duplicates(ws, dedup.DedupParams()); "
            "c = dedup.list_clusters(ws.con)[0]; "
            "other = [m['sample_id'] for m in c['members'] if m['sample_id'] != c['keeper_id']][0]; "
            "dedup.set_keeper(ws, c['cluster_id'], other); print(len(dedup.list_clusters(ws.con)), 'pandas' in sys.modules)")
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.split()[1:] == ["False"] and int(out.stdout.split()[0]) >= 1, out.stdout + out.stderr


def test_band_grouping_order_equals_a_stable_argsort():
    """lsh._stable_order (packed positions, a plain sort) gives np.argsort(kind="stable")'s order,
    also where keys share their high bits and interleave (the runs it puts in order itself)."""
    from curation.dedup import lsh

    rng = np.random.default_rng(5)
    for n in (1, 2, 3, 17, 300, 2500):
        keys = rng.integers(0, 2**64 - 1, n, dtype=np.uint64)
        keys[rng.integers(0, n, n // 4)] = keys[rng.integers(0, n, n // 4)]  # true groups
        mixed = rng.integers(0, n, n // 4)  # same high bits, other low bits
        keys[mixed] = (keys[rng.integers(0, n, mixed.size)] & ~np.uint64(0xFFF)) | rng.integers(0, 0xFFF, mixed.size, dtype=np.uint64)
        order, sorted_keys = lsh._stable_order(keys)
        want = np.argsort(keys, kind="stable")
        assert np.array_equal(order, want) and np.array_equal(sorted_keys, keys[want]), n


@pytest.mark.parametrize("threshold", [0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95])
def test_band_widths_keep_the_candidate_bound_with_wider_bands(threshold):
    """Two widths, side by side within the permutations: a pair exactly at the threshold is still a
    candidate with probability >= CANDIDATE_RECALL, and no band is narrower than one width would
    need (fewer chance candidates)."""
    from curation.dedup.lsh import CANDIDATE_RECALL

    widths = band_widths(threshold, 128)
    assert sum(widths) <= 128 and len(widths) >= 2 and max(widths) - min(widths) <= 1
    miss = np.prod([(1 - threshold ** w) for w in widths])
    assert 1 - miss >= CANDIDATE_RECALL
    uniform = next(r for r in range(64, 0, -1) if 1 - (1 - threshold ** r) ** (128 // r) >= CANDIDATE_RECALL)
    assert min(widths) >= uniform
    chance = sum(0.3 ** w for w in widths)  # a chance pair at Jaccard 0.3
    assert chance <= (128 // uniform) * 0.3 ** uniform + 1e-12


def test_band_widths_at_0_7_use_every_permutation():
    assert band_widths(0.7, 128) == (5,) * 24 + (4,) * 2  # one width would be 32 bands of 4
