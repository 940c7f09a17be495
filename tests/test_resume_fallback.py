"""Resume skips a corrupt latest checkpoint (a file cut off by a crash or a full disk) and continues
from the newest whole one, saying so in the log, the status and metrics.jsonl; with none whole it
fails with one line instead of quietly training from step 0."""
from __future__ import annotations

import json

import pytest

from studio.cli import main
from tests.training_fixtures import tiny_config, write_split
from training import runs
from training.metrics import metric_points, read_metrics
from training.recipe import checkpoint_problem, resumable_checkpoint


def halve(path) -> bytes:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return data


@pytest.fixture(scope="module")
def crashed_run(tmp_path_factory):
    """A tiny run that saved checkpoints 4 and 6 (save every 2 steps, the last two kept) and died
    after step 7; the crash hook is then cleared, as a user would fix the cause."""
    tmp = tmp_path_factory.mktemp("resume")
    split = write_split(tmp / "split")
    cfg = tiny_config(split, **{"train.max_steps": 8, "train.save_steps": 2, "train.save_total_limit": 2,
                                "train.eval_steps": 100, "debug.fail_after_step": 7})
    run = runs.create_run(tmp / "ws" / "runs", cfg, name="r")
    with pytest.MonkeyPatch.context() as m:  # as conftest's per-test isolation does: nothing reaches the hub
        for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
            m.setenv(key, "1")
        st = runs.execute(run)
    assert st.state == "failed" and "simulated crash" in st.error
    text = (run / "config.yaml").read_text().replace("fail_after_step: 7", "fail_after_step: null")
    (run / "config.yaml").write_text(text)
    assert sorted(p.name for p in (run / "checkpoints").glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-6"]
    return run


def test_no_whole_checkpoint_fails_with_one_line_and_starts_nothing(crashed_run, capsys):
    run = crashed_run
    adapter6 = run / "checkpoints" / "checkpoint-6" / "adapter_model.safetensors"
    optimizer4 = run / "checkpoints" / "checkpoint-4" / "optimizer.pt"
    whole6, whole4 = halve(adapter6), halve(optimizer4)
    try:
        assert "adapter_model.safetensors is truncated" in checkpoint_problem(adapter6.parent)
        assert "optimizer.pt is truncated" in checkpoint_problem(optimizer4.parent)
        assert resumable_checkpoint(run)[0] is None
        before = (run / "status.json").read_text()
        capsys.readouterr()
        rc = main(["-w", str(run.parent.parent), "train", "--resume", "r", "--foreground"])
        err = capsys.readouterr().err
        assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert err.startswith("studio: error: run r: no whole checkpoint to resume from (checkpoint-6: "
                              "adapter_model.safetensors is truncated") and "checkpoint-4: optimizer.pt" in err
        assert "start it again as a new run" in err
        assert (run / "status.json").read_text() == before
    finally:
        adapter6.write_bytes(whole6)
        optimizer4.write_bytes(whole4)


def test_resume_falls_back_past_a_truncated_latest_checkpoint(crashed_run, capsys):
    run = crashed_run
    tokens_at_4 = next(p["tokens_seen"] for p in metric_points(read_metrics(run)[0]) if p["step"] == 4 and "loss" in p)
    halve(run / "checkpoints" / "checkpoint-6" / "adapter_model.safetensors")
    assert checkpoint_problem(run / "checkpoints" / "checkpoint-4") is None
    capsys.readouterr()
    st = runs.resume(run, foreground=True)
    log = capsys.readouterr().err
    assert st.state == "done" and st.step == 8, st.error
    assert st.resumed_from == 4 and st.resume_checkpoint == "checkpoints/checkpoint-4"
    assert st.note.startswith("resuming from checkpoint-4, the newest whole checkpoint: skipped checkpoint-6: "
                              "adapter_model.safetensors is truncated"), st.note
    assert f"run r: {st.note}" in log  # the run log (train.log when detached)
    assert json.loads((run / "status.json").read_text())["note"] == st.note
    records = read_metrics(run)[0]
    resume = [r for r in records if r.get("event") == "resume"]
    assert resume and resume[-1]["from_step"] == 4 and resume[-1]["note"] == st.note
    points = metric_points(records)
    assert [p["step"] for p in points if "loss" in p] == list(range(1, 9))  # 5, 6 and 7 again, once each
    after = next(p for p in points if p["step"] == 5 and "loss" in p)
    assert after["tokens_seen"] > tokens_at_4
    assert checkpoint_problem(run / "checkpoints" / "checkpoint-6") is None  # saved again, whole
