"""Augmentation novelty is judged against the sample's own lineage, on the field the operation
changed (issue 15 item 15): a rewrite keeps its parent's answer, so whole-sample similarity to the
parent is high by construction and said nothing about whether the paraphrase is new.

- rewrite and reverse make a new instruction for the parent's answer: judged on the instruction;
- answers makes a new answer for the parent's instruction: judged on the answer;
- a new sample is dropped (duplicate_of its parent or a sibling, one undoable operation) only when
  that field repeats the parent's or a sibling's (same parent, same operation): equal after
  normalisation, or a shingle Jaccard at or above the dedup threshold;
- the whole-sample duplicate check against the rest of the workspace still runs, with the new
  sample's parent and siblings left out of its comparisons;
- the job's result counts what landed and what was dropped, and why.

The server is the real local OpenAI-protocol server of tests/llm_server.py; its replies are
scripted per sample (the instruction carries "Task NN") so every count below is exact.
"""
from __future__ import annotations

import json
import random
import re

from tests.augment_helpers import FAST, configure

TOPICS = ["water pump", "bread oven", "bell tower", "tram line", "fish market", "paper mill", "post office",
          "wind mill", "fire station", "glass kiln", "silk loom", "salt pan", "ferry dock", "clock shop",
          "ice house", "rope walk", "dye works", "tin mine", "hop kiln", "grain silo"]
_VOCAB = ("amber basil cedar delta ember fennel garnet harbor indigo juniper kestrel lantern meadow nutmeg "
          "orchard pepper quarry raven saffron thistle umber violet willow yarrow zephyr anchor bramble copper "
          "driftwood eclipse falcon granite hazel iris jasper kelp lichen marble nettle opal pebble quartz reed "
          "sorrel tundra urchin vellum walnut xylem yew zinnia acorn birch clover dune elm fern glacier heron "
          "ivy jade kiln loam moss oak pine quill rush sage teal umbra vine wren yolk zest arch beam cask dock "
          "easel flint gable hinge ingot joist keel ledge mast notch oar plank quoin rivet sash truss vault weir "
          "yoke adze bolt chisel dowel file gouge hasp jig knot lathe mallet nail plumb rasp saw tongs vise").split()


def _answer(i: int, words: int = 150) -> str:
    rnd = random.Random(1000 + i)
    return " ".join(rnd.choice(_VOCAB) for _ in range(words)) + "."


def _instruction(i: int) -> str:
    return f"Task {i:02d}: explain how the {TOPICS[i]} works in a small town."


def _paraphrases(i: int) -> list[str]:
    t = TOPICS[i]
    return [f"Could you describe, in plain words, the workings of the {t} (case {i})?",
            f"I need a short walkthrough of how a {t} operates in a little town, item {i}.",
            f"Tell me what makes the {t} function for a small community; number {i}."]


# Scripted deviations from the three distinct paraphrases.
PARENT_EXACT = {3: 1, 7: 0}   # sample -> paraphrase slot that repeats the instruction (case / spacing only)
PARENT_NEAR = {11: 2}         # punctuation only: not equal after normalisation, Jaccard 1.0
SIBLING = {15: (0, 2)}        # slot 2 repeats slot 0 (case only)
UNRELATED = 19                # slot 1 repeats an unrelated sample of the workspace (whole sample)
SHORT = "It keeps the grain dry."


def _scripted_paraphrases(i: int) -> list[str]:
    ps = _paraphrases(i)
    if i in PARENT_EXACT:
        ps[PARENT_EXACT[i]] = _instruction(i).upper() if PARENT_EXACT[i] else "  " + _instruction(i).replace(" ", "   ")
    if i in PARENT_NEAR:
        ps[PARENT_NEAR[i]] = _instruction(i).replace(".", "?!")
    if i in SIBLING:
        a, b = SIBLING[i]
        ps[b] = ps[a].lower()
    return ps


_TASK = re.compile(r"Task (\d\d)")


def _script(fake, *, answers=None, reverse=None):
    """Replace the fake server's content: rewrite -> _scripted_paraphrases, answers/reverse ->
    the given functions of (sample index, seed)."""
    default = fake.reply_content

    def reply(req, digest):
        prompt = "\n".join(str(m.get("content", "")) for m in req.get("messages") or [])
        m = _TASK.search(prompt)
        # a reverse request holds the answer only: find the sample by its answer
        i = int(m.group(1)) if m else next((k for k in range(len(TOPICS)) if _answer(k) in prompt), None)
        if i is None:
            return default(req, digest)
        if '"paraphrases"' in prompt:
            return json.dumps({"paraphrases": _scripted_paraphrases(i)})
        if "Write the instruction it answers" in prompt and reverse is not None:
            return reverse(i, req.get("seed", 0))
        if answers is not None:
            return answers(i, req.get("seed", 0))
        return default(req, digest)

    fake.reply_content = reply


def _add(ws, items):
    from curation import samples, store

    with ws.transaction():
        return store.insert_samples(ws.con, [samples.chat(u, a) for u, a in items])


def _deduped(ws):
    """The workspace as a user has it after `studio dedup`: every sample hashed (check_incremental
    compares new samples with hashed ones only)."""
    from curation import dedup

    return dedup.find_duplicates(ws, dedup.DedupParams())


def _rows(ws, op):
    rows = ws.con.execute(
        "SELECT id, parent_id, status, duplicate_of, instruction, answer FROM samples WHERE operation = ? ORDER BY id",
        [f"augment:{op}"]).fetchall()
    return [dict(zip(["id", "parent_id", "status", "duplicate_of", "instruction", "answer"], r)) for r in rows]


def _run(ws, **kw):
    from curation.augment.jobs import Spec, run

    return run(ws, Spec(**kw), client_options=FAST)


def _whole_sample_similarity(a, b) -> float:
    from curation import normalize as norm
    from curation import shingles as sh

    def sset(row):
        return sh.shingle_set(norm.normalize(norm.marked_text(
            [{"role": "user", "content": row[0]}, {"role": "assistant", "content": row[1]}])))
    return sh.jaccard(sset(a), sset(b))


def test_rewrites_are_judged_on_the_instruction_against_their_lineage(ws, fake, monkeypatch):
    n_samples = 20
    # Sample 19 has a short answer: an unrelated sample (no lineage) that one of its rewrites
    # repeats whole is not a near copy of sample 19 itself, and the workspace-wide check catches it.
    ids = _add(ws, [(_instruction(i), _answer(i) if i != UNRELATED else SHORT) for i in range(n_samples)])
    unrelated = _add(ws, [(_paraphrases(UNRELATED)[1], SHORT)])[0]
    assert _deduped(ws).duplicates == 0
    configure(ws, fake, monkeypatch)
    _script(fake)
    result = _run(ws, op="rewrite", n=3, ids=ids)
    rows = _rows(ws, "rewrite")
    assert len(rows) == 3 * n_samples and result.failed == 0
    parent_of = {r["id"]: r["parent_id"] for r in rows}
    by_text = {(r["parent_id"], r["instruction"]): r for r in rows}
    index = {sid: i for i, sid in enumerate(ids)}

    # The premise: whole-sample similarity of a paraphrase to its parent is above the dedup threshold.
    r0 = by_text[(ids[0], _paraphrases(0)[0])]
    assert _whole_sample_similarity((r0["instruction"], r0["answer"]), (_instruction(0), _answer(0))) > 0.8

    # Paraphrases land as pending and are not duplicate_of anything (today: almost all were).
    plain = [r for r in rows if index[r["parent_id"]] not in (*PARENT_EXACT, *PARENT_NEAR, *SIBLING, UNRELATED)]
    assert len(plain) == 3 * (n_samples - 5)
    assert all(r["status"] == "pending" and r["duplicate_of"] is None for r in plain), \
        [(r["id"], r["duplicate_of"]) for r in plain if r["duplicate_of"] is not None][:10]

    # Those that repeat the parent's instruction are marked against the parent.
    for i, slot in {**PARENT_EXACT, **PARENT_NEAR}.items():
        text = _scripted_paraphrases(i)[slot].strip()
        r = by_text[(ids[i], text)]
        assert r["duplicate_of"] == ids[i], (i, r)
        others = [x for x in rows if x["parent_id"] == ids[i] and x["id"] != r["id"]]
        assert all(x["duplicate_of"] is None for x in others)
    # The identical sibling is marked against the sibling that came first.
    a, b = SIBLING[15]
    first, second = (by_text[(ids[15], _scripted_paraphrases(15)[k])] for k in (a, b))
    assert first["duplicate_of"] is None and second["duplicate_of"] == first["id"]
    # The rewrite that repeats an unrelated sample is caught by the workspace-wide check ...
    copy = by_text[(ids[UNRELATED], _paraphrases(UNRELATED)[1])]
    assert copy["duplicate_of"] == unrelated
    # ... and no rewrite joined its parent's cluster through the shared answer.
    clustered_with_parent = ws.con.execute(
        """SELECT count(*) FROM samples c JOIN samples p ON p.id = c.parent_id
           WHERE c.operation = 'augment:rewrite' AND c.cluster_id IS NOT NULL AND c.cluster_id = p.cluster_id""").fetchone()[0]
    assert clustered_with_parent == 0
    assert all(parent_of[r["id"]] in ids for r in rows)

    # The summary's counts are exact, and say why.
    land = result.landing
    assert land["produced"] == 60 and land["landed"] == 55
    assert land["dropped"] == {"repeats_parent": 3, "repeats_sibling": 1, "duplicates_other": 1}
    assert land["field"] == "instruction"
    assert land["summary"] == ("60 rewrites: 55 landed as pending, 3 repeat their parent's instruction, "
                               "1 repeats a sibling, 1 duplicates other samples")
    assert sorted(land["dropped_ids"]["repeats_parent"]) == sorted(
        by_text[(ids[i], _scripted_paraphrases(i)[s].strip())]["id"] for i, s in {**PARENT_EXACT, **PARENT_NEAR}.items())
    assert land["dropped_ids"]["repeats_sibling"] == [second["id"]]
    assert land["dropped_ids"]["duplicates_other"] == [copy["id"]]
    # stored with the job: `studio augment jobs --json` shows it
    from curation.augment.jobs import list_jobs

    listed = {j["id"]: j for j in list_jobs(ws)}[result.job_id]
    assert listed["landing"]["summary"] == land["summary"]
    assert land["summary"] in listed["message"]


def test_undo_restores_the_dropped_rewrites(ws, fake, monkeypatch):
    from curation import undo

    ids = _add(ws, [(_instruction(i), _answer(i)) for i in (3, 15, 0)])  # scripted by their Task number
    _deduped(ws)
    configure(ws, fake, monkeypatch)
    _script(fake)
    result = _run(ws, op="rewrite", n=3, ids=ids)
    assert result.landing["dropped"] == {"repeats_parent": 1, "repeats_sibling": 1, "duplicates_other": 0}
    dropped = sorted(i for v in result.landing["dropped_ids"].values() for i in v)
    marked = [r[0] for r in ws.con.execute(
        "SELECT id FROM samples WHERE duplicate_of IS NOT NULL ORDER BY id").fetchall()]
    assert marked == dropped
    # the marks are one operation of their own; undoing it (and what came after) restores them
    op_id = ws.con.execute("SELECT id FROM operations WHERE kind = 'augment:lineage'").fetchone()[0]
    later = ws.con.execute("SELECT count(*) FROM operations WHERE id >= ? AND kind <> 'undo'", [op_id]).fetchone()[0]
    undo.undo(ws, n=later)
    assert ws.count("duplicate_of IS NOT NULL") == 0
    assert ws.count("operation = 'augment:rewrite' AND status = 'pending'") == 9
    # and undoing the augment operation itself removes every generated sample
    undo.undo(ws, n=1)
    assert ws.count("operation = 'augment:rewrite'") == 0


def test_a_second_run_does_not_pile_up_copies_of_earlier_siblings(ws, fake, monkeypatch):
    ids = _add(ws, [(_instruction(i), _answer(i)) for i in range(6)])
    _deduped(ws)
    configure(ws, fake, monkeypatch)
    _script(fake)
    first = _run(ws, op="rewrite", n=3, ids=ids)
    assert first.landing["landed"] == 17 and first.landing["dropped"]["repeats_parent"] == 1
    # another temperature: new requests, and the server says the same things again
    second = _run(ws, op="rewrite", n=3, ids=ids, temperature=0.3)
    assert second.sent == 6 and len(second.new_sample_ids) == 18
    assert second.landing["landed"] == 0
    assert second.landing["dropped"] == {"repeats_parent": 1, "repeats_sibling": 17, "duplicates_other": 0}
    # each copy points at the earlier sibling it repeats, which stays as it was
    pairs = ws.con.execute(
        """SELECT c.duplicate_of, d.duplicate_of, d.status FROM samples c JOIN samples d ON d.id = c.duplicate_of
           WHERE c.id IN (SELECT unnest(?)) AND c.duplicate_of <> c.parent_id""", [second.new_sample_ids]).fetchall()
    assert len(pairs) == 17 and all(dd is None and st == "pending" for _, dd, st in pairs)
    assert {r[0] for r in pairs} <= set(first.new_sample_ids)


def test_rewrite_of_a_clustered_parent_does_not_join_its_cluster(ws, fake, monkeypatch):
    ids = _add(ws, [(_instruction(i), _answer(i)) for i in range(4)])
    # a near copy of sample 1 (another wording, the same long answer): dedup clusters the two
    copy_id = _add(ws, [(f"Task 01: say how a {TOPICS[1]} works in a town.", _answer(1))])[0]
    assert _deduped(ws).duplicates == 1
    keeper = ws.con.execute("SELECT keeper_id FROM dup_clusters").fetchone()[0]
    assert keeper in (ids[1], copy_id)
    configure(ws, fake, monkeypatch)
    _script(fake)
    result = _run(ws, op="rewrite", n=3, ids=[keeper])
    rows = _rows(ws, "rewrite")
    assert len(rows) == 3 and all(r["duplicate_of"] is None and r["status"] == "pending" for r in rows), rows
    assert result.landing["landed"] == 3


def _passage(i: int) -> str:
    return f"Task {i:02d}: read this. {_answer(50 + i)} Summarise the passage above in one sentence."


def _new_answer(i: int, seed: int) -> str:
    rnd = random.Random(7000 + 10 * i + seed)
    return "In short, " + " ".join(rnd.choice(_VOCAB) for _ in range(12)) + "."


def test_answers_are_judged_on_the_answer(ws, fake, monkeypatch):
    """More answers keep a (here long) instruction: whole-sample similarity to the parent is high
    for every new answer; only answers that repeat the parent's or a sibling's are dropped."""
    originals = {i: f"The passage says {TOPICS[i]} matters." for i in range(6)}
    ids = _add(ws, [(_passage(i), originals[i]) for i in range(6)])
    _deduped(ws)
    configure(ws, fake, monkeypatch)

    def answers(i, seed):
        if (i, seed) == (2, 1):
            return originals[2].upper()              # the parent's answer again
        if (i, seed) == (4, 2):
            return _new_answer(4, 0).lower() + " "   # sibling seed 0's answer again
        return _new_answer(i, seed)

    _script(fake, answers=answers)
    result = _run(ws, op="answers", n=3, ids=ids)
    rows = _rows(ws, "answers")
    assert len(rows) == 18
    assert _whole_sample_similarity((rows[0]["instruction"], rows[0]["answer"]), (_passage(0), originals[0])) > 0.8
    by = {(r["parent_id"], r["answer"].strip()): r for r in rows}
    repeat_parent = by[(ids[2], originals[2].upper())]
    # replies land as they arrive: of the two equal siblings, the later one is the repeat
    first, repeat_sibling = sorted([by[(ids[4], _new_answer(4, 0))], by[(ids[4], _new_answer(4, 0).lower())]],
                                   key=lambda r: r["id"])
    assert repeat_parent["duplicate_of"] == ids[2]
    assert repeat_sibling["duplicate_of"] == first["id"]
    rest = [r for r in rows if r["id"] not in (repeat_parent["id"], repeat_sibling["id"])]
    assert all(r["duplicate_of"] is None and r["status"] == "pending" for r in rest)
    land = result.landing
    assert land["field"] == "answer"
    assert land["dropped"] == {"repeats_parent": 1, "repeats_sibling": 1, "duplicates_other": 0}
    assert land["summary"] == ("18 new answers: 16 landed as pending, 1 repeats its parent's answer, "
                               "1 repeats a sibling, 0 duplicate other samples")


def test_reverse_is_judged_on_the_instruction(ws, fake, monkeypatch):
    """Reverse generation invents an instruction for the parent's (long) answer."""
    ids = _add(ws, [(_instruction(i), _answer(i)) for i in range(5)])
    _deduped(ws)
    configure(ws, fake, monkeypatch)

    def reverse(i, seed):
        if (i, seed) == (1, 0):
            return "Instruction: " + _instruction(1).lower()   # the parent's instruction, after cleaning
        if (i, seed) == (3, 1):
            return _paraphrases(3)[0].upper()                   # sibling seed 0's instruction again
        return _paraphrases(i)[seed]

    _script(fake, reverse=reverse)
    result = _run(ws, op="reverse", n=2, ids=ids)
    rows = _rows(ws, "reverse")
    assert len(rows) == 10
    by = {(r["parent_id"], r["instruction"]): r for r in rows}
    repeat_parent = by[(ids[1], _instruction(1).lower())]
    # replies land as they arrive: of the two equal siblings, the later one is the repeat
    first, repeat_sibling = sorted([by[(ids[3], _paraphrases(3)[0])], by[(ids[3], _paraphrases(3)[0].upper())]],
                                   key=lambda r: r["id"])
    assert repeat_parent["duplicate_of"] == ids[1]
    assert repeat_sibling["duplicate_of"] == first["id"]
    rest = [r for r in rows if r["id"] not in (repeat_parent["id"], repeat_sibling["id"])]
    assert all(r["duplicate_of"] is None and r["status"] == "pending" for r in rest)
    land = result.landing
    assert land["field"] == "instruction"
    assert land["dropped"] == {"repeats_parent": 1, "repeats_sibling": 1, "duplicates_other": 0}
    assert land["summary"] == ("10 generated instructions: 8 landed as pending, 1 repeats its parent's instruction, "
                               "1 repeats a sibling, 0 duplicate other samples")


def test_check_incremental_ignore_pairs(ws):
    """The dedup parameter on its own: a new sample is not matched against the ids it names, and
    is still matched against everything else; without it, behaviour is as before."""
    from curation import dedup

    ids = _add(ws, [(_instruction(i), _answer(i)) for i in range(3)])
    _deduped(ws)
    twin = _add(ws, [(_instruction(1).replace("town", "village"), _answer(1))])[0]   # near sample 1
    new = _add(ws, [(_paraphrases(1)[0], _answer(1))])[0]                           # near 1 and twin
    rep = dedup.check_incremental(ws, [twin, new], ignore_pairs={new: {ids[1], twin}, twin: {ids[1]}})
    assert rep.op_id is None and ws.count("duplicate_of IS NOT NULL") == 0
    # the pair is ignored whichever side names it
    rep = dedup.check_incremental(ws, [twin, new], ignore_pairs={twin: {ids[1], new}, new: {ids[1]}})
    assert rep.op_id is None and ws.count("duplicate_of IS NOT NULL") == 0
    rep = dedup.check_incremental(ws, [twin, new], ignore_pairs={new: {ids[1]}, twin: {ids[1]}})
    assert rep.duplicates == 1
    members = {r[0] for r in ws.con.execute("SELECT sample_id FROM dup_members").fetchall()}
    assert members == {new, twin}
    # without it (undo that run first): the parent is matched too, as before
    from curation import undo

    undo.undo(ws)
    rep = dedup.check_incremental(ws, [twin, new])
    members = {r[0] for r in ws.con.execute("SELECT sample_id FROM dup_members").fetchall()}
    assert members == {ids[1], twin, new}


def test_ignoring_a_sample_ignores_its_exact_copies(ws):
    from curation import dedup

    ids = _add(ws, [(_instruction(i), _answer(i)) for i in range(3)])
    _deduped(ws)
    copy = _add(ws, [(_instruction(1), _answer(1))])[0]          # an exact copy of sample 1
    new = _add(ws, [(_paraphrases(1)[0], _answer(1))])[0]        # near sample 1, and so near its copy
    dedup.check_incremental(ws, [copy, new], ignore_pairs={new: {ids[1]}})
    got = dict(ws.con.execute("SELECT id, duplicate_of FROM samples WHERE id IN (?, ?)", [copy, new]).fetchall())
    assert got == {copy: ids[1], new: None}   # the copy is caught as before; the new sample is left alone


def test_cli_prints_the_landing_summary(ws, fake, monkeypatch, capsys):
    from studio.cli import main

    ids = _add(ws, [(_instruction(i), _answer(i)) for i in (3, 15, 0)])
    _deduped(ws)
    configure(ws, fake, monkeypatch)
    _script(fake)
    root = ws.root
    ws.close()
    code = main(["augment", "rewrite", *map(str, ids), "--n", "3", "-w", str(root)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert ("9 rewrites: 7 landed as pending, 1 repeats its parent's instruction, 1 repeats a sibling, "
            "0 duplicate other samples") in out
    assert main(["augment", "jobs", "--json", "-w", str(root)]) == 0
    jobs = json.loads(capsys.readouterr().out)["jobs"]
    assert jobs[0]["landing"]["dropped"] == {"repeats_parent": 1, "repeats_sibling": 1, "duplicates_other": 0}


def test_summary_counts_judge_rejections_and_says_when_checks_were_skipped(ws, fake, monkeypatch):
    ids = _add(ws, [("Low quality please #score=1#", "meh"), ("Good one #score=4#", "fine")])
    configure(ws, fake, monkeypatch)
    gated = _run(ws, op="answers", n=1, ids=ids, reject_below=3)
    assert gated.landing["rejected_by_judge"] == 1 and gated.landing["landed"] == 1
    assert gated.landing["summary"] == ("2 new answers: 1 landed as pending, 0 repeat their parent's answer, "
                                        "0 repeat a sibling, 0 duplicate other samples, 1 rejected by the judge")
    unchecked = _run(ws, op="answers", n=2, ids=ids, checks=False)   # one more answer each: 2 new
    assert unchecked.checks["lineage"] == "skipped"
    assert unchecked.landing["summary"] == "2 new answers: 2 landed as pending (duplicate checks skipped)"
    again = _run(ws, op="answers", n=2, ids=ids)                     # all from the cache: nothing new
    assert again.landing["summary"] == "0 new answers"
