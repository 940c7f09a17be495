"""Calls that go wrong, against a real HTTP server: Retry-After is honoured, server errors are
retried, malformed replies are recorded as failures with their reason (never a crash), the budget
stops a job before it is passed, and cancel stops sending."""
from __future__ import annotations

import threading

from tests.augment_helpers import FAST, SAMPLES, add_samples, configure


def _run(ws, job=None, **kw):
    from curation.augment.jobs import Spec, run

    return run(ws, Spec(**kw), job, client_options=FAST)


def _gap(fake):
    (t0, d0), (t1, d1) = fake.arrivals[:2]
    assert d0 == d1  # the same request, retried
    return t1 - t0


def test_429_waits_for_retry_after_seconds(ws, fake, monkeypatch):
    add_samples(ws, SAMPLES[:1])
    configure(ws, fake, monkeypatch)
    fake.fail_next("429", retry_after=1)
    result = _run(ws, op="judge")
    assert result.judged == 1 and result.failed == 0
    assert _gap(fake) >= 1.0  # backoff alone would retry after ~0.01 s


def test_429_honours_retry_after_ms(ws, fake, monkeypatch):
    add_samples(ws, SAMPLES[:1])
    configure(ws, fake, monkeypatch)
    fake.fail_next("429", retry_after_ms=400)
    _run(ws, op="judge")
    assert _gap(fake) >= 0.4


def test_500_is_retried_and_then_succeeds(ws, fake, monkeypatch):
    add_samples(ws, SAMPLES[:1])
    configure(ws, fake, monkeypatch)
    fake.fail_next("500", count=2)
    result = _run(ws, op="judge")
    assert result.judged == 1 and result.failed == 0 and fake.total_requests() == 3


def test_malformed_replies_are_failures_with_reasons(ws, fake, monkeypatch):
    cases = {"empty": "empty", "refusal": "refusal", "no_choices": "no_choices", "invalid_json": "invalid_json",
             "500": "http_500"}
    ids = add_samples(ws, [(f"Question {k} #fault={k}#", "answer") for k in cases] + [("A fine question", "fine")])
    configure(ws, fake, monkeypatch, max_attempts=2)
    result = _run(ws, op="answers", n=1)
    assert result.state == "done"
    assert result.failures == {v: 1 for v in cases.values()}
    assert len(result.new_sample_ids) == 1  # the fine one still landed
    rows = ws.con.execute("SELECT sample_id, reason, detail, attempts FROM llm_failures ORDER BY sample_id").fetchall()
    by_reason = {r[1]: r for r in rows}
    assert set(by_reason) == set(cases.values())
    assert by_reason["refusal"][2] == "I can't help with that."
    assert by_reason["invalid_json"][3] == 2 and by_reason["http_500"][3] == 2   # retried, then given up
    assert by_reason["empty"][3] == 1                                            # content problems: not retried
    assert {r[0] for r in rows} == set(ids[:5])
    assert ws.con.execute("SELECT count(*) FROM llm_cache").fetchone()[0] == 1   # failures are not cached
    # a rerun tries the failures again and only them
    before = fake.total_requests()
    _run(ws, op="answers", n=1)
    assert fake.total_requests() - before == 3 * 1 + 2 * 2  # content failures once, transport ones twice


def test_unparsable_structured_output_is_a_failure(ws, fake, monkeypatch):
    # answers with plain text where JSON is expected: a judge reply of "Fake answer ..." is not JSON.
    add_samples(ws, SAMPLES[:1])
    configure(ws, fake, monkeypatch)
    monkeypatch.setattr(fake, "reply_content", lambda req, digest: "I think it deserves a four.")
    result = _run(ws, op="judge")
    assert result.failures == {"unparsable": 1} and result.judged == 0
    assert ws.con.execute("SELECT judge_score FROM samples").fetchone()[0] is None


def test_timeout_is_retried_then_recorded(ws, fake, monkeypatch):
    add_samples(ws, SAMPLES[:1])
    configure(ws, fake, monkeypatch, timeout_s=0.3, max_attempts=2)
    fake.fail_next("timeout", count=2, sleep=1.0)
    result = _run(ws, op="judge")
    assert result.failures == {"timeout": 1}
    assert fake.total_requests() == 2


def test_budget_stops_before_it_is_passed(ws, fake, monkeypatch):
    add_samples(ws, [(f"Question number {i} about something", f"Answer {i}") for i in range(30)])
    # expensive prices so a few requests reach the limit
    configure(ws, fake, monkeypatch, input_usd_per_mtok=1000.0, output_usd_per_mtok=1000.0, concurrency=4)
    result = _run(ws, op="judge", max_cost=2.0)
    assert result.state == "cancelled" and result.stop_reason == "budget"
    assert 0 < result.judged < 30
    spent = ws.con.execute("SELECT sum(cost_usd) FROM llm_usage WHERE job_id = ?", [result.job_id]).fetchone()[0]
    assert spent <= 2.0 and abs(spent - result.usd) < 1e-9
    assert fake.total_requests() == result.sent
    # and not much earlier: each judge request here reserves its worst case, about 0.5 USD
    # (prompt estimate x 1.25 + 256 max_tokens, at 1000 USD/Mtok), so at most a few were left unsent
    assert spent > 2.0 - 4 * 0.6


def test_max_cost_needs_prices(ws, fake, monkeypatch):
    import pytest

    from curation.errors import StudioError

    add_samples(ws, SAMPLES[:1])
    configure(ws, fake, monkeypatch, input_usd_per_mtok=None, output_usd_per_mtok=None)
    with pytest.raises(StudioError, match="max-cost needs prices"):
        _run(ws, op="judge", max_cost=1.0)
    assert fake.total_requests() == 0


def test_cancel_from_another_thread_keeps_answers(ws, fake, monkeypatch):
    from curation.augment.jobs import AugmentJob

    add_samples(ws, [(f"Question {i}", f"Answer {i}") for i in range(40)])
    configure(ws, fake, monkeypatch, concurrency=2)
    fake.latency = 0.05
    job = AugmentJob(kind="augment:judge")
    timer = threading.Timer(0.3, job.cancel)
    timer.start()
    result = _run(ws, job, op="judge")
    timer.join()
    assert result.state == "cancelled" and result.stop_reason == "cancelled"
    assert 0 < result.judged < 40
    assert ws.con.execute("SELECT count(*) FROM llm_cache").fetchone()[0] == result.judged == fake.total_requests()


def test_missing_key_is_a_clear_error(ws, fake, monkeypatch):
    import pytest

    from curation.errors import StudioError

    add_samples(ws, SAMPLES[:1])
    configure(ws, fake, monkeypatch)
    monkeypatch.delenv("STUDIO_TEST_LLM_KEY")
    with pytest.raises(StudioError, match="STUDIO_TEST_LLM_KEY is not set"):
        _run(ws, op="judge")
