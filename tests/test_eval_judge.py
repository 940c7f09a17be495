"""The LLM-judge scorer of `studio eval` (curation/augment/eval_judge.py), against the real
OpenAI-protocol HTTP server on 127.0.0.1 and a real workspace: grades, cache, cost, failures,
cancel and the API key."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import pytest

from tests.augment_helpers import FAKE_KEY, FAKE_KEY_ENV, FAST, configure


@dataclass
class Item:
    messages: list
    reference: str


def _items(*prompts):
    return [Item([{"role": "user", "content": p}], f"reference for {p}") for p in prompts]


def _scorer(ws, **kw):
    from curation.augment.eval_judge import judge_scorer

    return judge_scorer(ws, client_options=FAST, **kw)


def _garbage_when_marked(fake, monkeypatch):
    """The server answers '#garbage#' answers with prose instead of the JSON object asked for."""
    original = fake.reply_content

    def reply(req, digest):
        last = req["messages"][-1]["content"]
        return "I think it deserves a four, honestly." if "#garbage#" in last else original(req, digest)

    monkeypatch.setattr(fake, "reply_content", reply)


def _triple(t):
    return [(s.correct, s.score, s.detail) for s in t]


def test_grades_become_correct_score_detail_and_cost(ws, fake, monkeypatch):
    from curation.augment.eval_judge import JudgeScore
    from training.evaluate import Score

    configure(ws, fake, monkeypatch)
    _garbage_when_marked(fake, monkeypatch)
    items = _items("What is 2+2?", "Name a primary colour.", "Capital of Peru?")
    answers = ["4 #score=5#", "green #score=2#", "Lima #garbage#"]
    scores = _scorer(ws)(items, answers)

    assert [type(s) for s in scores] == [JudgeScore] * 3
    assert [f.name for f in dataclasses.fields(JudgeScore)] == [f.name for f in dataclasses.fields(Score)]
    with pytest.raises(dataclasses.FrozenInstanceError):
        scores[0].score = 0.5
    assert [s.correct for s in scores] == [True, False, False]
    assert [s.score for s in scores] == [1.0, 0.25, 0.0]
    assert scores[0].detail.startswith("fake judge ") and scores[1].detail.startswith("fake judge ")
    assert "unusable (unparsable)" in scores[2].detail and "deserves a four" in scores[2].detail
    assert all(s.cost_usd > 0 for s in scores)  # the garbage reply was paid for too
    assert fake.total_requests() == 3

    # what was sent: greedy, JSON mode, the provider's model, the rubric with prompt, reference, answer
    bodies = list(fake.bodies.values())
    assert {b["temperature"] for b in bodies} == {0.0}
    assert all(b["response_format"] == {"type": "json_object"} and b["model"] == "fake-model" for b in bodies)
    user = next(b for b in bodies if "green" in b["messages"][-1]["content"])["messages"][-1]["content"]
    assert "Name a primary colour." in user and "reference for Name a primary colour." in user
    assert bodies[0]["messages"][0]["role"] == "system" and "Rubric" in bodies[0]["messages"][0]["content"]

    # every answered request is cached (with the template's id and version); usage and cost recorded
    rows = ws.con.execute("SELECT operation, template_id, template_version, provider, model, cost_usd FROM llm_cache").fetchall()
    assert len(rows) == 3 and {r[:5] for r in rows} == {("eval_judge", "en/eval_judge", "1", "fake", "fake-model")}
    usage = ws.con.execute("SELECT requests, failed, cost_usd FROM llm_usage").fetchall()
    assert len(usage) == 1 and usage[0][0] == 3 and usage[0][1] == 1
    assert usage[0][2] == pytest.approx(sum(s.cost_usd for s in scores))
    assert ws.con.execute("SELECT kind, state, done, total FROM jobs").fetchall() == [("eval:judge", "done", 3, 3)]
    assert ws.con.execute("SELECT reason FROM llm_failures").fetchall() == [("unparsable",)]


def test_unpriced_provider_costs_nothing_and_threshold_moves_correct(ws, fake, monkeypatch):
    configure(ws, fake, monkeypatch, input_usd_per_mtok=None, output_usd_per_mtok=None)
    scores = _scorer(ws, threshold=2)(_items("a?", "b?"), ["x #score=2#", "y #score=1#"])
    assert [(s.correct, s.score, s.cost_usd) for s in scores] == [(True, 0.25, 0.0), (False, 0.0, 0.0)]


def test_rerun_sends_nothing_already_answered(ws, fake, monkeypatch):
    configure(ws, fake, monkeypatch)
    _garbage_when_marked(fake, monkeypatch)
    items = _items("What is 2+2?", "Name a primary colour.", "Capital of Peru?")
    answers = ["4 #score=5#", "green #score=2#", "Lima #garbage#"]
    first = _scorer(ws)(items, answers)
    sent = fake.total_requests()
    assert sent == 3

    again = _scorer(ws)(items, answers)  # a fresh scorer, as a second `studio eval` builds
    assert fake.total_requests() == sent  # nothing sent: all from llm_cache
    assert _triple(again) == _triple(first)
    assert [s.cost_usd for s in again] == [0.0, 0.0, 0.0]  # nothing spent this time

    # one new answer among known ones: only it is sent; duplicates in a batch go once
    more = _scorer(ws)(items + items[:1] + items[:1], answers + ["five #score=4#", "five #score=4#"])
    assert fake.total_requests() == sent + 1
    assert _triple(more[:3]) == _triple(first)
    assert (more[3].correct, more[3].score) == (True, 0.75) and _triple(more[3:4]) == _triple(more[4:5])
    assert ws.con.execute("SELECT count(*) FROM llm_cache").fetchone()[0] == 4


def test_template_version_is_part_of_the_key(ws, fake, monkeypatch):
    configure(ws, fake, monkeypatch)
    items, answers = _items("What is 2+2?"), ["4 #score=5#"]
    _scorer(ws)(items, answers)
    _scorer(ws)(items, answers)
    assert fake.total_requests() == 1
    from importlib import resources

    from curation.augment.eval_judge import load_template

    packaged = load_template()
    assert (packaged.id, packaged.version, packaged.source) == ("en/eval_judge", "1", "package")
    # a workspace copy with a new version overrides the packaged template: its requests are new
    src = resources.files("curation.augment").joinpath("templates", "en", "eval_judge.txt").read_text(encoding="utf-8")
    override = ws.root / "templates" / "en" / "eval_judge.txt"
    override.parent.mkdir(parents=True)
    override.write_text(src.replace("# version: 1", "# version: 2", 1), encoding="utf-8")
    assert load_template(ws.root).source == "workspace"
    scores = _scorer(ws)(items, answers)
    assert fake.total_requests() == 2 and scores[0].correct
    assert {r[0] for r in ws.con.execute("SELECT template_version FROM llm_cache").fetchall()} == {"1", "2"}


def test_failed_requests_score_zero_and_never_raise(ws, fake, monkeypatch):
    configure(ws, fake, monkeypatch, max_attempts=2)
    items = _items("q1", "q2", "q3", "q4", "q5", "q6")
    answers = ["a #fault=500#", "b #fault=refusal#", "c #fault=empty#", "d #fault=no_choices#", "   ", "f #score=4#"]
    scores = _scorer(ws)(items, answers)
    assert [s.correct for s in scores] == [False] * 5 + [True]
    assert [s.score for s in scores] == [0.0] * 5 + [0.75]
    d = [s.detail for s in scores]
    assert "judge request failed (http_500, 2 attempts): internal error" == d[0]
    assert d[1] == "judge request failed (refusal): I can't help with that."
    assert d[2].startswith("judge request failed (empty)") and d[3].startswith("judge request failed (no_choices)")
    assert d[4] == "empty answer: graded without asking the judge"
    assert scores[0].cost_usd == 0.0  # a server error is not billed
    assert fake.total_requests() == 2 + 1 + 1 + 1 + 1  # 500 twice (retried), three content faults once, one ok
    # failures are recorded, not cached: a rerun asks again for them and only them
    assert ws.con.execute("SELECT count(*) FROM llm_cache").fetchone()[0] == 1
    reasons = sorted(r[0] for r in ws.con.execute("SELECT reason FROM llm_failures").fetchall())
    assert reasons == ["empty", "http_500", "no_choices", "refusal"]
    before = fake.total_requests()
    again = _scorer(ws)(items, answers)
    assert _triple(again) == _triple(scores)
    assert fake.total_requests() - before == 2 + 1 + 1 + 1
    # a rate limit with Retry-After is waited out and retried by the client
    fake.fail_next("429", retry_after_ms=50)
    before = fake.total_requests()
    assert _triple(_scorer(ws)(_items("q7"), ["g #score=5#"]))[0][:2] == (True, 1.0)
    assert fake.total_requests() - before == 2


def test_requests_run_concurrently_up_to_the_providers_concurrency(ws, fake, monkeypatch):
    configure(ws, fake, monkeypatch, concurrency=3)
    fake.latency = 0.4
    scores = _scorer(ws)(_items(*[f"q{i}" for i in range(6)]), [f"a{i} #score=3#" for i in range(6)])
    assert [s.score for s in scores] == [0.5] * 6
    t = sorted(a[0] for a in fake.arrivals)
    assert t[2] - t[0] < 0.3    # three at once
    assert t[3] - t[0] >= 0.3   # the fourth waits for a slot


def test_job_reports_progress_and_cancel_stops_sending(ws, fake, monkeypatch):
    from curation.jobs import Job

    configure(ws, fake, monkeypatch)
    seen = []
    job = Job(kind="eval:judge", on_progress=lambda j: seen.append((j.done, j.total)), min_interval=0.0)
    scores = _scorer(ws, job=job)(_items("a", "b", "c"), ["1 #score=5#", "2 #score=4#", "3 #score=1#"])
    assert [s.correct for s in scores] == [True, True, False]
    assert job.done == job.total == 3 and seen[-1] == (3, 3) and "judged 3/3" in job.message

    cancelled = Job(kind="eval:judge")
    cancelled.cancel()
    before = fake.total_requests()
    scores = _scorer(ws, job=cancelled)(_items("a", "new"), ["1 #score=5#", "new #score=5#"])
    assert fake.total_requests() == before  # nothing sent after a cancel
    assert scores[0].correct  # the cached answer still scores
    assert (scores[1].correct, scores[1].score, scores[1].detail) == (False, 0.0, "not judged: cancelled")


def test_api_key_never_reaches_the_cache_the_database_or_details(ws, fake, monkeypatch, caplog):
    caplog.set_level("DEBUG")
    configure(ws, fake, monkeypatch, max_attempts=1)
    # a misbehaving server that echoes the key back in its reply
    monkeypatch.setattr(fake, "reply_content",
                        lambda req, digest: json.dumps({"score": 4, "reason": f"your key is {FAKE_KEY}"}))
    scores = _scorer(ws)(_items("a", "b"), ["x", "y #fault=500#"])
    assert fake.auth_headers == {f"Bearer {FAKE_KEY}"}  # the key was really used
    assert scores[0].correct and scores[0].detail == "your key is [api key removed]"
    assert all(FAKE_KEY not in s.detail for s in scores)
    for table in ("llm_cache", "llm_failures", "llm_usage", "jobs"):
        dump = json.dumps([[str(v) for v in row] for row in ws.con.execute(f"SELECT * FROM {table}").fetchall()])
        assert FAKE_KEY not in dump, table
        assert FAKE_KEY_ENV not in dump or table == "jobs", table
    assert ws.con.execute("SELECT count(*) FROM llm_cache").fetchone()[0] == 1
    root = ws.root
    ws.close()
    leaks = [str(p) for p in root.rglob("*") if p.is_file() and FAKE_KEY.encode() in p.read_bytes()]
    assert leaks == []
    assert FAKE_KEY not in caplog.text


def test_configuration_errors_are_raised_before_any_answer_is_generated(ws, fake, monkeypatch):
    from curation.errors import StudioError

    configure(ws, fake, monkeypatch)
    with pytest.raises(StudioError, match="no provider named 'nope'"):
        _scorer(ws, provider="nope")
    with pytest.raises(StudioError, match="threshold"):
        _scorer(ws, threshold=6)
    bad = ws.root / "templates" / "en" / "eval_judge.txt"
    bad.parent.mkdir(parents=True)
    bad.write_text("# version: 9\n=== user\nGrade {{answr}} against {{reference}}\n", encoding="utf-8")
    with pytest.raises(StudioError, match="answr"):
        _scorer(ws)
    bad.unlink()
    monkeypatch.delenv(FAKE_KEY_ENV)
    with pytest.raises(StudioError, match=FAKE_KEY_ENV):
        _scorer(ws)
    assert fake.total_requests() == 0


def test_a_conversation_prompt_reaches_the_judge_as_a_transcript(ws, fake, monkeypatch):
    configure(ws, fake, monkeypatch)
    item = Item([{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "Hello?"},
                 {"role": "assistant", "content": "Bonjour."}, {"role": "user", "content": "Colour of the sky?"}],
                "Bleu.")
    scores = _scorer(ws, provider="fake", model="judge-model")([item], ["Bleu. #score=5#"])
    assert scores[0].correct
    body = next(iter(fake.bodies.values()))
    assert body["model"] == "judge-model"
    user = body["messages"][-1]["content"]
    assert "System: Answer in French.\n\nUser: Hello?\n\nAssistant: Bonjour.\n\nUser: Colour of the sky?" in user
