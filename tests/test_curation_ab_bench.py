"""benches/curation_ab.py end to end at a tiny size on the CPU, so a broken bench is caught before
it costs device time: prepare curates planted junk with the studio's own pipeline, run trains both
arms two LoRA steps on the real SmolLM2-135M-Instruct and evaluates them and the base on four
held-out items, report prints the table.

Needs the real model in the model store (like tests/test_real_model.py): fails in CI when it is
missing, skips elsewhere.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benches" / "curation_ab.py"


def test_data_is_deterministic_and_heldout_shares_no_operands():
    sys.path.insert(0, str(ROOT))
    from benches._ab_data import FAMILIES, JUNK_TYPES, _identity, build

    a, b = build(pool=120, heldout=24, seed=3), build(pool=120, heldout=24, seed=3)
    assert a.raw == b.raw and a.labels == b.labels
    assert len(a.pool) == 120 and len(a.heldout) == 24 and {it.family for it in a.heldout} == set(FAMILIES)
    held = {(it.family, _identity(it.family, it.key)) for it in a.heldout}
    train = {(it.family, _identity(it.family, it.key)) for it in a.pool}
    assert not held & train
    held_texts = {it.instruction for it in a.heldout}
    assert not held_texts & {r["instruction"] for r in a.raw}
    assert set(a.counts()) == {"clean", *JUNK_TYPES}
    assert len(a.raw) == len(a.labels) == sum(a.counts().values())


def test_bench_end_to_end_tiny(tmp_path):
    from training.models import DEMO_MODEL, ModelUnavailable, resolve_base

    try:
        resolve_base(DEMO_MODEL, fetch=True)
    except ModelUnavailable as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"the real model is not available here: {exc}")
    out = tmp_path / "ab"
    run_args = ["--out", str(out), "--steps", "2", "--seeds", "1", "--limit", "4", "--max-new-tokens", "8",
                "--device", "cpu", "--set", "train.micro_batch_size=1", "--set", "train.grad_accum=1",
                "--set", "data.max_length=128"]
    cmd = [sys.executable, str(BENCH), "all", "--pool", "60", "--heldout", "12", *run_args]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, cwd=ROOT, check=False, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    prep = json.loads((out / "prepare.json").read_text())
    junk = json.loads((out / "junk.json").read_text())
    catch = {r["type"]: r for r in prep["catch"]}
    assert catch["clean"]["caught"] == 0  # no clean row lost
    assert catch["duplicate"]["planted"] > 0 and catch["duplicate"]["caught"] == catch["duplicate"]["planted"]
    known = [r for r in junk["rows"] if r["type"] == "refusal" and not r["template"].startswith("Sorry, I am not")]
    assert known and catch["refusal"]["caught"] >= len(known)
    assert catch["wrong_answer"]["planted"] > 0 and catch["wrong_answer"]["caught"] == 0
    assert catch["wrong_answer"]["kept"] == catch["wrong_answer"]["planted"]
    zh = [r for r in junk["rows"] if r["type"] == "wrong_language" and r["language"] == "zh"]
    assert catch["wrong_language"]["caught"] >= len(zh)
    # the splits: raw holds every imported row, curated what the pipeline keeps
    raw_rows = len(json.loads((out / "raw.json").read_text()))
    assert prep["splits"]["raw"]["train"] == raw_rows
    assert prep["splits"]["curated"]["train"] == raw_rows - sum(r["caught"] for r in prep["catch"])
    assert (out / "splits" / "curated" / "manifest.json").is_file()
    assert len((out / "heldout.jsonl").read_text().splitlines()) == 12

    res = json.loads((out / "results.json").read_text())
    assert set(res["runs"]) == {"raw-s1", "curated-s1"}
    for r in res["runs"].values():
        assert r["state"] == "done" and r["eval"]["n"] == 4 and r["train_s"] > 0
    assert res["base"]["n"] == 4
    text = proc.stdout
    for row in ("| base |", "| raw |", "| curated |", "| duplicate |", "| wrong_answer |"):
        assert row in text, text[-3000:]
    assert "PASS" in text or "FAIL" in text
    assert "LLM judge: not run" in text
    assert (out / "report.md").read_text().strip() in text

    # `run` and `report` work where only the training package exists (a GPU box): curation and
    # duckdb made unimportable; the finished runs are skipped, not trained again
    code = ("import runpy, sys; sys.modules['duckdb'] = None; sys.modules['curation'] = None; "
            f"sys.argv = [{str(BENCH)!r}, 'run', *{run_args!r}]; runpy.run_path(sys.argv[0], run_name='__main__')")
    again = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=False, capture_output=True, text=True, timeout=120, env=env)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert again.stdout.count("done earlier, skipped") == 2 and "train:" not in again.stdout
    code = code.replace("'run', ", "'report', ")
    rep = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=False, capture_output=True, text=True, timeout=120, env=env)
    assert rep.returncode == 0 and "| curated |" in rep.stdout, rep.stderr[-2000:]
