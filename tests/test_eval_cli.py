"""`studio eval` from the command line: one table for the base and the runs, per-item results in
the first run's folder, and one clear line for what a user gets wrong. A tiny base and adapters
(tests/_tiny_lora.py) keep it fast; tests/test_real_model.py scores a real model."""
from __future__ import annotations

import json

import pytest

from studio.cli import main
from tests._tiny_lora import build_base, make_run

pytest.importorskip("peft")


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalcli")
    base = build_base(root / "base")
    make_run(root / "ws" / "runs", "run-a", base, seed=1)
    make_run(root / "ws" / "runs", "run-b", base, seed=2)
    rows = [{"instruction": f"say {w}", "input": "", "output": w} for w in ("alpha", "beta", "gamma")]
    (root / "set.json").write_text(json.dumps(rows), encoding="utf-8")
    from curation.workspace import open_workspace

    open_workspace(root / "ws").close()  # the judge's cache and providers live in the workspace
    return root


def test_eval_compares_base_and_runs_and_writes_items_to_the_first_run(ws, capsys):
    rc = main(["-w", str(ws / "ws"), "eval", "base", "run-a", "run-b", "--on", str(ws / "set.json"),
               "--scorer", "exact", "--max-new-tokens", "4", "--batch-size", "2", "--name", "e1", "--json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in summary["models"]] == ["base", "run-a", "run-b"]
    assert all(m["n"] == 3 for m in summary["models"])
    folder = ws / "ws" / "runs" / "run-a" / "evals" / "e1"
    rows = [json.loads(x) for x in (folder / "items.jsonl").read_text().splitlines()]
    assert [r["reference"] for r in rows] == ["alpha", "beta", "gamma"]
    assert set(rows[0]["answers"]) == {"base", "run-a", "run-b"}
    assert all(isinstance(a["correct"], bool) for r in rows for a in r["answers"].values())
    # the tiny base's random answers are not "alpha": exact scoring says so, item by item
    assert sum(a["correct"] for r in rows for a in r["answers"].values()) == sum(m["correct"] for m in summary["models"])
    # the same id again is refused rather than overwritten
    assert main(["-w", str(ws / "ws"), "eval", "run-a", "--on", str(ws / "set.json"), "--name", "e1"]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("args, said", [
    (["base", "--on", "SET"], "`base` needs a run"),
    (["run-a", "--on", "nowhere.json"], "eval set 'nowhere.json' not found"),
    (["run-a", "--on", "SET", "--limit", "0"], "--limit must be a positive number"),
    (["run-a", "--on", "SET", "--scorer", "judge", "--provider", "none"], "provider"),
    (["ghost-model", "--on", "SET"], "is not a registry model"),
])
def test_eval_errors_are_one_line(ws, capsys, args, said):
    args = [str(ws / "set.json") if a == "SET" else a for a in args]
    assert main(["-w", str(ws / "ws"), "eval", *args]) != 0
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err and err.count("studio: error") == 1


def test_eval_of_a_merged_model_takes_its_base_from_the_run(ws, capsys):
    assert main(["-w", str(ws / "ws"), "merge", "run-b"]) == 0
    capsys.readouterr()
    rc = main(["-w", str(ws / "ws"), "eval", "base", "merged:run-b", "--on", str(ws / "set.json"),
               "--max-new-tokens", "4", "--name", "m1", "--json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert [(m["name"], m["kind"]) for m in summary["models"]] == [("base", "base"), ("merged:run-b", "merged")]
    assert (ws / "ws" / "runs" / "run-b" / "evals" / "m1" / "items.jsonl").is_file()  # in the merged run's folder


def test_a_run_with_eval_at_end_evaluates_base_and_adapter(tmp_path):
    """The config's `eval.at_end`: after training, RUN/evals/end holds base and adapter on the val
    rows, and status.json their accuracies."""
    from tests.training_fixtures import write_split
    from training import runs
    from training.config import load_config
    from training.evaluate import read_items

    split = write_split(tmp_path / "split", n_train=8, n_val=3)
    cfg = load_config(preset="tiny-demo", overrides={
        "data.split": str(split), "train.max_steps": 2, "eval.at_end": True, "eval.max_new_tokens": 4})
    run = runs.create_run(tmp_path / "runs", cfg, name="ends")
    status = runs.execute(run)
    assert status.state == "done" and status.eval_state == "done", status.eval_error
    assert set(status.eval) == {"base", "ends"}
    rows = read_items(run / "evals" / "end")
    assert len(rows) == 3 and all(set(r["answers"]) == {"base", "ends"} for r in rows)
