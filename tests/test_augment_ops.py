"""Each augmentation operation against a real HTTP server: new samples land pending with lineage,
the sample's language picks the template, a rerun is answered from the cache, dry runs send nothing."""
from __future__ import annotations

import json

from tests.augment_helpers import FAST, SAMPLES, add_samples, configure


def _run(ws, **kw):
    from curation.augment.jobs import Spec, run

    return run(ws, Spec(**kw), client_options=FAST)


def _generated(ws, op):
    rows = ws.con.execute(
        "SELECT id, parent_id, status, instruction, answer, lineage, lang FROM samples WHERE operation = ? ORDER BY id",
        [f"augment:{op}"]).fetchall()
    return [dict(zip(["id", "parent_id", "status", "instruction", "answer", "lineage", "lang"], r)) for r in rows]


def test_rewrite_lands_paraphrases_with_lineage_and_language_template(ws, fake, monkeypatch):
    ids = add_samples(ws, SAMPLES)
    configure(ws, fake, monkeypatch)
    result = _run(ws, op="rewrite", n=2)
    assert result.state == "done" and result.failed == 0 and result.sent == 3
    rows = _generated(ws, "rewrite")
    assert len(rows) == 6 and sorted(result.new_sample_ids) == [r["id"] for r in rows]
    parents = {sid: a for sid, (_, a) in zip(ids, SAMPLES)}
    for r in rows:
        assert r["status"] == "pending"
        assert r["answer"] == parents[r["parent_id"]]          # same answer, new instruction
        assert r["instruction"].startswith("Paraphrase")
        lin = json.loads(r["lineage"])
        assert lin["job_id"] == result.job_id and lin["provider"] == "fake" and lin["model"] == "fake-model"
        want_lang = "zh" if r["parent_id"] == ids[2] else "en"
        assert lin["template"] == {"id": f"{want_lang}/rewrite", "version": "1", "source": "package"}
        assert r["lang"] == ("zh" if want_lang == "zh" else "en")
    # the Chinese sample was sent the Chinese template
    zh_bodies = [b for b in fake.bodies.values() if "机器学习" in json.dumps(b, ensure_ascii=False)]
    assert zh_bodies and "改写" in zh_bodies[0]["messages"][0]["content"]


def test_answers_and_reverse_land_samples(ws, fake, monkeypatch):
    ids = add_samples(ws, SAMPLES)
    configure(ws, fake, monkeypatch)
    r1 = _run(ws, op="answers", n=2, ids=ids[:2])
    answers = _generated(ws, "answers")
    assert r1.sent == 4 and len(answers) == 4
    assert {a["parent_id"] for a in answers} == set(ids[:2])
    assert all(a["answer"].startswith("Fake answer") for a in answers)
    assert {json.loads(a["lineage"])["variant"] for a in answers} == {0, 1}
    assert {a["instruction"] for a in answers} == {SAMPLES[0][0], SAMPLES[1][0]}

    r2 = _run(ws, op="reverse", ids=[ids[2]])
    rev = _generated(ws, "reverse")
    assert r2.sent == 1 and len(rev) == 1
    assert rev[0]["answer"] == SAMPLES[2][1] and rev[0]["parent_id"] == ids[2]
    assert json.loads(rev[0]["lineage"])["template"]["id"] == "zh/reverse"


def test_judge_stores_score_and_reason(ws, fake, monkeypatch):
    ids = add_samples(ws, [("Say hi #score=2#", "hi"), ("Say bye #score=5#", "bye")])
    configure(ws, fake, monkeypatch)
    result = _run(ws, op="judge")
    assert result.judged == 2 and result.new_sample_ids == []
    got = dict(ws.con.execute("SELECT id, judge_score FROM samples ORDER BY id").fetchall())
    assert got == {ids[0]: 2.0, ids[1]: 5.0}
    reasons = [r[0] for r in ws.con.execute("SELECT judge_reason FROM samples").fetchall()]
    assert all(r.startswith("fake judge") for r in reasons)


def test_rerun_is_answered_from_the_cache_and_lands_nothing_twice(ws, fake, monkeypatch):
    add_samples(ws, SAMPLES)
    configure(ws, fake, monkeypatch)
    first = _run(ws, op="answers", n=2)
    before = ws.count()
    second = _run(ws, op="answers", n=2)
    assert first.sent == 6 and second.sent == 0 and second.cached == 6
    assert ws.count() == before
    assert set(fake.counts.values()) == {1}
    # asking for one more variant sends only the new one
    third = _run(ws, op="answers", n=3)
    assert third.sent == 3 and third.cached == 6 and fake.total_requests() == 9


def test_dry_run_estimates_and_sends_nothing(ws, fake, monkeypatch):
    from curation.augment.jobs import Spec, estimate
    from studio.cli import main

    add_samples(ws, SAMPLES)
    configure(ws, fake, monkeypatch)
    est = estimate(ws, Spec(op="rewrite", n=3))
    assert est.requests == 3 and est.to_send == 3 and est.input_tokens > 100
    assert 0 < est.usd < est.usd_max
    assert est.usd == (est.input_tokens * 2.0 + est.output_tokens * 8.0) / 1e6
    gated = estimate(ws, Spec(op="rewrite", n=3, reject_below=3))
    assert gated.gate_requests == 9 and gated.usd > est.usd
    ws.close()
    assert main(["augment", "rewrite", "--dry-run", "--json", "-w", str(ws.root)]) == 0
    assert fake.total_requests() == 0


def test_judge_gate_rejects_generated_samples_below_threshold(ws, fake, monkeypatch):
    # answers to "#score=1#" instructions carry the marker in the request; the gate's judge request
    # holds the generated sample's instruction, so it scores 1 and is rejected.
    add_samples(ws, [("Low quality please #score=1#", "meh"), ("Good one #score=4#", "fine")])
    configure(ws, fake, monkeypatch)
    result = _run(ws, op="answers", n=1, reject_below=3)
    rows = {r[0]: (r[1], r[2]) for r in ws.con.execute(
        "SELECT instruction, status, judge_score FROM samples WHERE operation = 'augment:answers'").fetchall()}
    assert rows["Low quality please #score=1#"] == ("rejected", 1.0)
    assert rows["Good one #score=4#"] == ("pending", 4.0)
    assert len(result.rejected_ids) == 1
    kinds = [r[0] for r in ws.con.execute("SELECT kind FROM operations ORDER BY id").fetchall()]
    assert "augment:answers" in kinds and "status" in kinds


def test_workspace_template_override_changes_version_and_requests(ws, fake, monkeypatch):
    add_samples(ws, SAMPLES[:1])
    configure(ws, fake, monkeypatch)
    _run(ws, op="judge")
    override = ws.root / "templates" / "en" / "judge.txt"
    override.parent.mkdir(parents=True)
    override.write_text('=== user\nRate {{instruction}} -> {{answer}}. Reply JSON {"score": 1-5, "reason": "..."}\n',
                        encoding="utf-8")
    result = _run(ws, op="judge")
    assert result.sent == 1  # edited template: a new request, not the cached answer
    tpl = json.loads(ws.con.execute("SELECT request FROM llm_cache ORDER BY created_at DESC LIMIT 1").fetchone()[0])
    assert tpl["messages"][0]["content"].startswith("Rate What is the capital")
    version = ws.con.execute("SELECT template_version FROM llm_cache WHERE template_version LIKE 'sha256:%'").fetchone()
    assert version is not None


def test_undo_removes_generated_samples(ws, fake, monkeypatch):
    from curation import undo

    add_samples(ws, SAMPLES[:2])
    configure(ws, fake, monkeypatch)
    _run(ws, op="answers", n=1)
    assert ws.count("operation = 'augment:answers'") == 2
    # the dedup/quality checks of the new samples are operations of their own, after ours
    op_id = ws.con.execute("SELECT id FROM operations WHERE kind = 'augment:answers'").fetchone()[0]
    later = ws.con.execute("SELECT count(*) FROM operations WHERE id >= ?", [op_id]).fetchone()[0]
    undo.undo(ws, n=later)
    assert ws.count("operation = 'augment:answers'") == 0
    again = _run(ws, op="answers", n=1)  # answers come back from the cache, and land again
    assert again.sent == 0 and ws.count("operation = 'augment:answers'") == 2
